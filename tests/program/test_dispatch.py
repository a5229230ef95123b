"""Several training steps per compiled call (`steps_per_dispatch`): the same training, cut into
calls at every step where the loop acts."""

import json
import os
import sys

import jax
import numpy as np
import pytest

from configs import toy2d
from devices import cpu_devices_env
import processes
from runs import ROOT, restored
from sintrovae_jax.program import config_lib, standard, train, workdir as workdir_lib

# Steps 37, warm-up 11, logs every 10, checkpoints every 15, pictures every 25: no k divides them.
RUN = dict(mlp_hidden=(16, 16), num_train_steps=37, num_vae_steps=11, batch_size=64,
           log_every_steps=10, sample_every_steps=25, checkpoint_every_steps=15,
           num_eval_points=200, keep_checkpoints=5)


def _config(**overrides):
  config = toy2d.get_config('8gaussians')
  config.update(dict(RUN, **overrides))
  return config


def _run(workdir, **overrides):
  config = _config(**overrides)
  results = train.train_and_evaluate(config, workdir)
  with workdir_lib.checkpoint_manager(workdir, config) as manager:
    state = workdir_lib.restore_latest(manager, standard.build(config).state)
    steps = manager.all_steps()
  history = [json.loads(l) for l in open(os.path.join(workdir, 'history.jsonl'))]
  return state, results, history, steps


def test_calls_end_where_the_loop_acts():
  sizes = list(train.call_sizes(_config(steps_per_dispatch=4), 0, fid_on=False))
  ends = np.cumsum(sizes)
  # Warm-up ends at 11; logs 10, 20, 30; checkpoints 15, 30; pictures 25; the end 37.
  assert sizes == [4, 4, 2, 1, 4, 4, 1, 4, 1, 4, 1, 4, 3] and ends[-1] == 37
  assert {10, 11, 15, 20, 25, 30, 37} <= set(ends) and max(sizes) == 4
  assert list(train.call_sizes(_config(steps_per_dispatch=4), 20, False))[:2] == [4, 1]


def test_any_steps_per_call_trains_the_same_model(tmp_path):
  a, results_a, history_a, saved_a = _run(str(tmp_path / 'k3'), steps_per_dispatch=3)
  b, results_b, history_b, saved_b = _run(str(tmp_path / 'k5'), steps_per_dispatch=5)
  one, results_one, history_one, saved_one = _run(str(tmp_path / 'k1'))
  assert int(a.step) == int(b.step) == 37 and saved_a == saved_b == saved_one == [15, 30, 37]
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)  # one program: bit for bit
  assert history_a == history_b and results_a == results_b
  assert [h['step'] for h in history_one] == [h['step'] for h in history_a] == [10, 20, 30, 37]
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(one)):  # one program per step: rounding
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
  # A run stopped at 20 with 3 per call and resumed with 5 per call ends as the straight run.
  _run(str(tmp_path / 'split'), steps_per_dispatch=3, num_train_steps=20)
  c, _, history_c, _ = _run(str(tmp_path / 'split'), steps_per_dispatch=5)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(c)):
    np.testing.assert_array_equal(x, y)
  assert [h['step'] for h in history_c] == [10, 20, 30, 37]


def test_steps_per_call_on_four_devices_equal_one_device(tmp_path):
  flags = [f'--config.{k}={v}' for k, v in RUN.items() if k != 'mlp_hidden']
  workdir = str(tmp_path / 'four')
  out = processes.run([sys.executable, 'main.py', '--config=configs/toy2d.py:8gaussians',
                       f'--workdir={workdir}', '--config.mlp_hidden=(16,16)', *flags,
                       '--config.steps_per_dispatch=4'], cwd=ROOT, env=cpu_devices_env(4),
                      text=True, capture_output=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'on 4 device(s)' in out.stderr
  config = _config(steps_per_dispatch=4)
  four = restored(workdir, config, standard.build(config).state)
  one, _, _, _ = _run(str(tmp_path / 'one'), steps_per_dispatch=4)
  for x, y in zip(jax.tree.leaves(four), jax.tree.leaves(one)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('value', [0, -2, True])
def test_steps_per_dispatch_must_be_a_positive_integer(value):
  with pytest.raises(config_lib.ConfigError, match='steps_per_dispatch'):
    config_lib.validate(_config(steps_per_dispatch=value))
