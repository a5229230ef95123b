"""A pod run as our users make it: workdir and data in a bucket, every host in step.

Stand-ins (no TPU, no bucket here):
- The bucket, for one process: TensorFlow's in-memory `ram://` filesystem, reached through the
  same etils.epath / tf.io.gfile route that gs:// takes (tests/bucket.py). It lives in one
  process's memory, so the whole run (train, resume, sample, FID, OOD) happens in one process
  started in an empty folder, which must stay empty.
- Hosts: main.py's multi-process CPU mode (jax.distributed over gloo), each process started in
  an empty folder of its own, as each worker has its own disk. The store both see is a shared
  local folder: an emulator of the GCS API would have to serve three clients (tf.io.gfile's,
  fsspec's and TensorStore's), and TensorFlow's reads no emulator setting; the ram:// test above
  is the one that shows nothing bypasses the filesystem layer, these show the hosts agreeing.
"""

import json
import os
import signal
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

import bucket
from configs import image_folder, toy2d
from devices import cpu_devices_env
from sintrovae_jax.data import image_files
from sintrovae_jax.io import fs, hosts
from sintrovae_jax.program import config_lib, lease, standard, workdir as workdir_lib

import processes
import runs  # pylint: disable=g-bad-import-order
from runs import ROOT, finish, latest_step, restored, run_main_here

sys.path.insert(0, os.path.join(ROOT, 'scripts'))
import prepare_images  # pylint: disable=g-import-not-at-top,wrong-import-position

CONFIG_2D = f'--config={ROOT}/configs/toy2d.py:8gaussians'
FLAGS_2D = ['--config.mlp_hidden=(16,16)', '--config.num_vae_steps=20', '--config.batch_size=64',
            '--config.log_every_steps=10', '--config.sample_every_steps=100000',
            '--config.num_eval_points=500']



def _empty_dirs(tmp_path, name, n):
  dirs = [tmp_path / f'{name}_host{i}' for i in range(n)]
  for d in dirs:
    d.mkdir()
  return dirs


def start_hosts_in_empty_dirs(tmp_path, name, *args):
  """main.py as two hosts, each in an empty folder of its own: (processes, folders)."""
  cwds = _empty_dirs(tmp_path, name, 2)
  return runs.start_hosts(cwds, *args), cwds


def _config_2d(steps):
  config = toy2d.get_config('8gaussians')
  config.update(dict(mlp_hidden=(16, 16), num_train_steps=steps, num_vae_steps=20,
                     batch_size=64))
  return config


def _state(workdir, steps):
  config = _config_2d(steps)
  return restored(workdir, config, standard.build(config).state)


@pytest.mark.long
def test_a_bucket_run_leaves_nothing_local(tmp_path, fid_weights):
  here = tmp_path / 'cwd'
  here.mkdir()
  out = processes.run([sys.executable, os.path.join(ROOT, 'tests', 'bucket_run_check.py'),
                       fid_weights, str(tmp_path / 'checkpoint_arrays')], cwd=here,
                      env=cpu_devices_env(1), text=True, capture_output=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  d = json.loads(out.stdout.strip().splitlines()[-1])
  assert d['local'] == [] and not os.listdir(here)  # nothing under the working folder
  assert d['managers'] == ['ram://bucket/run/checkpoints']  # orbax was handed the bucket
  for name in ('config.json', 'startup.json', 'topology.json', 'history.jsonl',
               'eval_results.json', 'fid_results.json', 'ood_results.json',
               'pictures/real_rec_sample_00000004.png', 'pictures/kl_curves.png',
               'samples/samples_00000006.png', 'ood/histogram_neg_log_px.png'):
    assert name in d['bucket'], (name, d['bucket'])
  assert any(n.startswith('fid_cache/reference_') for n in d['bucket'])  # statistics cached
  assert any(n.startswith('fid_cache/inception_') for n in d['bucket'])  # converted weights
  assert any(n.startswith('events.out.tfevents') for n in d['bucket'])  # TensorBoard
  assert d['history'] == [2, 4, 6]  # resumed at 4 from the bucket's checkpoint, no row lost
  assert d['fid_step'] == 6 and np.isfinite(d['resumed_fid']) and d['num_out'] == 4
  assert d['returned'] == d['saved']  # train_and_evaluate returns what eval_results.json holds
  assert 'kl' in d['first'] and 'fid' in d['first']


@pytest.mark.long
def test_two_hosts_stop_together_on_sigterm_and_resume_exactly(tmp_path):
  workdir = str(tmp_path / 'shared' / 'run')
  procs, cwds = start_hosts_in_empty_dirs(tmp_path, 'stopped', CONFIG_2D, *FLAGS_2D,
                                          '--config.num_train_steps=3000',
                                          '--config.checkpoint_every_steps=100000',
                                          f'--workdir={workdir}')
  deadline = time.time() + 240  # startup.json: written once the first step has run
  while not os.path.exists(os.path.join(workdir, 'startup.json')) and time.time() < deadline:
    time.sleep(0.2)
  procs[1].send_signal(signal.SIGTERM)  # to the host that is not process 0
  outputs = finish(procs)
  for p, output in zip(procs, outputs):
    assert p.returncode == 0, output[-3000:]
  stop = latest_step(workdir, _config_2d(3000))
  assert stop is not None and 1 <= stop < 3000, outputs[0][-2000:]
  # Both hosts stopped after the same step: the one saved.
  for output in outputs:
    assert f'Stopped at step {stop} on a stop signal' in output, output[-2000:]
  report = json.load(open(os.path.join(workdir, 'startup.json')))
  # Two CPU processes compile their own programs where loaded ones hang (JAX 0.12.1: hosts.py)
  assert report['process_count'] == 2, report
  assert (report['compilation_cache_dir'] == '') == hosts.cached_programs_hang(), report
  assert [json.loads(l)['step'] for l in open(os.path.join(workdir, 'history.jsonl'))][-1] <= stop

  end = stop + 30
  procs, _ = start_hosts_in_empty_dirs(tmp_path, 'resumed', CONFIG_2D, *FLAGS_2D,
                                       f'--config.num_train_steps={end}', f'--workdir={workdir}')
  for p, output in zip(procs, finish(procs)):
    assert p.returncode == 0, output[-3000:]
    assert f'Resuming from checkpoint at step {stop}' in output or p is procs[1]
  straight = str(tmp_path / 'shared' / 'straight')
  procs, _ = start_hosts_in_empty_dirs(tmp_path, 'straight', CONFIG_2D, *FLAGS_2D,
                                       f'--config.num_train_steps={end}',
                                       f'--workdir={straight}')
  for p, output in zip(procs, finish(procs)):
    assert p.returncode == 0, output[-3000:]
  a, b = _state(workdir, end), _state(straight, end)
  assert int(a.step) == int(b.step) == end
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)  # bit for bit
  for cwd in cwds:
    assert not os.listdir(cwd)  # each host wrote nothing of its own

  # --mode=sample from another folder, with the run's saved config.
  fresh = tmp_path / 'fresh'
  fresh.mkdir()
  out = run_main_here('--mode=sample', f'--workdir={workdir}', '--num_samples=16', cwd=str(fresh))
  assert out.returncode == 0, out.stderr[-3000:]
  assert os.path.exists(os.path.join(workdir, 'samples', f'scatter_{end:08d}.png'))
  assert not os.listdir(fresh)


