"""Times `make_train_step`'s two ways of choosing the step kind: `phase='auto'` (one program, a
`lax.cond` on `state.step` between the vanilla-VAE and the Soft-IntroVAE branches, the default
when `num_vae_steps > 0`) against one program per fixed phase (what main.py compiles).

Synthetic batches, no TensorFlow. For each network: compile, 2 warm-up calls, then the mean of
`--steps` calls with `block_until_ready`, for a step that takes each branch.

  python benchmarks/phase_dispatch.py --steps=5
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

import sintrovae_jax as sv  # pylint: disable=g-import-not-at-top

NETWORKS = {
    # (model, one example's shape, batch)
    'image 32 px (8-16-32), batch 16': (
        lambda: sv.SoftIntroVAE(sv.ImageEncoder((8, 16, 32), 32),
                                sv.ImageDecoder((8, 16, 32), 32, 3)), (32, 32, 3), 16),
    'MLP 256x4 (2D), batch 512': (
        lambda: sv.SoftIntroVAE(sv.MLPEncoder((256,) * 4, 2), sv.MLPDecoder((256,) * 4, 2)),
        (2,), 512),
}
# (label, make_train_step keyword arguments): the branch taken is the Soft-IntroVAE one for
# num_vae_steps=1 (after the warm-up calls) and the VAE one for a warm-up longer than the run.
WAYS = (('fixed soft_intro', dict(phase='soft_intro')), ('auto, soft_intro taken',
                                                         dict(num_vae_steps=1)),
        ('fixed vae', dict(phase='vae')), ('auto, vae taken', dict(num_vae_steps=10**6)))


def seconds_per_step(model, shape, batch, steps, **kw):
  weights = sv.LossWeights(1.0, 1.0, 256.0, scale=sv.default_scale(shape))
  tx = sv.make_optimizer(sv.learning_rate_schedule(2e-4, ()))
  state = sv.create_train_state(model, jax.random.PRNGKey(0), shape, tx)
  x = np.random.default_rng(0).uniform(size=(batch,) + shape).astype(np.float32)
  step = jax.jit(sv.make_train_step(model, weights, **kw))
  for _ in range(2):
    state, _ = step(state, x)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(steps):
    state, _ = step(state, x)
  jax.block_until_ready(state)
  return (time.perf_counter() - start) / steps


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=5)
  args = parser.parse_args()
  print(f'{jax.devices()[0].device_kind}, JAX {jax.__version__}\n')
  print('| network | ' + ' | '.join(label for label, _ in WAYS) + ' | auto / fixed |')
  print('|---|' + '---|' * (len(WAYS) + 1))
  for name, (build, shape, batch) in NETWORKS.items():
    times = [seconds_per_step(build(), shape, batch, args.steps, **kw) for _, kw in WAYS]
    ratios = f'{times[1] / times[0]:.1f}x, {times[3] / times[2]:.1f}x'
    print(f'| {name} | ' + ' | '.join(f'{1e3 * t:.1f} ms' for t in times) + f' | {ratios} |',
          flush=True)


if __name__ == '__main__':
  main()
