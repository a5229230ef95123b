"""Out-of-distribution detection end to end, on real images that pip packages ship.

A small model trains on 4,000 real MNIST digits (a grey image folder, 28 px) and must tell
scikit-image's 200 real face crops from the digits. Measured while building this test (seed 0,
500 digits vs 200 faces, K = 8 importance samples): at batch 32 after 300 steps AUROC 0.83
(-log p(x)), 0.89 (negative ELBO), 0.91 (KL), 0.88 (reconstruction error); at batch 16 (used
here: under half the time) after 300 steps 0.79, 0.84, 0.86, 0.83, with the held-out
reconstruction error at 0.45 of the untrained model's (after 200 steps 0.76, 0.81, 0.67, 0.81 and
0.50). The bars below, 0.75 for the best score and 0.6 for the error ratio, leave a margin for
other machines' float rounding; chance is 0.5.
"""

import json
import os

import numpy as np
import pytest

import real_images
from configs import ffhq256, image_folder, toy2d
from runs import restored, run_check, run_main_here
from tiny import TINY_IMAGE
from sintrovae_jax.data import (tf_images)
from sintrovae_jax.evaluators import quality as evaluation, ood
from sintrovae_jax.program import config_lib, ood_run, standard, train

STEPS = 300


@pytest.mark.long
@pytest.mark.default_python_only
def test_digits_model_flags_faces_and_learns(tmp_path):
  train_dir, heldout_dir = real_images.mnist_folders(str(tmp_path))
  faces = real_images.faces_folder(str(tmp_path))
  config = image_folder.get_config()
  config.update(dict(data_dir=train_dir, image_size=28, image_channels=1, channels=(8, 16),
                     z_dim=8, batch_size=16, num_train_steps=STEPS, num_vae_steps=0,
                     log_every_steps=100, sample_every_steps=10**6, checkpoint_every_steps=10**6,
                     num_eval_examples=500, shuffle_buffer=1000, beta_kl=1.0, beta_rec=1.0,
                     beta_neg=256.0, num_grid_images=8, likelihood_samples=8,
                     fid_batch_size=100))
  workdir = str(tmp_path / 'run')
  exp = standard.build(config)
  train.train_and_evaluate(config, workdir)

  # Reconstruction error on held-out digits falls with training.
  heldout = config.copy_and_resolve_references()
  heldout.data_dir = heldout_dir
  images = np.concatenate(list(tf_images.image_pass(heldout, 'train', 500, 100)))
  assert images.shape == (500, 28, 28, 1)
  final = restored(workdir, config, exp.state)
  before = evaluation.evaluate_images(exp.model, exp.state, images)['rec_error_deterministic']
  after = evaluation.evaluate_images(exp.model, final, images)['rec_error_deterministic']
  assert after < 0.6 * before, (before, after)

  # The command line, with the run's saved config: digits (in) against faces (out).
  out = run_main_here('--mode=ood', f'--workdir={workdir}', '--ood_dataset=image_folder',
                      f'--ood_data_dir={faces}', '--ood_regret_steps=5')
  assert out.returncode == 0, out.stderr[-3000:]
  results = json.load(open(os.path.join(workdir, 'ood_results.json')))
  assert (results['num_in'], results['num_out']) == (500, 200)
  names = ood.IMAGE_SCORES + ('regret',)
  aurocs = {k: results[k]['auroc'] for k in names}
  assert max(aurocs.values()) > 0.75, aurocs
  assert all(0.0 <= results[k]['fpr_at_95_tpr'] <= 1.0 for k in names)
  assert results['mean_neg_log_px_out'] > results['mean_neg_log_px_in']
  assert results['ood_regret_steps'] == 5 and results['ood_compressor'] == 'png'
  for k in names:
    assert os.path.getsize(os.path.join(workdir, 'ood', f'histogram_{k}.png')) > 1000

  # Without an OOD set: one line that says what to add.
  out = run_main_here('--mode=ood', f'--workdir={workdir}')
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1].startswith('error: --mode=ood needs')
  assert 'Traceback' not in out.stderr


def test_ood_on_a_tfds_set_of_other_size_and_channels(tmp_path):
  """A grey 28 px MNIST run scores (mock) CIFAR-10, colour 32 px, converted to its own shape."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from configs import mnist  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  with tfds.testing.mock_data(num_examples=12):
    config = mnist.get_config()
    config.update(dict(TINY_IMAGE, num_train_steps=2, log_every_steps=1,
                       sample_every_steps=10**6, checkpoint_every_steps=10**6,
                       likelihood_samples=3, fid_batch_size=4, ood_dataset='cifar10',
                       ood_regret_steps=2))
    train.train_and_evaluate(config, workdir)
    results = ood_run.ood_from_checkpoint(config, workdir)
  assert (results['num_in'], results['num_out']) == (8, 8)
  assert results['ood_dataset'] == 'cifar10' and results['step'] == 2
  for k in ood.IMAGE_SCORES + ('regret',):
    assert 0.0 <= results[k]['auroc'] <= 1.0


def test_scores_on_four_devices_equal_one_device():
  """4 devices in a process of their own; 1 device in this one (the same XLA flags otherwise)."""
  from devices import cpu_devices_env  # pylint: disable=g-import-not-at-top
  import ood_multidevice_check  # pylint: disable=g-import-not-at-top
  four = run_check('ood_multidevice_check.py', env=cpu_devices_env(4))
  one = ood_multidevice_check.scores()
  assert (one['devices'], four['devices']) == (1, 4)
  assert set(one) == set(ood.IMAGE_SCORES) | {'regret', 'devices'}
  # The regret's plumbing (rows, keys, padding) with no refit steps: exactly 0 on any devices. (With
  # steps, float32 rounding that differs with the device and thread count is amplified by the fit:
  # on this untrained model and noise images, regrets of ~0.1 nat differ by up to ~0.3; issue 30.)
  assert one['regret'] == four['regret'] == [0.0] * 7
  for k in ood.IMAGE_SCORES:
    assert len(one[k]) == 7
    np.testing.assert_allclose(four[k], one[k], rtol=1e-5, atol=1e-6)


def test_ood_refuses_what_it_cannot_score_before_anything_loads():
  for config, words in ((ffhq256.get_config(), 'the style variant has no likelihood estimate'),
                        (toy2d.get_config('8gaussians'), 'is for image runs'),
                        (image_folder.get_config(), 'needs the out-of-distribution set')):
    with pytest.raises(config_lib.ConfigError, match=words):
      ood_run.check_config(config)
  for field, value, words in (('ood_compressor', 'zip', "('png', 'jpeg2000')"),
                              ('ood_regret_steps', -3, 'the authors: 100'),
                              ('ood_regret_learning_rate', -1.0, 'a number >= 0')):
    config = image_folder.get_config()
    config.update(dict(ood_dataset='cifar10', **{field: value}))
    with pytest.raises(config_lib.ConfigError, match=f'config.{field}=') as err:
      ood_run.check_config(config)
    assert words in str(err.value)
