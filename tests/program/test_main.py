"""End-to-end runs of the training program on tiny settings, and its error messages."""

import json
import os
import signal

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from configs import image_folder, mnist, toy2d
from sintrovae_jax.data import image_files, kinds, numpy_batches, pipeline as input_pipeline
from sintrovae_jax.program import config_lib, errors, standard, train
from runs import (assert_states_close, latest_step, params_of, run_main_here,
                  stop_long_2d_run)
from tiny import FID_TINY_FLAGS, LONG_2D_FLAGS, TINY_IMAGE, tiny_2d_flags, tiny_mnist




def test_2d_run_writes_results_pictures_and_samples(tmp_path):
  workdir = str(tmp_path / 'run')
  out = run_main_here('--config=configs/toy2d.py:8gaussians', f'--workdir={workdir}',
                      *tiny_2d_flags())
  assert out.returncode == 0, out.stderr[-3000:]
  results = json.load(open(os.path.join(workdir, 'eval_results.json')))
  assert set(results) >= {'kl', 'jsd', 'gnelbo'} and all(np.isfinite(list(results.values())))
  pictures = set(os.listdir(os.path.join(workdir, 'pictures')))
  assert {'scatter_00000060.png', 'density_00000060.png', 'kl_curves.png',
          'reconstruction_curves.png'} <= pictures
  history = [json.loads(l) for l in open(os.path.join(workdir, 'history.jsonl'))]
  assert [h['step'] for h in history] == [20, 40, 60]
  assert 'kl_fake' not in history[0] and 'kl_fake' in history[-1]
  np.testing.assert_allclose(history[-1]['learning_rate'], 2e-5, rtol=1e-5)
  # Evaluation is seeded: the same parameters give the same numbers.
  config = toy2d.get_config('8gaussians')
  config.update(dict(mlp_hidden=(16, 16), num_eval_points=500))
  again = standard.evaluate(standard.build(config), params_of(workdir, config))
  for k in ('kl', 'jsd', 'gnelbo'):
    np.testing.assert_allclose(again[k], results[k], rtol=1e-6)

  out = run_main_here('--mode=sample', f'--workdir={workdir}', '--num_samples=100')
  assert out.returncode == 0, out.stderr[-3000:]
  samples = np.load(os.path.join(workdir, 'samples', 'samples_00000060.npy'))
  assert samples.shape == (100, 2) and os.path.exists(
      os.path.join(workdir, 'samples', 'scatter_00000060.png'))


# Every training option on (issue 13): weight EMA, augmentation, the bootstrap variant, l1.
ALL_OPTIONS = dict(ema_decay=0.9, augment='translation,cutout', variant='bootstrap',
                   bootstrap_refresh_steps=3, recon_loss='l1', gamma_r=1.0)


@pytest.mark.long
def test_image_run_with_every_option_on_mock_tfds_and_resume_equals_uninterrupted(tmp_path):
  with tfds.testing.mock_data(num_examples=12):
    config = tiny_mnist(**ALL_OPTIONS)
    results = train.train_and_evaluate(config, str(tmp_path / 'full'))
    # The evaluation reports the trained networks and their EMA.
    assert set(results) == {p + k for p in ('', 'ema/') for k in (
        'rec_error_deterministic', 'kl', 'neg_elbo', 'num_examples')}
    assert results['num_examples'] == 8 and results['ema/kl'] != results['kl']
    grid = Image.open(tmp_path / 'full' / 'pictures' / 'real_rec_sample_00000004.png')
    assert grid.size[0] > 3 * grid.size[1]  # three panels side by side

    # Stop at step 2 (a checkpoint), then resume to 4 in the same workdir: the same state, bit
    # for bit, the EMA and the bootstrap target included.
    train.train_and_evaluate(tiny_mnist(**dict(ALL_OPTIONS, num_train_steps=2)),
                             str(tmp_path / 'split'))
    train.train_and_evaluate(config, str(tmp_path / 'split'))
    full, split = (params_of(str(tmp_path / name), config) for name in ('full', 'split'))
    assert int(full.step) == int(split.step) == 4
    assert full.ema is not None and full.target is not None
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(split)):
      np.testing.assert_array_equal(a, b)

  paths = standard.sample_from_checkpoint(config, str(tmp_path / 'full'), num=6)
  assert [os.path.basename(p) for p in paths] == ['samples_00000004.png',
                                                  'interpolation_00000004.png']
  assert Image.open(paths[1]).size[0] > 5 * Image.open(paths[1]).size[1]  # a strip


