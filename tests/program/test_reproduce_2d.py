"""scripts/reproduce_2d.py: its vmapped seeds train and evaluate as separate main.py runs do."""

import os
import sys

import jax
import numpy as np

from configs import toy2d
from sintrovae_jax.program import standard, train

from runs import ROOT, restored  # pylint: disable=g-bad-import-order

sys.path.insert(0, os.path.join(ROOT, 'scripts'))
import reproduce_2d  # pylint: disable=g-import-not-at-top,wrong-import-position


def _tiny(dataset, seed=0):
  config = toy2d.get_config(dataset)
  config.update(dict(mlp_hidden=(16, 16), batch_size=32, num_train_steps=9, num_vae_steps=4,
                     lr_decay_steps=(6,), num_eval_points=400, log_every_steps=3,
                     checkpoint_every_steps=9, sample_every_steps=9, seed=seed))
  return config


def test_vmapped_seeds_equal_separate_training_runs(tmp_path):
  seeds = (3, 11)
  # chunk 2 splits both phases unevenly, so the phase boundary inside a chunk is exercised too.
  states, model = reproduce_2d.train_seeds(_tiny('8gaussians'), seeds, chunk=2)
  for i, seed in enumerate(seeds):
    config = _tiny('8gaussians', seed)
    workdir = str(tmp_path / f'seed{seed}')
    want = train.train_and_evaluate(config, workdir)
    exp = standard.build(config)
    ref = restored(workdir, config, exp.state)
    got = jax.tree.map(lambda x, i=i: x[i], states)
    assert int(got.step) == int(ref.step) == 9
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):  # params, stats, Adam, key
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    results = reproduce_2d.evaluate_seed('8gaussians', model, got, config, str(tmp_path), seed)
    for k in ('kl', 'jsd', 'gnelbo', 'modes_covered'):
      np.testing.assert_allclose(results[k], want[k], rtol=1e-4)
  # The two seeds really are different runs.
  first = jax.tree.leaves(states.encoder_params)[0]
  assert not np.allclose(first[0], first[1])
