"""Makes step_golden.npz: what the published step computed before the training options existed.

Issue 13 adds options (EMA, augmentation, the bootstrap variant, reductions) that must leave the
default step unchanged bit for bit. This script ran at commit a769eae (before them), once per JAX
version the project supports, from the repository root:

  python tests/golden/make_step_golden.py          # Python 3.11, JAX 0.10
  /tmp/py313/bin/python tests/golden/make_step_golden.py   # Python 3.13, JAX 0.12

Each run adds its JAX version's arrays to the file (XLA's CPU code generation differs between
versions and processors, so bit for bit holds per version, on the processor recorded with it;
elsewhere the test compares to float32 rounding). The suite compiles with XLA's fast-compile
preset (tests/devices.py), whose code differs again, so each version has two sets: `jax<version>`
(XLA's defaults: the runs above with SINTROVAE_TEST_XLA_DEFAULTS=1, since importing conftest turns
the preset on) and `jax<version>+fast_compile` (this script, tests/devices.py and the file copied
into a worktree of a769eae, run there with XLA_FLAGS=--xla_cpu_opt_preset=FAST_COMPILE, the file
copied back; the suite's flags add LLVM optimisation level 1 to the preset, which computes the
same bits). tests/core/test_options.py reruns the same scenarios (`scenarios` below, imported
from here) with today's code and compares.
"""

import hashlib
import os
import sys

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tests'))

import sintrovae_jax as sv  # pylint: disable=g-import-not-at-top
from conftest import mlp_model, tiny_image_model  # pylint: disable=g-import-not-at-top
import devices  # pylint: disable=g-import-not-at-top

PATH = os.path.join(ROOT, 'tests', 'golden', 'step_golden.npz')
NUM_STEPS = 3  # one vanilla-VAE step, then two Soft-IntroVAE iterations


def scenarios():
  """name -> (model, weights, data_shape, batch): the 2D MLPs and the image networks (BatchNorm)."""
  rng = np.random.default_rng(13)
  points = rng.normal(size=(8, 2)).astype(np.float32)
  images = rng.uniform(size=(4, 16, 16, 3)).astype(np.float32)
  return {
      'mlp': (mlp_model(), sv.LossWeights(beta_rec=0.2, beta_kl=0.3, beta_neg=0.9, scale=0.5),
              (2,), points),
      'image': (tiny_image_model(), sv.LossWeights(beta_rec=1.0, beta_kl=1.0, beta_neg=256.0,
                                                   scale=sv.default_scale((16, 16, 3))),
                (16, 16, 3), images),
  }


def run(model, weights, shape, batch, **step_options):
  """NUM_STEPS default steps from seed 0 with Adam; returns {path: array} of the parameters,
  BatchNorm statistics and step (Adam's moments shape the parameters) and every step's metrics."""
  tx = sv.make_optimizer(sv.learning_rate_schedule(1e-3))
  state = sv.create_train_state(model, jax.random.PRNGKey(0), shape, tx)
  step = jax.jit(sv.make_train_step(model, weights, num_vae_steps=1, **step_options))
  metrics = []
  for _ in range(NUM_STEPS):
    state, m = step(state, batch)
    metrics.append(m)
  out = {f'state{jax.tree_util.keystr(p)}': np.asarray(v)
         for p, v in jax.tree_util.tree_flatten_with_path(
             (state.step, state.encoder_params, state.decoder_params, state.batch_stats))[0]}
  for k in metrics[0]:
    out[f'metric/{k}'] = np.stack([np.asarray(m[k]) for m in metrics])
  return out


def cpu_model() -> str:
  """This processor as XLA's CPU code generation sees it: /proc/cpuinfo's model name, family and
  model numbers, and a digest of its feature flags (AVX-512 or not changes the code)."""
  fields = {}
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        key, _, value = line.partition(':')
        fields.setdefault(key.strip(), value.strip())
  except OSError:
    return 'unknown'
  flags = hashlib.sha1(' '.join(sorted(fields.get('flags', '').split())).encode()).hexdigest()
  return (f"{fields.get('model name', '?')} | family {fields.get('cpu family', '?')} model "
          f"{fields.get('model', '?')} | flags {flags[:12]}")


def version_tag() -> str:
  """This JAX and compiler preset: XLA's code, hence the bits, differ between them."""
  return f'jax{jax.__version__}' + ('+fast_compile' if devices.fast_compile_on() else '')


def golden_key(name: str, path: str) -> str:
  return f'{version_tag()}|{name}|{path}'


def main():
  saved = dict(np.load(PATH)) if os.path.exists(PATH) else {}
  for name, args in scenarios().items():
    for path, value in run(*args).items():
      saved[golden_key(name, path)] = value
  saved[golden_key('meta', 'cpu')] = np.array(cpu_model())
  np.savez_compressed(PATH, **saved)
  print(f'{PATH}: {len(saved)} arrays, JAX versions',
        sorted({k.split("|")[0] for k in saved}))


if __name__ == '__main__':
  main()