def test_2d_resume_after_sigterm_equals_uninterrupted(tmp_path):
  flags = LONG_2D_FLAGS
  stopped = str(tmp_path / 'stopped')
  returncode, output = stop_long_2d_run(stopped, signal.SIGTERM)
  assert returncode == 0, output[-3000:]
  assert 'SIGTERM' in output
  config = toy2d.get_config('8gaussians')
  config.update(dict(mlp_hidden=(16, 16), num_train_steps=3000, num_vae_steps=20, batch_size=64))
  stop_step = latest_step(stopped, config)
  assert stop_step is not None and 1 <= stop_step < 3000

  # Resume to a final step a little past the stop, and compare with a run that never stopped.
  end = stop_step + 30
  resumed = run_main_here('--config=configs/toy2d.py:8gaussians', f'--workdir={stopped}', *flags,
                          f'--config.num_train_steps={end}')
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  straight = run_main_here('--config=configs/toy2d.py:8gaussians',
                           f'--workdir={tmp_path / "straight"}', *flags,
                           f'--config.num_train_steps={end}')
  assert straight.returncode == 0, straight.stderr[-3000:]
  config.num_train_steps = end
  assert_states_close(params_of(stopped, config), params_of(str(tmp_path / 'straight'), config))


@pytest.mark.long
@pytest.mark.default_python_only
def test_image_folder_skips_corrupt_files(tmp_path, fid_weights):
  folder = tmp_path / 'images' / 'nested'
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  for i in range(6):
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / f'{i}.png')
  (folder / 'broken.jpg').write_bytes(b'not an image at all')
  (folder / 'notes.txt').write_text('ignored')
  listed = image_files.list_image_folder(str(tmp_path / 'images'))
  assert [os.path.basename(p) for p in listed] == ['0.png', '1.png', '2.png', '3.png', '4.png',
                                                   '5.png', 'broken.jpg']
  good, bad = image_files.check_image_files(listed)
  assert len(good) == 6 and [os.path.basename(b) for b in bad] == ['broken.jpg']

  # FID during training too (every 2 steps, and in the final evaluation): this run is also the
  # suite's check of FID in the training program (samples, reconstructions, curves, cache).
  run = tmp_path / 'run'
  out = run_main_here('--config=configs/image_folder.py', f'--workdir={run}',
                      f'--config.data_dir={tmp_path / "images"}', '--config.image_size=16',
                      *[f'--config.{k}={v}' for k, v in TINY_IMAGE.items() if k != 'channels'],
                      '--config.channels=(8,)', *FID_TINY_FLAGS, '--config.fid_every_steps=2',
                      f'--config.fid_inception_weights={fid_weights}')
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'Skipping 1 unreadable image file' in out.stderr
  assert os.path.exists(run / 'pictures' / 'real_rec_sample_00000004.png')
  final = json.load(open(run / 'eval_results.json'))
  for key in ('fid', 'kid', 'kid_std', 'fid_rec'):
    assert np.isfinite(final[key]) and (final[key] >= 0 or key == 'kid'), (key, final)
  # 4 samples; the 6 readable images as the reference; 4 of them reconstructed.
  assert (final['fid_num_samples'], final['fid_num_reference'],
          final['fid_num_reconstructions']) == (4, 6, 4), final
  rows = [json.loads(l) for l in open(run / 'history.jsonl')]
  assert [r['step'] for r in rows if 'fid' in r] == [2, 4]
  assert os.path.exists(run / 'pictures' / 'fid_curves.png')
  references = lambda: [c for c in os.listdir(run / 'fid_cache') if c.startswith('reference_')]
  assert len(references()) == 1

  # FID of the latest checkpoint from the command line (the run's saved settings, the cached
  # reference statistics): the final evaluation's numbers, and its counts.
  out = run_main_here('--mode=fid', f'--workdir={run}', f'--inception_weights={fid_weights}')
  assert out.returncode == 0, out.stderr[-3000:]
  printed = json.loads(out.stdout.strip().splitlines()[-1])
  assert printed == json.load(open(run / 'fid_results.json'))
  assert printed['step'] == 4 and printed['fid_num_samples'] == 4
  assert printed['fid_num_reference'] == 6
  for key in ('fid', 'kid', 'fid_rec'):
    np.testing.assert_allclose(printed[key], final[key], rtol=1e-6, err_msg=key)
  assert len(references()) == 1  # read from the cache, not computed again
  config = image_folder.get_config()
  config.update(dict(TINY_IMAGE, data_dir=str(tmp_path / 'images'), image_size=16))
  batch = next(input_pipeline.train_iterator(config))
  assert batch.shape == (4, 16, 16, 3) and batch.dtype == np.uint8  # a quarter of float32's bytes