@pytest.mark.parametrize('fault', ['config', 'lease'])
def test_a_fault_seen_by_process_0_stops_both_hosts_with_one_message(tmp_path, fault):
  workdir = str(tmp_path / 'shared' / 'run')
  args = [CONFIG_2D, *FLAGS_2D, '--config.num_train_steps=20', f'--workdir={workdir}']
  if fault == 'config':  # a workdir trained with another z_dim
    fs.write_json(os.path.join(workdir, 'config.json'), dict(_config_2d(20).to_dict(), z_dim=3,
                                                             mlp_hidden=[16, 16]))
    expected = 'holds a run trained with a different config (z_dim: 3 -> 2)'
  else:  # a lease held by a live run on another machine
    fs.write_json(os.path.join(workdir, lease.LEASE_FILE),
                  {'host': 'worker-elsewhere', 'pid': 12345, 'started': time.time(),
                   'heartbeat': time.time()})
    expected = 'is in use by host worker-elsewhere pid 12345'
  started = time.time()
  procs, _ = start_hosts_in_empty_dirs(tmp_path, fault, *args)
  outputs = finish(procs, timeout=120)
  assert time.time() - started < 120
  lines = []
  for p, output in zip(procs, outputs):
    assert p.returncode == 1, output[-3000:]
    assert 'Traceback' not in output, output[-3000:]
    errors = [l for l in output.splitlines() if l.startswith('error: ')]
    assert len(errors) == 1 and expected in errors[0], output[-3000:]
    lines.append(errors[0])
  assert lines[0] == lines[1]  # the same message on both hosts
  assert not os.path.exists(os.path.join(workdir, 'checkpoints'))


def test_a_resume_on_another_host_count_is_refused_for_images_only(tmp_path):
  workdir = str(tmp_path / 'run')
  fs.write_json(os.path.join(workdir, 'topology.json'),
                {'process_count': 4, 'device_count': 16, 'local_device_count': 4})
  images = image_folder.get_config()
  with pytest.raises(config_lib.ConfigError) as err:
    workdir_lib.check_topology(images, workdir, start=100)
  message = str(err.value)
  assert 'trained on 4 host(s) and this run has 1' in message and 'new --workdir' in message
  workdir_lib.check_topology(images, workdir, start=0)  # nothing to continue: a fresh start
  workdir_lib.check_topology(_config_2d(20), workdir, start=100)  # global positions: exact
  workdir_lib.write_topology(workdir)
  workdir_lib.check_topology(images, workdir, start=100)  # the same count again: fine


def test_prepare_images_writes_square_pngs_into_a_bucket(tmp_path):
  bucket.register_ram()
  rng = np.random.default_rng(0)
  (tmp_path / 'src' / 'sub').mkdir(parents=True)
  for name, shape in (('a.jpg', (30, 40, 3)), ('sub/b.png', (50, 20, 3)), ('c.png', (16, 16))):
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(tmp_path / 'src' / name)
  (tmp_path / 'src' / 'broken.png').write_bytes(b'not an image')
  dest = 'ram://prepared/images'
  counts = prepare_images.prepare(str(tmp_path / 'src'), dest, 16)
  assert counts['written'] == 3 and counts['kept'] == 0 and len(counts['skipped']) == 1
  assert bucket.listing(dest) == ['a.png', 'c.png', 'sub/b.png']
  for name in ('a.png', 'c.png', 'sub/b.png'):
    image = image_files.decode_image(fs.read_bytes(f'{dest}/{name}'), 'RGB')
    assert image.size == (16, 16)
  # A 16 px square image is kept as it is (Lanczos at scale 1 is the identity).
  original = np.asarray(Image.open(tmp_path / 'src' / 'c.png').convert('RGB'))
  np.testing.assert_array_equal(
      np.asarray(image_files.decode_image(fs.read_bytes(f'{dest}/c.png'), 'RGB')), original)
  assert prepare_images.prepare(str(tmp_path / 'src'), dest, 16)['kept'] == 3  # a rerun resumes
