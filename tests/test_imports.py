"""What a user embedding the library imports: the core, the evaluators and the OOD scorer load
without TensorFlow (only the data pipeline and the training program need it)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every module of these sub-packages, and the named others (the data pipeline and the training
# programs are the ones that need TensorFlow).
TENSORFLOW_FREE_PACKAGES = ('core', 'io', 'families', 'interop', 'evaluators')
TENSORFLOW_FREE_MODULES = ('data.image_files', 'data.kinds', 'data.point_files', 'data.toy',
                           'program.config_lib', 'program.lease', 'program.workdir')


def _tensorflow_free():
  names = ['sintrovae_jax']
  for folder, _, files in sorted(os.walk(os.path.join(ROOT, 'sintrovae_jax'))):
    package = os.path.relpath(folder, os.path.join(ROOT, 'sintrovae_jax')).replace(os.sep, '.')
    if package.split('.')[0] in TENSORFLOW_FREE_PACKAGES:
      names += [f'sintrovae_jax.{package}.{f[:-3]}' for f in sorted(files)
                if f.endswith('.py') and f != '__init__.py']
  return names + [f'sintrovae_jax.{m}' for m in TENSORFLOW_FREE_MODULES]


TENSORFLOW_FREE = _tensorflow_free()


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
  assert _imports_tensorflow('sintrovae_jax.data.pipeline')  # (the check sees TensorFlow)
