"""Prints the OOD scores of 7 fixed images as JSON, on however many devices XLA_FLAGS gives.

Usage: XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/ood_multidevice_check.py
(tests/evaluators/test_ood.py runs it on 4 devices and calls `scores` in its own 1-device process).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

import sintrovae_jax as sv  # pylint: disable=g-import-not-at-top
from sintrovae_jax.evaluators import ood, regret  # pylint: disable=g-import-not-at-top

def scores() -> dict:
  """The scores of 7 fixed images on this process's devices (test_ood calls it for 1 device)."""
  model = sv.SoftIntroVAE(sv.ImageEncoder((8, 16), 4), sv.ImageDecoder((8, 16), 16, 3))
  state = sv.create_train_state(model, jax.random.PRNGKey(0), (16, 16, 3),
                                sv.make_optimizer(sv.learning_rate_schedule(1e-3)))
  images = np.random.default_rng(0).integers(0, 256, (7, 16, 16, 3), dtype=np.uint8)
  scorer = ood.Scorer(model, state, jax.random.PRNGKey(1), 5, 'mse', 0.7, rows_per_call=4,
                      regret_options=regret.RegretOptions(steps=0))
  out = ood.score_images(scorer, [images[:4], images[4:]])  # 7 = 4 + 3: padding on 4 devices
  return {'devices': jax.local_device_count(),
          **{k: np.asarray(v, np.float64).tolist() for k, v in out.items()}}


if __name__ == '__main__':
  print(json.dumps(scores()))
