"""Times likelihood regret per image against the -log p(x) estimate it starts from (issue 30).

The refit's cost does not depend on the weights, so the networks are freshly initialised: the
OOD paradox script's network (channels 16, 32; z 16; grey 28 px) by default. Prints ms per image
for -log p(x) (IWAE, K samples) and for the regret at each number of refit steps, after compiling.

  python benchmarks/ood_regret.py --batch=64 --samples=16 --steps=10,100
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

import sintrovae_jax as sv  # pylint: disable=g-import-not-at-top
from sintrovae_jax.evaluators import likelihood, regret  # pylint: disable=g-import-not-at-top


def ms_per_image(fn, x) -> float:
  fn(x).block_until_ready()  # compile
  start = time.perf_counter()
  fn(x).block_until_ready()
  return 1e3 * (time.perf_counter() - start) / x.shape[0]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--samples', type=int, default=16, help='K importance samples')
  parser.add_argument('--steps', default='10,100', help='refit steps to time, comma-separated')
  parser.add_argument('--channels', default='16,32')
  parser.add_argument('--z_dim', type=int, default=16)
  parser.add_argument('--image_size', type=int, default=28)
  args = parser.parse_args()
  channels = tuple(int(c) for c in args.channels.split(','))
  shape = (args.image_size, args.image_size, 1)
  model = sv.SoftIntroVAE(sv.ImageEncoder(channels, args.z_dim),
                          sv.ImageDecoder(channels, args.image_size, 1))
  tx = sv.make_optimizer(sv.learning_rate_schedule(1e-3))
  state = sv.create_train_state(model, jax.random.PRNGKey(0), shape, tx)
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(args.batch,) + shape), jnp.float32)
  key, sigma = jax.random.PRNGKey(1), likelihood.default_sigma('mse', 1.0, 1.0)
  base = ms_per_image(jax.jit(lambda v: likelihood.log_likelihood(
      model, state, v, key, args.samples, 'mse', sigma)), x)
  print(f'{jax.devices()[0].device_kind}, channels {channels}, batch {args.batch}, '
        f'K = {args.samples}\n\n| score | ms per image | vs -log p(x) |\n|---|---|---|')
  print(f'| -log p(x) | {base:.1f} | 1.0 |')
  for steps in (int(s) for s in args.steps.split(',')):
    options = regret.RegretOptions(steps=steps)
    cost = ms_per_image(jax.jit(lambda v, o=options: regret.regret(
        model, state, v, key, args.samples, 'mse', sigma, o)), x)
    print(f'| regret, {steps} refit steps | {cost:.1f} | {cost / base:.0f} |')


if __name__ == '__main__':
  main()