BAD_CONFIGS = [
    ('dataset', 'imagenet', 'expected one of'),
    ('image_size', 27, 'multiple of 2'),  # one level of halving (tiny.TINY_IMAGE)
    ('batch_size', 0, 'positive integer'),
    ('num_vae_steps', 10**9, 'num_vae_steps <= num_train_steps'),
    ('recon_loss', 'huber', "('mse', 'l1', 'bce')"),
    ('compute_dtype', 'float16', "('float32', 'bfloat16')"),
    ('matmul_precision', 'tf32', "('default', 'high', 'highest')"),
    ('image_channels', 2, '1 (grey) or 3'),
    ('likelihood_samples', 0, 'positive integer'),
    ('beta_neg', -1.0, '>= 0'),
    ('lr_decay_steps', (20, 10), 'increasing'),
    ('learning_rate', 0.0, 'positive'),
    ('learning_rate', float('inf'), 'finite'),
    ('beta_kl', float('nan'), 'finite'),
    ('lr_decay_factor', float('-inf'), 'finite'),
    ('fid_inception_weights', '/no/such/pt_inception.pth', 'no such file'),
    ('fid_every_steps', 5, 'needs the Inception weights'),
    ('fid_matrix_sqrt', 'svd', "'scipy' or 'eigh'"),
    ('kid_subset_size', 1, '>= 2'),
    ('recon_reduction', 'mean', "('reference', 'sum')"),
    ('ema_decay', 1.0, 'a decay in (0, 1)'),
    ('augment', 'translation,rotation', 'unknown augmentation'),
    ('augment_p', 0.0, 'a probability in (0, 1]'),
    ('variant', 'ladder', "('standard', 'bootstrap', 'points', 'translation', 'style')"),
    ('bootstrap_refresh_steps', 0, 'a positive number of steps'),
]


@pytest.mark.parametrize('field,value,valid', BAD_CONFIGS)
def test_bad_config_names_field_value_and_fix(field, value, valid):
  config = tiny_mnist()
  config[field] = value
  with pytest.raises(config_lib.ConfigError) as err:
    config_lib.validate(config)
  message = str(err.value)
  assert f'config.{field}={value!r}' in message and valid in message


@pytest.mark.parametrize('variant,config_file,data,valid', [
    ('points', mnist, 'images', "('standard', 'bootstrap', 'translation', 'style')"),
    ('style', toy2d, '2D points', "('standard', 'bootstrap')"),
    ('standard', None, 'point clouds', "('points',)"),
    ('bootstrap', None, 'point clouds', "('points',)"),
])
def test_each_family_refuses_data_it_does_not_train_on(variant, config_file, data, valid):
  """families/registry.py says what each variant trains on; validation names the data and the
  variants that would train on it."""
  from configs import shapenet_points  # pylint: disable=g-import-not-at-top
  config = (config_file.get_config('8gaussians') if config_file is toy2d else
            config_file.get_config() if config_file else shapenet_points.get_config('sphere'))
  config.variant = variant
  with pytest.raises(config_lib.ConfigError) as err:
    config_lib.validate(config)
  assert f'not on {data}' in str(err.value) and f'variant in {valid}' in str(err.value)
  config.variant = {'images': 'standard', '2D points': 'standard',
                    'point clouds': 'points'}[data]  # the right family gets past this check
  try:
    config_lib.validate(config)
  except config_lib.ConfigError as e:
    assert 'config.variant' not in str(e)


