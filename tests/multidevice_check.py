"""Run in a subprocess with N forced CPU devices: train K steps data-parallel on N devices and on
one device with the same global batch and seed, and print the largest differences as JSON.

Usage: XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/multidevice_check.py KIND

KIND: '2d' (the MLPs, standard variant; the suite checks that step on 4 devices in
test_parallel.py's two processes of 2 devices each, main.py's whole path), 'image' (the image
networks, one level on 8 px images: convolutions, BatchNorm, residual blocks, at half the two-level
network's compile time; with every training option on: weight EMA, translation and cutout, the
bootstrap variant with a target refreshed every 3 steps; 2 warm-up steps, so each path compiles the
two-phase program with the options; plain SGD, see `setup`), or 'points' (the 3D variant: point
networks with BatchNorm, Chamfer, a N(0, 0.2^2) prior, its redrawn latents), or 'translation' (the
two-encoder family on 8 px images: two encoders with BatchNorm, the AdaIN generator, Soft-IntroVAE
steps only). Each kind compiles its step for one device and under pmap (main.py's path); 'image'
also under shard_map (`parallel.shard_map_train_step`, for users' jit-and-shardings programs). That
wrapper is the same for every family (state replicated, batch split, the step's own collectives on
parallel.AXIS, which pmap exercises for each kind), so one kind checks it: the one with the most
state (BatchNorm statistics, the EMA, the target decoder). The plain image step without options is
not compiled here: its parts are covered by the 2D networks' runs on several devices (the standard
variant's gradients and metrics averaged over devices) and by 'image' and 'points' (BatchNorm
statistics synchronised; the image networks' step with the options on contains the plain one's
terms).
"""

import json
import sys

import jax
import numpy as np
import optax

import sintrovae_jax as sv
from sintrovae_jax.core import parallel
from sintrovae_jax.data import toy as toy_data


OPTIONS = dict(ema_decay=0.9, augment=('translation', 'cutout'), augment_p=0.5,
               variant='bootstrap', bootstrap_refresh_steps=3)


def setup(kind):
  if kind == 'points':
    from sintrovae_jax.families.points import networks as point_networks  # pylint: disable=g-import-not-at-top
    model = sv.SoftIntroVAE(point_networks.PointEncoder(4, widths=(8, 16), hidden=8),
                            point_networks.PointDecoder(32, widths=(8, 16)))
    shape = (32, 3)
    weights = sv.LossWeights(1.0, 1.0, 2.0, gamma_r=1.0, scale=sv.default_scale(shape),
                             recon_loss='chamfer', prior_std=0.2)
    rng = np.random.default_rng(0)
    batches = [rng.uniform(-0.5, 0.5, (8,) + shape).astype(np.float32) for _ in range(6)]
    tx = sv.make_optimizer(sv.learning_rate_schedule(1e-3))
    state = sv.create_train_state(model, jax.random.PRNGKey(0), shape, tx)
    return model, weights, 0, state, batches, dict(variant='points')
  tx = sv.make_optimizer(sv.learning_rate_schedule(1e-3, (6,)))
  if kind == 'translation':  # class code 3, content code 2, AdaIN layers 8 and 4 from 2 px
    model = sv.translation_vae((8,), 3, 2, (8, 4), 8, 3, modulation_layers=1, modulation_width=6)
    shape = (8, 8, 3)
    weights = sv.LossWeights(1.0, 1.0, 256.0, scale=sv.default_scale(shape))
    rng = np.random.default_rng(0)
    batches = [rng.uniform(size=(8,) + shape).astype(np.float32) for _ in range(4)]
    state = sv.create_train_state(model, jax.random.PRNGKey(0), shape, tx)
    return model, weights, 0, state, batches, {}
  if kind == 'image':  # every option on; 5 steps: 2 warm-up, 3 (target refreshed after the 3rd)
    # Plain SGD: N devices == 1 device to float32 rounding (1.5e-8 here), whatever code XLA
    # makes. Under Adam the two sides differed by 2e-3 to 2e-6 as XLA's version and flags
    # changed: its first steps move an entry by ~lr whatever its gradient's size, so entries
    # whose gradient is near zero step apart on rounding alone. The optimiser is applied after
    # the average, the same code on both sides; with the encoder's gradient not averaged the
    # two sides differ by 7e-5.
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=sv.learning_rate_schedule(1e-4, (6,)))
    model = sv.SoftIntroVAE(sv.ImageEncoder((8,), 4), sv.ImageDecoder((8,), 8, 3))  # one level
    shape, batch = (8, 8, 3), 8
    weights = sv.LossWeights(1.0, 1.0, 256.0, scale=sv.default_scale(shape))
    rng = np.random.default_rng(0)
    batches = [rng.uniform(size=(batch,) + shape).astype(np.float32) for _ in range(5)]
    state = sv.create_train_state(model, jax.random.PRNGKey(0), shape, tx, ema=True, target=True)
    return model, weights, 2, state, batches, OPTIONS
  model = sv.SoftIntroVAE(sv.MLPEncoder((32, 32), 2), sv.MLPDecoder((32, 32), 2))
  shape = (2,)
  weights = sv.LossWeights(0.2, 0.3, 0.9, scale=0.5)
  batches = [toy_data.sample('8gaussians', 64, np.random.default_rng([0, t])) for t in range(10)]
  state = sv.create_train_state(model, jax.random.PRNGKey(0), shape, tx)
  return model, weights, 3, state, batches, {}


