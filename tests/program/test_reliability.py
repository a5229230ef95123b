"""Faults a user or an operator meets: each test reproduces one and checks the program's answer."""

import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from configs import image_folder, toy2d
from sintrovae_jax.core import inference
from sintrovae_jax.data import (image_files, kinds, numpy_batches, pipeline as input_pipeline, tf_images)
from sintrovae_jax.program import config_lib, lease, train, workdir as workdir_lib
import processes
from runs import ROOT, latest_step, params_of, run_main, run_main_here, stop_long_2d_run
from tiny import tiny_2d_flags


def _points_config(tmp_path, **overrides):
  points = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
  path = tmp_path / 'points.npy'
  if not path.exists():
    np.save(path, points)
  config = toy2d.get_config('npy')
  config.update(dict(data_file=str(path), mlp_hidden=(8,), batch_size=16, num_train_steps=4,
                     num_vae_steps=1, log_every_steps=1, sample_every_steps=100,
                     checkpoint_every_steps=2, num_eval_points=32, keep_checkpoints=5))
  config.update(overrides)
  return config


def _jpeg_bytes(rng, size=64):
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, 'JPEG')
  return buffer.getvalue()


def _folder_config(folder):
  config = image_folder.get_config()
  config.update(dict(data_dir=str(folder), image_size=16, channels=(8, 16), batch_size=4,
                     shuffle_buffer=16))
  return config


def _next_within(iterator, seconds):
  """next(iterator) in a thread: (value or exception), or a failure if it does not return."""
  box = {}

  def run():
    try:
      box['value'] = next(iterator)
    except Exception as e:  # pylint: disable=broad-except
      box['error'] = e

  thread = threading.Thread(target=run, daemon=True)
  thread.start()
  thread.join(seconds)
  assert not thread.is_alive(), f'no batch and no error within {seconds} s: the stream hangs'
  return box