def test_config_checks_devices_data_files_and_folders(tmp_path):
  with pytest.raises(config_lib.ConfigError, match='divide evenly over the 3 devices'):
    config_lib.validate(tiny_mnist(batch_size=4), num_devices=3)
  config = toy2d.get_config('npy')
  config.data_file = str(tmp_path / 'missing.npy')
  with pytest.raises(config_lib.ConfigError, match='data_file'):
    config_lib.validate(config)
  config = image_folder.get_config()
  config.data_dir = str(tmp_path / 'nowhere')
  with pytest.raises(config_lib.ConfigError, match='data_dir'):
    config_lib.validate(config)
  with pytest.raises(ValueError, match='toy2d.py takes one of'):
    toy2d.get_config('moons')
  config = toy2d.get_config('8gaussians')
  config.augment = 'cutout'
  with pytest.raises(config_lib.ConfigError, match='augmentation is for images'):
    config_lib.validate(config)


def test_bad_config_on_the_command_line_fails_before_compiling(tmp_path):
  out = run_main_here('--config=configs/cifar10.py', f'--workdir={tmp_path}',
                      '--config.image_size=36')
  assert out.returncode == 1 and 'Traceback' not in out.stderr
  assert 'config.image_size=36 is invalid' in out.stderr and 'multiple of 8' in out.stderr


def test_missing_tfds_dataset_says_how_to_prepare_it(tmp_path):
  config = tiny_mnist(data_dir=str(tmp_path))
  with pytest.raises(kinds.DataError, match=f'tfds build mnist --data_dir={tmp_path}'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))


def test_npy_points_train_and_bad_files_are_reported(tmp_path):
  points = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
  np.save(tmp_path / 'points.npy', points)
  config = toy2d.get_config('npy')
  config.update(dict(data_file=str(tmp_path / 'points.npy'), mlp_hidden=(8,), batch_size=32,
                     num_train_steps=6, num_vae_steps=3, log_every_steps=3,
                     sample_every_steps=6, checkpoint_every_steps=6, num_eval_points=100))
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert set(results) == {'rec_error_deterministic'}  # no 2D metrics for 3D points
  # Every point is seen once per epoch, in a seeded order that does not depend on the start step.
  seen = np.concatenate([b for _, b in zip(range(30), numpy_batches.point_batches(
      config, 0, points))])
  np.testing.assert_array_equal(np.sort(seen[:288], axis=0),
                                np.sort(points[np.isin(points[:, 0], seen[:288, 0])], axis=0))
  resumed = next(numpy_batches.point_batches(config, 17, points))
  np.testing.assert_array_equal(resumed, seen[17 * 32:18 * 32])
  np.save(tmp_path / 'bad.npy', np.array([1.0, np.nan, 2.0]))
  with pytest.raises(kinds.DataError, match=r'shape \[N, D\]'):
    numpy_batches.load_points(str(tmp_path / 'bad.npy'))


def test_repeated_nonfinite_steps_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path):
  points = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
  np.save(tmp_path / 'ok.npy', points)
  config = toy2d.get_config('npy')
  config.update(dict(data_file=str(tmp_path / 'ok.npy'), mlp_hidden=(8,), batch_size=16,
                     num_train_steps=4, num_vae_steps=2, log_every_steps=2,
                     sample_every_steps=100, checkpoint_every_steps=4, num_eval_points=32,
                     max_nonfinite_steps=3))
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  good = params_of(workdir, config)
  # The same file now holds points so large that their squared error overflows float32: every
  # step is non-finite. Logging only every 1,000 steps, the run still stops 3 steps in.
  huge = 3e20 * np.random.default_rng(1).uniform(1, 2, size=(64, 2)).astype(np.float32)
  np.save(tmp_path / 'ok.npy', huge)
  config.update(dict(num_train_steps=40, log_every_steps=1000))
  with pytest.raises(errors.TrainingDiverged, match='3 consecutive non-finite steps up to step 7'):
    train.train_and_evaluate(config, workdir)
  assert latest_step(workdir, config) == 4
  assert_states_close(params_of(workdir, config), good)
