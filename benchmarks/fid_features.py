"""Times FID feature extraction (Inception-v3 pool3) per image on this machine's first device.

Throughput does not depend on the weights, so the network is randomly initialised: no weights file
needed. Precision HIGHEST is what the library uses (full float32 convolutions, so that FID does not
depend on TF32/bf16 passes); DEFAULT shows what that choice costs.

  python benchmarks/fid_features.py --batch=200 --image_size=32 --precisions=highest,default
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

from sintrovae_jax.evaluators import inception  # pylint: disable=g-import-not-at-top
from benchmarks import roofline  # pylint: disable=g-import-not-at-top


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=200)
  parser.add_argument('--image_size', type=int, default=32)
  parser.add_argument('--precisions', default='highest,default')
  parser.add_argument('--steps', type=int, default=10)
  args = parser.parse_args()
  dev = jax.devices()[0]
  print(f'device: {dev.device_kind} ({dev.platform}), jax {jax.__version__}; batch {args.batch} '
        f'of {args.image_size}px images, median of {args.steps}')
  net = inception.FIDInceptionV3()
  variables = jax.jit(net.init)(jax.random.PRNGKey(0),
                                jnp.zeros((1, inception.INPUT_SIZE, inception.INPUT_SIZE, 3)))
  images = jax.random.uniform(jax.random.PRNGKey(1),
                              (args.batch, args.image_size, args.image_size, 3))
  print('| precision | ms/batch | images/s | XLA GFLOP/image | compile s |')
  print('|---|---|---|---|---|')
  for name in args.precisions.split(','):
    precision = jax.lax.Precision[name.upper()]
    fn = jax.jit(lambda v, x, p=precision: inception.features(v, x, p))
    t0 = time.perf_counter()
    compiled = fn.lower(variables, images).compile()
    compile_s = time.perf_counter() - t0
    flops = roofline.cost(compiled)['flops']
    jax.block_until_ready(compiled(variables, images))
    times = []
    for _ in range(args.steps):
      t0 = time.perf_counter()
      jax.block_until_ready(compiled(variables, images))
      times.append(time.perf_counter() - t0)
    ms = 1e3 * statistics.median(times)
    print(f'| {name} | {ms:.1f} | {args.batch / ms * 1e3:,.0f} | {flops / args.batch / 1e9:.1f} '
          f'| {compile_s:.0f} |', flush=True)


if __name__ == '__main__':
  main()