def test_a_folder_where_nothing_decodes_stops_with_a_clear_error(tmp_path):
  rng = np.random.default_rng(0)
  for i in range(5):  # truncated JPEGs: they open, and fail to decode
    data = _jpeg_bytes(rng)
    (tmp_path / f'{i}.jpg').write_bytes(data[:len(data) // 2])
  box = _next_within(_lazy(lambda: input_pipeline.train_iterator(_folder_config(tmp_path))), 60)
  assert isinstance(box.get('error'), kinds.DataError), box
  assert str(tmp_path) in str(box['error']) and '.jpg' in str(box['error'])


def _lazy(make):
  """An iterator that builds `make()` on first next(), so that building is timed too."""
  yield from make()


def test_bad_files_past_the_start_up_sample_are_skipped_counted_and_stop_a_dead_stream(
    tmp_path, caplog):
  rng = np.random.default_rng(0)
  for i in range(tf_images.FILES_CHECKED_AT_START):
    (tmp_path / f'a_good{i:03d}.jpg').write_bytes(_jpeg_bytes(rng))
  (tmp_path / 'a_broken.png').write_text('not an image')  # inside the sample: dropped at start
  for i in range(2):  # past the sample: met while training, skipped and counted
    data = _jpeg_bytes(rng)
    (tmp_path / f'z_truncated{i}.jpg').write_bytes(data[:len(data) // 2])
  with caplog.at_level(logging.WARNING):
    config = _folder_config(tmp_path)
    config.batch_size = 16
    batches = input_pipeline.train_iterator(config)
    for _ in range(6):  # more than one epoch of 66 usable files
      assert _next_within(batches, 60)['value'].shape == (16, 16, 16, 3)
  text = caplog.text
  assert 'Skipping 1 unreadable image file(s)' in text and 'a_broken.png' in text
  assert 'z_truncated0.jpg' in text and 'z_truncated1.jpg' in text and '2 skipped so far' in text
  # A stream in which every file fails (after a good start-up sample) ends, it does not hang.
  failures = tf_images.DecodeFailures(str(tmp_path), limit=3)
  for i in range(3):
    failures.failed(f'bad{i}.jpg', OSError('truncated'))
  assert failures.error is not None and 'bad0.jpg' in str(failures.error)


def test_listing_a_large_folder_opens_no_file(tmp_path, monkeypatch):
  for i in range(70_000):
    (tmp_path / f'{i:05d}.png').touch()
  opened = []
  real_open = open
  monkeypatch.setattr('builtins.open', lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
  paths = image_files.list_image_folder(str(tmp_path))
  assert len(paths) == 70_000 and paths == sorted(paths) and not opened


def test_points_that_cannot_train_are_refused(tmp_path):
  cases = {'huge.npy': np.array([[1e300, 0.0], [0.0, 1.0]]),
           'zeros.npy': np.zeros((10, 2))}
  for name, array in cases.items():
    np.save(tmp_path / name, array)
  (tmp_path / 'text.npy').write_text('1.0, 2.0\n3.0, 4.0\n')
  with pytest.raises(kinds.DataError, match='float32 range'):
    numpy_batches.load_points(str(tmp_path / 'huge.npy'))
  with pytest.raises(kinds.DataError, match='identical'):
    numpy_batches.load_points(str(tmp_path / 'zeros.npy'))
  with pytest.raises(kinds.DataError, match='not a NumPy .npy file'):
    numpy_batches.load_points(str(tmp_path / 'text.npy'))


def test_an_empty_image_folder_fails_at_once_and_writes_nothing(tmp_path):
  (tmp_path / 'images').mkdir()
  (tmp_path / 'images' / 'notes.txt').write_text('no images here')
  workdir = tmp_path / 'run'
  start = time.time()
  with pytest.raises(config_lib.ConfigError, match='no image files'):
    train.train_and_evaluate(_folder_config(tmp_path / 'images'), str(workdir))
  assert time.time() - start < 10 and not workdir.exists()


def _damage(step_dir, how):
  item = os.path.join(step_dir, 'default')
  if how == 'data_file':
    for root, _, names in os.walk(os.path.join(item, 'd')):
      for name in names:
        path = os.path.join(root, name)
        with open(path, 'r+b') as f:
          f.truncate(os.path.getsize(path) // 2)
  elif how == 'metadata':
    os.remove(os.path.join(item, '_METADATA'))
  elif how == 'manifest':
    path = os.path.join(item, 'manifest.ocdbt')
    with open(path, 'r+b') as f:
      f.truncate(os.path.getsize(path) // 2)


@pytest.mark.parametrize('how', ['data_file', 'metadata', 'manifest'])
def test_a_damaged_latest_checkpoint_falls_back_to_an_intact_one(tmp_path, caplog, how):
  config = _points_config(tmp_path)
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  at_2 = tmp_path / 'at_2'
  shutil.copytree(os.path.join(workdir, 'checkpoints', '2'), at_2)
  _damage(os.path.join(workdir, 'checkpoints', '4'), how)
  config.num_train_steps = 6
  with caplog.at_level(logging.WARNING):
    train.train_and_evaluate(config, workdir)
  assert 'step 4' in caplog.text and 'damaged' in caplog.text
  assert os.path.isdir(os.path.join(workdir, 'checkpoints_damaged', '4'))
  assert latest_step(workdir, config) == 6
  history = [json.loads(l)['step'] for l in open(os.path.join(workdir, 'history.jsonl'))]
  assert history == sorted(history) and history[-3:] == [4, 5, 6]  # resumed from step 2

  # When no checkpoint restores, one clear error naming them, and nothing is moved.
  for step in ('4', '6'):
    _damage(os.path.join(workdir, 'checkpoints', step), 'metadata')
  _damage(os.path.join(workdir, 'checkpoints', '2'), 'metadata')
  config.num_train_steps = 8
  with pytest.raises(workdir_lib.CheckpointError, match='No checkpoint .* can be restored'):
    train.train_and_evaluate(config, workdir)


def test_a_picture_failure_loses_no_checkpoint(tmp_path, monkeypatch):
  def broken(*args, **kwargs):
    raise OverflowError('cannot draw this')

  monkeypatch.setattr(train, 'write_pictures', broken)
  config = _points_config(tmp_path, sample_every_steps=2, checkpoint_every_steps=100)
  workdir = str(tmp_path / 'run')
  results = train.train_and_evaluate(config, workdir)
  assert results and os.path.exists(os.path.join(workdir, 'eval_results.json'))
  assert latest_step(workdir, config) == 4


def test_a_changed_config_is_refused_unless_it_only_changes_run_length_or_logging(tmp_path):
  config = _points_config(tmp_path)
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  saved = open(os.path.join(workdir, 'config.json')).read()
  for field, value in (('z_dim', 3), ('mlp_hidden', (8, 8)), ('dataset', '8gaussians'),
                       ('beta_neg', 2.0)):
    changed = _points_config(tmp_path, **{field: value})
    with pytest.raises(workdir_lib.ConfigChanged) as err:
      train.train_and_evaluate(changed, workdir)
    message = str(err.value)
    assert field in message and 'new --workdir' in message and f'--config.{field}=' in message
  assert open(os.path.join(workdir, 'config.json')).read() == saved  # untouched
  longer = _points_config(tmp_path, num_train_steps=6, log_every_steps=2)
  train.train_and_evaluate(longer, workdir)
  assert latest_step(workdir, longer) == 6


def test_a_second_run_on_the_same_workdir_is_refused(tmp_path):
  workdir = str(tmp_path / 'run')
  holder = lease.Lease(workdir).acquire()
  try:
    with pytest.raises(lease.WorkdirLocked, match=f'pid {os.getpid()}'):
      train.train_and_evaluate(_points_config(tmp_path), workdir)
  finally:
    holder.release()
  assert train.train_and_evaluate(_points_config(tmp_path), workdir)  # free again


def test_history_never_goes_back_in_time_after_a_resume(tmp_path):
  config = _points_config(tmp_path)
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  # As after kill -9 past step 2: rows up to 4 were written, the checkpoint at 4 never was.
  shutil.rmtree(os.path.join(workdir, 'checkpoints', '4'))
  train.train_and_evaluate(config, workdir)
  steps = [json.loads(l)['step'] for l in open(os.path.join(workdir, 'history.jsonl'))]
  assert steps == [1, 2, 3, 4]


def test_nonfinite_state_is_never_saved():
  with pytest.raises(FloatingPointError, match='the state'):
    workdir_lib.assert_finite({'a': np.ones(3), 'b': np.array([1.0, np.inf])}, 'the state')
  workdir_lib.assert_finite({'a': np.ones(3), 'step': np.array(3)}, 'the state')


def test_user_errors_print_one_message_without_a_traceback(tmp_path):
  cases = [
      (['--config=configs/nonexistent.py'], 'nonexistent.py'),
      (['--config=configs/toy2d.py:8gaussians', '--config.z_dimm=3'], 'did you mean'),
      (['--config=configs/mnist.py', f'--config.data_dir={tmp_path / "no_data"}'],
       'tfds build mnist'),
  ]
  for args, expected in cases:
    out = run_main_here(*args, f'--workdir={tmp_path / "run"}')
    assert out.returncode in (1, 2), out.stderr[-2000:]
    assert 'Traceback' not in out.stderr, out.stderr[-3000:]
    assert expected.lower() in out.stderr.lower() and 'error:' in out.stderr
  assert not (tmp_path / 'run').exists()


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
  workdir = str(tmp_path / 'run')
  returncode, output = stop_long_2d_run(workdir, signal.SIGINT)
  assert returncode == 0, output[-3000:]
  assert 'SIGINT received' in output and 'Traceback' not in output
  config = toy2d.get_config('8gaussians')
  config.update(dict(mlp_hidden=(16, 16), num_train_steps=3000, num_vae_steps=20, batch_size=64))
  step = latest_step(workdir, config)
  assert step is not None and 1 <= step < 3000
  assert int(params_of(workdir, config).step) == step


def test_uint8_images_equal_the_float_path():
  """Native-size images: uint8, then /255 on the device, equals the float path to float32
  rounding (XLA may divide as a multiplication by 1/255: at most one unit in the last place)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
  as_float = tf_images.resize_and_crop(tf.constant(image), 16, 3).numpy()  # pylint: disable=protected-access
  as_uint8 = tf_images.resize_and_crop(tf.constant(image), 16, 3, as_uint8=True).numpy()  # pylint: disable=protected-access
  assert as_uint8.dtype == np.uint8 and as_uint8.nbytes * 4 == as_float.nbytes
  np.testing.assert_allclose(np.asarray(inference.to_unit_range(as_uint8)), as_float, rtol=0,
                             atol=np.finfo(np.float32).eps / 2)
  # Resized images are rounded to 8 bits, as a stored image would be: within half a level.
  resized = tf_images.resize_and_crop(tf.constant(image), 8, 3).numpy()  # pylint: disable=protected-access
  rounded = tf_images.resize_and_crop(tf.constant(image), 8, 3, as_uint8=True).numpy()  # pylint: disable=protected-access
  assert np.abs(np.asarray(inference.to_unit_range(rounded)) - resized).max() <= 0.5 / 255 + 1e-7


def test_restart_reuses_compiled_steps_and_reports_its_start_up(tmp_path):
  """Without a cache in the environment, the default cache folder is inside the workdir."""
  env = {k: v for k, v in os.environ.items() if not k.startswith('JAX_PERSISTENT_CACHE')
         and k != 'JAX_COMPILATION_CACHE_DIR'}
  workdir = tmp_path / 'run'
  flags = ['--config=configs/toy2d.py:8gaussians', f'--workdir={workdir}',
           *tiny_2d_flags(steps=30, vae=10)]
  for steps in (30, 50):  # the second run resumes at 30, in the Soft-IntroVAE phase
    out = run_main(*flags, f'--config.num_train_steps={steps}', env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.load(open(workdir / 'startup.json'))
  assert os.listdir(workdir / 'compilation_cache')
  assert report['start_step'] == 30 and report['compilation_cache_hits'] >= 1
  assert set(report['seconds']) == {'build_state', 'restore_checkpoint', 'first_batch',
                                    'trace_soft_intro', 'compile_soft_intro', 'first_step'}
  assert 'Start-up:' in out.stderr


def test_deprecation_warnings_from_our_code_are_errors():
  """pyproject's filterwarnings: a deprecated API called from sintrovae_jax fails the suite."""
  import warnings  # pylint: disable=g-import-not-at-top
  with pytest.raises(DeprecationWarning):
    warnings.warn_explicit('an API we call is deprecated', DeprecationWarning, 'parallel.py', 1,
                           module='sintrovae_jax.core.parallel')
  with warnings.catch_warnings(record=True):  # a library's notice about itself is not an error
    warnings.warn_explicit('about tf itself', DeprecationWarning, 'x.py', 1,
                           module='tensorflow.python.x')


@pytest.fixture
def small_disk(tmp_path):
  """A 3 MiB tmpfs at tmp_path/disk (needs root, as CI has); skipped where it cannot be made."""
  folder = tmp_path / 'disk'
  folder.mkdir()
  made = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', str(folder)],
                        capture_output=True)
  if made.returncode:
    pytest.skip(f'cannot mount a small filesystem here: {made.stderr.decode().strip()}')
  try:
    yield folder
  finally:
    subprocess.run(['umount', '-l', str(folder)], check=False)


def _one_error_line(output: str) -> str:
  assert 'Traceback' not in output, output[-3000:]
  errors = [l for l in output.splitlines() if l.startswith('error: ')]
  assert len(errors) == 1, output[-3000:]
  return errors[0]


def test_a_full_disk_while_saving_ends_in_one_line_and_the_rerun_resumes(small_disk):
  workdir = str(small_disk / 'run')
  flags = ['--config=configs/toy2d.py:8gaussians', f'--workdir={workdir}',
           *tiny_2d_flags(steps=200_000, vae=20), '--config.checkpoint_every_steps=200',
           '--config.log_every_steps=100000', '--config.compilation_cache_dir=']
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3')
  proc = processes.Popen([sys.executable, 'main.py', *flags], cwd=ROOT, env=env, text=True,
                         stdout=processes.PIPE, stderr=processes.STDOUT)
  deadline = time.time() + 180  # topology.json: written after a checkpoint has been saved
  while not os.path.exists(os.path.join(workdir, 'topology.json')) and time.time() < deadline:
    time.sleep(0.1)
  fd = os.open(small_disk / 'ballast', os.O_WRONLY | os.O_CREAT)  # fill the disk
  try:
    while os.write(fd, b'\0' * 65536):
      pass
  except OSError:  # full: the next save fails
    pass
  finally:
    os.close(fd)
  output, _ = proc.communicate(timeout=180)
  assert proc.returncode == 1, output[-3000:]
  line = _one_error_line(output)
  config = toy2d.get_config('8gaussians')
  config.update(dict(mlp_hidden=(16, 16), num_train_steps=200_000, num_vae_steps=20,
                     batch_size=64))
  os.remove(small_disk / 'ballast')
  last = latest_step(workdir, config)
  assert last is not None and last >= 200
  assert 'No space left on device' in line and 'Free some space' in line, line
  assert f'the last good one is step {last};' in line and 'MiB' in line, line
  assert len(output.splitlines()) < 60, output  # not hundreds of lines of background tracebacks
  out = run_main_here(*flags, *tiny_2d_flags(steps=last + 10, vae=20)[1:2])  # a shorter run
  assert out.returncode == 0, out.stderr[-3000:]
  assert f'Resuming from checkpoint at step {last}' in out.stderr


def test_a_workdir_that_cannot_be_written_ends_in_one_line(small_disk, tmp_path):
  flags = ['--config=configs/toy2d.py:8gaussians', *tiny_2d_flags(steps=4, vae=2),
           '--config.checkpoint_every_steps=2', '--config.compilation_cache_dir=']
  (tmp_path / 'a_file').write_text('not a folder')
  out = run_main_here(*flags, f'--workdir={tmp_path / "a_file"}')
  assert out.returncode == 1 and 'is a file, not a folder' in _one_error_line(out.stderr)

  run = str(small_disk / 'run')
  assert run_main_here(*flags, f'--workdir={run}').returncode == 0
  subprocess.run(['mount', '-o', 'remount,ro', str(small_disk)], check=True)
  # Resumed on the read-only disk: a process, as its whole output, up to its exit, is one line.
  out = run_main(*flags, '--config.num_train_steps=6', f'--workdir={run}')
  line = _one_error_line(out.stderr)
  assert out.returncode == 1 and 'Read-only file system' in line and 'writable' in line, line
  out = run_main_here('--mode=sample', f'--workdir={run}', '--num_samples=8')
  line = _one_error_line(out.stderr)
  assert out.returncode == 1 and 'Read-only file system' in line and 'samples' in line, line


def test_a_damaged_manifest_is_passed_over_in_one_warning(tmp_path):
  """The failed restore's background threads may print dozens of tracebacks ("Event loop is
  closed", depending on the orbax version); they are held back, and --verbose shows the restore's
  own traceback (and whatever the threads printed)."""
  flags = ['--config=configs/toy2d.py:8gaussians', *tiny_2d_flags(steps=4, vae=2),
           '--config.checkpoint_every_steps=2', '--config.compilation_cache_dir=']
  outputs = {}
  trained = str(tmp_path / 'trained')
  assert run_main_here(*flags, f'--workdir={trained}').returncode == 0
  for verbose in (False, True):
    workdir = str(tmp_path / f'run_{verbose}')
    shutil.copytree(trained, workdir)  # one run trained, damaged twice
    _damage(os.path.join(workdir, 'checkpoints', '4'), 'manifest')
    # A process: what its background threads print, up to its exit, is part of the output.
    out = run_main(*flags, f'--workdir={workdir}', '--config.num_train_steps=6',
                   *(['--verbose'] if verbose else []))
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'Checkpoint at step 4' in out.stderr and 'damaged' in out.stderr
    outputs[verbose] = out.stderr
  assert 'Traceback' not in outputs[False], outputs[False][-3000:]
  assert 'Restoring step 4 failed' in outputs[True] and 'Traceback' in outputs[True]
