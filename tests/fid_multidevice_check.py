"""Run in a subprocess with N forced CPU devices: FID/KID/fid_rec of a tiny model, as JSON.

Usage: XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/fid_multidevice_check.py W
(W: the Inception weights file). tests/program/test_fid_training.py compares 4 devices (this
script's process) with 1 (`results`, called in the test's own process).
"""

import json
import os
import sys
import tempfile

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sintrovae_jax as sv  # pylint: disable=g-import-not-at-top
from configs import default  # pylint: disable=g-import-not-at-top
from sintrovae_jax.core import parallel  # pylint: disable=g-import-not-at-top
from sintrovae_jax.evaluators import fid_evaluator as fid_eval


def results(weights) -> dict:
  """FID, KID and fid_rec of a tiny model on this process's devices (test_fid_training calls it
  for 1 device)."""
  config = default.get_config()
  config.update(dict(fid_inception_weights=weights, fid_num_samples=8, fid_num_reference=8,
                     fid_batch_size=8, kid_subset_size=5, fid_matrix_sqrt='eigh', eval_seed=7))
  model = sv.SoftIntroVAE(sv.ImageEncoder((8, 16), 4), sv.ImageDecoder((8, 16), 16, 3))
  tx = sv.make_optimizer(sv.learning_rate_schedule(1e-3, ()))
  state = sv.create_train_state(model, jax.random.PRNGKey(0), (16, 16, 3), tx)
  # Non-trivial running statistics, so that evaluation mode matters.
  state = state.replace(batch_stats=jax.tree.map(lambda s: s + 0.3, state.batch_stats))
  rng = np.random.default_rng(0)
  real = rng.uniform(size=(8, 16, 16, 3)).astype(np.float32)
  heldout = rng.uniform(size=(7, 16, 16, 3)).astype(np.float32)
  batches = lambda images: lambda: (images[i:i + 8] for i in range(0, len(images), 8))
  with tempfile.TemporaryDirectory() as cache:
    evaluator = fid_eval.FidEvaluator(config, model, batches(real), batches(heldout), cache)
    return dict(evaluator(parallel.replicate(state)), devices=jax.local_device_count())


if __name__ == '__main__':
  print(json.dumps(results(sys.argv[1])))
