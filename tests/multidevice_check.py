"""Run in a subprocess with N forced CPU devices: train K steps data-parallel on N devices and on
one device with the same global batch and seed, and print the largest differences as JSON.

Usage: XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/multidevice_check.py MODEL
"""

import json
import sys

import jax
import numpy as np

import sintrovae_jax as sv
from sintrovae_jax import parallel, toy_data


def setup(kind):
  if kind == 'image':
    model = sv.SoftIntroVAE(sv.ImageEncoder((8, 16), 4), sv.ImageDecoder((8, 16), 16, 3))
    shape, batch = (16, 16, 3), 8
    weights = sv.LossWeights(1.0, 1.0, 256.0, scale=sv.default_scale(shape))
    rng = np.random.default_rng(0)
    batches = [rng.uniform(size=(batch,) + shape).astype(np.float32) for _ in range(10)]
    vae_steps = 2
  else:
    model = sv.SoftIntroVAE(sv.MLPEncoder((32, 32), 2), sv.MLPDecoder((32, 32), 2))
    shape = (2,)
    weights = sv.LossWeights(0.2, 0.3, 0.9, scale=0.5)
    batches = [toy_data.sample('8gaussians', 64, np.random.default_rng([0, t])) for t in range(10)]
    vae_steps = 3
  tx = sv.make_optimizer(sv.learning_rate_schedule(1e-3, (6,)))
  state = sv.create_train_state(model, jax.random.PRNGKey(0), shape, tx)
  return model, weights, vae_steps, state, batches


def max_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def max_abs(a):
  return max(float(np.max(np.abs(np.asarray(x)))) for x in jax.tree.leaves(a))


def main(kind):
  model, weights, vae_steps, state, batches = setup(kind)
  initial = jax.device_get(state)  # host copy: the data-parallel steps donate their inputs
  one = jax.jit(sv.make_train_step(model, weights, vae_steps))
  s1, m1 = initial, None
  for b in batches:
    s1, m1 = one(s1, b)

  many = parallel.pmap_train_step(sv.make_train_step(model, weights, vae_steps, parallel.AXIS))
  sp = parallel.replicate(initial)
  for b in batches:
    sp, mp = many(sp, parallel.shard(b))
  sp, mp = parallel.unreplicate(sp), jax.tree.map(lambda x: x[0], mp)

  mesh = parallel.data_mesh()
  smap = parallel.shard_map_train_step(
      sv.make_train_step(model, weights, vae_steps, parallel.AXIS), mesh)
  ss = parallel.replicate_on_mesh(initial, mesh)
  for b in batches:
    ss, ms = smap(ss, parallel.shard_on_mesh(b, mesh))

  # Replicas must agree with each other exactly as well.
  print(json.dumps({
      'devices': jax.device_count(),
      'params_pmap': max_diff((s1.encoder_params, s1.decoder_params),
                              (sp.encoder_params, sp.decoder_params)),
      'stats_pmap': max_diff(s1.batch_stats, sp.batch_stats) if kind == 'image' else 0.0,
      'metrics_pmap': max_diff(m1, mp),
      'params_shard_map': max_diff((s1.encoder_params, s1.decoder_params),
                                   (ss.encoder_params, ss.decoder_params)),
      'stats_shard_map': max_diff(s1.batch_stats, ss.batch_stats) if kind == 'image' else 0.0,
      'param_scale': max_abs((s1.encoder_params, s1.decoder_params)),
      'moved': max_diff((initial.encoder_params,), (s1.encoder_params,)),
      'stats_moved': max_diff(initial.batch_stats, s1.batch_stats) if kind == 'image' else 0.0,
  }))


if __name__ == '__main__':
  main(sys.argv[1])
