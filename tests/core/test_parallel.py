"""Data parallelism: N devices, and two processes, train the same model as one device."""

import json
import os
import sys

import jax
import numpy as np
import pytest

from configs import toy2d
from devices import cpu_devices_env
from sintrovae_jax.program import standard, workdir as workdir_lib
import processes
from runs import ROOT, finish, run_check, run_main_here, start_hosts


@pytest.mark.long
# The MLPs' standard step on 4 devices is test_two_processes_equal_one_process's (2 x 2 devices).
@pytest.mark.parametrize('kind', ['image', 'points', 'translation'])
def test_four_devices_equal_one_device(kind):
  d = run_check('multidevice_check.py', kind, env=cpu_devices_env(4))
  assert d['devices'] == 4
  assert d['moved'] > 1e-3  # ten steps did train
  tol = 1e-5 * max(1.0, d['param_scale'])
  for key in ('params_pmap', 'stats_pmap'):
    assert d[key] < tol, (key, d)
  assert d['stats_moved'] > 1e-3  # BatchNorm statistics were synchronised, not left alone
  if kind == 'image':  # shard_map too (one kind: multidevice_check.py's docstring says why);
    # EMA and target decoder: the same on 4 devices, and they moved
    assert d['ema_moved'] > 1e-4 and d['target_moved'] > 1e-3, d
    for key in ('params_shard_map', 'stats_shard_map', 'options_pmap', 'options_shard_map'):
      assert d[key] < tol, (key, d)



# num_vae_steps=20, as test_pod.py's two hosts (whose programs are compiled in each run: several
# CPU processes do not use the compilation cache, hosts.initialize says why).
FLAGS_2D = ['--config=configs/toy2d.py:8gaussians', '--config.mlp_hidden=(16,16)',
            '--config.num_train_steps=30', '--config.num_vae_steps=20', '--config.batch_size=64',
            '--config.log_every_steps=10', '--config.sample_every_steps=20',
            '--config.checkpoint_every_steps=20', '--config.num_eval_points=500']


@pytest.mark.long
def test_two_processes_equal_one_process(tmp_path):
  multi = str(tmp_path / 'multi')
  procs = start_hosts([ROOT, ROOT], *FLAGS_2D, f'--workdir={multi}')
  single = run_main_here(*FLAGS_2D, f'--workdir={tmp_path / "one"}')  # this process: 1 device
  outputs = finish(procs)
  assert single.returncode == 0, single.stderr[-3000:]
  for p, output in zip(procs, outputs):
    assert p.returncode == 0, output[-3000:]
  assert 'process 1 of 2' in outputs[1] and '4 devices' in outputs[0]

  config = toy2d.get_config('8gaussians')
  config.update(dict(mlp_hidden=(16, 16), num_train_steps=30, num_vae_steps=20, batch_size=64))
  states = []
  for workdir in (multi, str(tmp_path / 'one')):
    exp = standard.build(config)
    with workdir_lib.checkpoint_manager(workdir, config) as manager:
      assert manager.all_steps() == [20, 30]  # written once, by the two hosts together
      states.append(workdir_lib.restore_latest(manager, exp.state))
  for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(
      jax.tree.leaves(states[1].encoder_params), jax.tree.leaves(exp.state.encoder_params)))
  assert moved > 1e-3  # thirty steps did train (the comparison above is not of two initial states)
  results = [json.load(open(os.path.join(w, 'eval_results.json')))
             for w in (multi, str(tmp_path / 'one'))]
  for k in ('kl', 'jsd', 'gnelbo'):
    np.testing.assert_allclose(results[0][k], results[1][k], rtol=1e-5)


def test_batch_that_does_not_divide_over_devices_fails_before_compiling(tmp_path):
  out = processes.run([sys.executable, 'main.py', *FLAGS_2D, '--config.batch_size=66',
                        f'--workdir={tmp_path}'], cwd=ROOT, env=cpu_devices_env(4), text=True,
                      capture_output=True, timeout=120)
  assert out.returncode != 0
  assert 'config.batch_size=66 is invalid' in out.stderr and 'multiple of 4' in out.stderr