def max_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def max_abs(a):
  return max(float(np.max(np.abs(np.asarray(x)))) for x in jax.tree.leaves(a))


def main(kind):
  model, weights, vae_steps, state, batches, options = setup(kind)
  initial = jax.device_get(state)  # host copy: the data-parallel steps donate their inputs
  one = jax.jit(sv.make_train_step(model, weights, vae_steps, **options))
  s1, m1 = initial, None
  for b in batches:
    s1, m1 = one(s1, b)

  many = parallel.pmap_train_step(sv.make_train_step(model, weights, vae_steps, parallel.AXIS,
                                                     **options))
  sp = parallel.replicate(initial)
  for b in batches:
    sp, mp = many(sp, parallel.shard(b))
  sp, mp = parallel.unreplicate(sp), jax.tree.map(lambda x: x[0], mp)

  images = kind != '2d'  # networks with BatchNorm
  extra = {}
  if kind == 'image':  # shard_map; the EMA and the target decoder, and that they moved
    mesh = parallel.data_mesh()
    smap = parallel.shard_map_train_step(
        sv.make_train_step(model, weights, vae_steps, parallel.AXIS, **options), mesh)
    ss = parallel.replicate_on_mesh(initial, mesh)
    for b in batches:
      ss, _ = smap(ss, parallel.shard_on_mesh(b, mesh))
    extra = {'params_shard_map': max_diff((s1.encoder_params, s1.decoder_params),
                                          (ss.encoder_params, ss.decoder_params)),
             'stats_shard_map': max_diff(s1.batch_stats, ss.batch_stats),
             'options_pmap': max_diff((s1.ema, s1.target), (sp.ema, sp.target)),
             'options_shard_map': max_diff((s1.ema, s1.target), (ss.ema, ss.target)),
             'ema_moved': max_diff(initial.ema, s1.ema),
             'target_moved': max_diff(initial.target, s1.target)}
  print(json.dumps({
      **extra,
      'devices': jax.device_count(),
      'params_pmap': max_diff((s1.encoder_params, s1.decoder_params),
                              (sp.encoder_params, sp.decoder_params)),
      'stats_pmap': max_diff(s1.batch_stats, sp.batch_stats) if images else 0.0,
      'metrics_pmap': max_diff(m1, mp),
      'param_scale': max_abs((s1.encoder_params, s1.decoder_params)),
      'moved': max_diff((initial.encoder_params,), (s1.encoder_params,)),
      'stats_moved': max_diff(initial.batch_stats, s1.batch_stats) if images else 0.0,
  }))


if __name__ == '__main__':
  main(sys.argv[1])
