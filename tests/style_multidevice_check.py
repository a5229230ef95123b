"""Run in a subprocess with N forced CPU devices: a few style steps (4 px Soft-IntroVAE steps:
style mixing, noise inputs, the running w average, the EMA) data-parallel on N devices (pmap, as
main.py runs it; the step has no pmap-specific code, the ResNet step's shard_map check covers that
path) and on one device with the same global batch and seed; print the largest differences.
(4 px keeps the two compiles short; the fade-in's blend is a function of the replicated step.)

Usage: XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/style_multidevice_check.py
"""

import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from sintrovae_jax.core import parallel
from sintrovae_jax.families.style import progressive, step as style_step
from sintrovae_jax.core.objectives import LossWeights
from tiny import tiny_style_model

STEPS = 3


def max_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def run(model):
  """(initial state, one-device state and metrics, N-device state and metrics) after STEPS
  steps of the same global batches, and each step's (one-device, N-device) metrics from the
  same state."""
  phases = progressive.build_phases((64, 64), (8, 8), (1e-3, 1e-3), (64.0, 32.0), 32, 0)
  phase = [p for p in phases if p.kind == 'stable'][0]
  state, coeffs = style_step.create_style_state(model, jax.random.PRNGKey(0))
  state = style_step.reset_optimizers(state.replace(step=jax.numpy.int32(phase.start)), phase,
                                      coeffs)
  # The 4 px block starts from a learned constant, 1 everywhere; its first InstanceNorm then sees
  # `1 + bias + w * noise`, which it maps to `sign(w) IN(noise)` while the LeakyReLU between them
  # is linear: the gradients of that bias and noise weight are zero but for rounding, which Adam
  # scales up to full steps of either sign (one device and four, like two GPUs, round apart).
  # Training soon makes the constant vary in space; start there (drawn once, so all agree).
  const = state.decoder_params['decoder']['const']
  noisy = jax.random.normal(jax.random.PRNGKey(5), const.shape)
  state = state.replace(decoder_params=dict(state.decoder_params, decoder=dict(
      state.decoder_params['decoder'], const=noisy)))
  weights = LossWeights(beta_rec=1.0, beta_kl=1.0, beta_neg=0.0, gamma_r=1e-8, scale=1 / 64)
  options = dict(mixing_prob=0.9, ema_decay=0.5, dlatent_avg_beta=0.9)
  rng = np.random.default_rng(0)
  batches = [rng.uniform(size=(8, 4, 4, 1)).astype(np.float32) for _ in range(STEPS)]
  initial = jax.device_get(state)

  one = jax.jit(style_step.make_style_train_step(model, weights, phase, coeffs, **options))
  states, metrics = [initial], []  # the one-device run: the state before each step, its metrics
  for b in batches:
    s1, m1 = one(states[-1], b)
    states.append(s1)
    metrics.append(m1)
  step_fn = style_step.make_style_train_step(model, weights, phase, coeffs, parallel.AXIS,
                                             **options)
  sp = parallel.replicate(initial)
  many = parallel.pmap_train_step(step_fn)
  for b in batches:
    sp, mp = many(sp, parallel.shard(b))
  # Each step again on N devices from the one-device run's state before it: the two sides'
  # metrics then differ by that step's rounding alone, not by how far their states drifted.
  pairs = [(m, jax.tree.map(lambda x: x[0], many(parallel.replicate(s), parallel.shard(b))[1]))
           for s, b, m in zip(states, batches, metrics)]
  return (initial, (s1, m1), (parallel.unreplicate(sp), jax.tree.map(lambda x: x[0], mp)),
          pairs)


PARTS = ('encoder_params', 'decoder_params', 'encoder_opt_state', 'decoder_opt_state',
         'dlatent_avg', 'ema', 'step', 'rng')


def rel(a, b, part):
  """A part's largest difference relative to its largest value (Adam's v spans many scales)."""
  return max_diff(getattr(a, part), getattr(b, part)) / max(
      1.0, max(float(np.max(np.abs(x))) for x in jax.tree.leaves(getattr(a, part))))


def rel_metrics(a, b):
  """The largest relative difference between two metric dicts (values near 0: absolute).

  The soft exponential terms (exp_elbo_*, exp(-s ELBO)) through their exponents: bfloat16
  rounds the ELBO, and an exponent moved by d moves exp by d relative (one bfloat16 step of an
  exponent near 3.8 is 1.5%: 0.02148 vs 0.02171, 1.1e-2 apart, are 2.8e-3 apart as exponents).
  """
  def value(k, x):
    return float(np.log(float(x))) if k.startswith('exp_') and float(x) > 0 else float(x)
  return max(abs(value(k, a[k]) - value(k, b[k])) / max(abs(value(k, a[k])), 1e-2) for k in a)


def fraction_apart(a, b, tol=5e-4):
  """The fraction of parameter entries that differ by more than `tol` (half the step's lr)."""
  d = np.concatenate([np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).ravel()
                      for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))])
  return float(np.mean(d > tol))


def _networks(state):
  return (state.encoder_params, state.decoder_params)


def main():
  model = tiny_style_model()
  initial, (s1, m1), (sp, mp), _ = run(model)
  # The same in bfloat16 compute (config.compute_dtype): float32 parameters, states and metrics.
  _, (b1, bm1), (bp, _), bf16_pairs = run(dataclasses.replace(model, dtype=jnp.bfloat16))
  floats = [x.dtype for x in jax.tree.leaves((b1, bm1)) if jnp.issubdtype(x.dtype, jnp.floating)]
  print(json.dumps({
      'devices': jax.device_count(),
      'state_pmap': {p: rel(s1, sp, p) for p in PARTS},
      'metrics_pmap': max_diff(m1, mp),
      'moved': max_diff(initial.encoder_params, s1.encoder_params),
      'ema_moved': max_diff(initial.ema, s1.ema),
      'w_avg_moved': max_diff(initial.dlatent_avg, s1.dlatent_avg),
      # bfloat16 rounds differently where XLA splits a batch differently, and Adam's first steps
      # move a parameter by ~lr whatever the size of its gradient, so parameters with gradients
      # near zero may step apart: compare each step's metrics from the same state (after three
      # steps apart, the last step's metrics differed by 4.5e-3 to 1.2e-2 as XLA's version and
      # flags changed), and count the parameters that moved apart.
      'bf16_metrics_pmap': max(rel_metrics(a, b) for a, b in bf16_pairs),
      'bf16_params_apart_pmap': fraction_apart(_networks(b1), _networks(bp)),
      'bf16_float_dtypes': sorted({str(d) for d in floats}),
      'bf16_vs_f32_metrics': rel_metrics(m1, bm1),
      'bf16_vs_f32_params_apart': fraction_apart(_networks(s1), _networks(b1)),
  }))


if __name__ == '__main__':
  main()
