"""What a user embedding the library imports: the core, the evaluators and the OOD scorer load
without TensorFlow (only the data pipeline and the training program need it)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TENSORFLOW_FREE = ['sintrovae_jax', 'sintrovae_jax.fid', 'sintrovae_jax.fid_eval',
                   'sintrovae_jax.inception', 'sintrovae_jax.evaluation',
                   'sintrovae_jax.likelihood', 'sintrovae_jax.ood', 'sintrovae_jax.metrics_2d',
                   'sintrovae_jax.metrics_3d', 'sintrovae_jax.fs', 'sintrovae_jax.hosts',
                   'sintrovae_jax.lease', 'sintrovae_jax.workdir', 'sintrovae_jax.config_lib',
                   'sintrovae_jax.plotting', 'sintrovae_jax.torch_archive',
                   'sintrovae_jax.style_checkpoint', 'sintrovae_jax.image_files']


def _imports_tensorflow(module: str) -> bool:
  code = f'import sys, {module}; print(__import__("json").dumps("tensorflow" in sys.modules))'
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_core_evaluators_and_ood_scorer_do_not_import_tensorflow():
  code = ('import sys\n' + ''.join(f'import {m}\n' for m in TENSORFLOW_FREE) +
          'print(sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")[:3])')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().splitlines()[-1] == '[]', out.stdout
  assert _imports_tensorflow('sintrovae_jax.input_pipeline')  # (the check sees TensorFlow)
