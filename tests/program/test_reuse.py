"""A config run again in the same process (a resume, a notebook cell run twice, main.py's modes after
training) reuses the programs of the first run: nothing traced or compiled again; a changed
config gets programs of its own. Evaluations take the state as an argument: evaluating another
state reuses the program instead of compiling one with the weights folded in as constants."""

import jax
import numpy as np
import optax

from configs import toy2d
from conftest import ONE_LEVEL_SHAPE, one_level_image_model, one_level_step_parts
from runs import compiled, jax_events
import sintrovae_jax as sv
from sintrovae_jax.core import inference, losses
from sintrovae_jax.core.train_state import averaged_part
from sintrovae_jax.evaluators import quality
from sintrovae_jax.families.points.networks import PointDecoder, PointEncoder
from sintrovae_jax.program import train


def _config(**overrides):  # tests/tiny.py's 2D run (test_main.py's), built in Python
  config = toy2d.get_config('8gaussians')
  config.update(dict(mlp_hidden=(16, 16), num_train_steps=60, num_vae_steps=20, batch_size=64,
                     log_every_steps=20, sample_every_steps=30, checkpoint_every_steps=30,
                     num_eval_points=500, lr_decay_steps=(40,)))
  config.update(overrides)
  return config


def test_a_second_run_of_a_config_traces_and_compiles_nothing(tmp_path):
  results = train.train_and_evaluate(_config(), str(tmp_path / 'first'))  # (or another test's)
  with jax_events() as second:
    again = train.train_and_evaluate(_config(), str(tmp_path / 'second'))
  assert not compiled(second), compiled(second)
  assert second[('jaxpr', '_fun')] == second[('jaxpr', '_init_networks')] == 0, second
  assert second[('jaxpr', '_with_optimizer')] == 0, second
  assert again == results  # the same seed and data: the same run
  # Another loss weight (this test's own) is another program, and another run.
  with jax_events() as other:
    changed = train.train_and_evaluate(_config(beta_kl=0.37), str(tmp_path / 'other'))
  assert other[('jaxpr', '_fun')] == 2, other  # its two phases
  assert changed['gnelbo'] != results['gnelbo']  # (60 steps: 'kl' is the same, saturated)


def test_evaluating_another_state_reuses_the_program_and_reads_that_state():
  model, _, state = one_level_step_parts()
  other = state.replace(decoder_params=jax.tree.map(lambda p: 0.5 * p, state.decoder_params))
  images = np.random.default_rng(0).uniform(size=(6, 8, 8, 3)).astype(np.float32)
  assert model == one_level_image_model()
  quality.evaluate_images(model, state, images)
  with jax_events() as seen:
    got = quality.evaluate_images(model, other, images)
  assert not seen, seen
  # Restated from the parts (each jitted on its own): the other state's numbers, not the first's.
  mu, logvar = jax.jit(inference.encode, static_argnums=0)(model, other, images)
  rec = jax.jit(inference.decode, static_argnums=0)(model, other, mu)
  rec_error = np.asarray(losses.reconstruction_error(images, rec))
  kl = np.asarray(losses.kl_divergence(mu, logvar))
  np.testing.assert_allclose(got['rec_error_deterministic'], rec_error.mean(), rtol=1e-5)
  np.testing.assert_allclose(got['kl'], kl.mean(), rtol=1e-5)
  first = quality.evaluate_images(model, state, images)
  assert abs(first['rec_error_deterministic'] - got['rec_error_deterministic']) > 1e-3


def test_evaluating_another_point_cloud_state_compiles_nothing():
  """The 3D evaluation (samples, reconstructions' Chamfer distances) also takes the state as an
  argument: a second state reuses its programs, and its numbers are that state's."""
  model = sv.SoftIntroVAE(PointEncoder(z_dim=4, widths=(8, 16), hidden=8),
                          PointDecoder(num_points=32, widths=(8, 16)))
  state = sv.create_train_state(model, jax.random.PRNGKey(0), (32, 3), optax.sgd(1.0))
  other = state.replace(decoder_params=jax.tree.map(lambda p: 0.5 * p, state.decoder_params))
  clouds = np.random.default_rng(0).uniform(-0.5, 0.5, (6, 32, 3)).astype(np.float32)
  key = jax.random.PRNGKey(3)
  first = quality.evaluate_clouds(model, state, clouds, key, prior_std=0.2, batch=4)
  with jax_events() as seen:
    got = quality.evaluate_clouds(model, other, clouds, key, prior_std=0.2, batch=4)
  assert not compiled(seen), compiled(seen)
  # The other state's numbers: its reconstructions' (restated from the parts), its samples'.
  rec = jax.jit(inference.reconstruct, static_argnums=0)(model, other, clouds)
  rec_cd = np.asarray(losses.reconstruction_error(clouds, rec, 'chamfer'))
  np.testing.assert_allclose(got['rec_chamfer'], rec_cd.mean(), rtol=1e-5)
  assert abs(first['rec_chamfer'] - got['rec_chamfer']) > 1e-4
  assert first['mmd_cd'] != got['mmd_cd'] and got['num_clouds'] == 6


def test_states_with_other_options_share_the_networks_initialisation():
  """The networks' initialisation (the costly part of a new state) is one program per model and
  data shape: a state with an EMA and a target decoder, or with another optimiser, compiles only
  the small program around it. The EMA starts as a copy of the networks (its own buffers: the
  train step donates the state's), and the target decoder is initialised with a key of its own."""
  model, _, plain = one_level_step_parts()
  tx = sv.make_optimizer(sv.learning_rate_schedule(0.37))  # this test's own optimiser
  with jax_events() as seen:
    both = sv.create_train_state(model, jax.random.PRNGKey(0), ONE_LEVEL_SHAPE, tx, ema=True,
                                 target=True)
  assert seen[('jaxpr', '_init_networks')] == 0, seen
  assert 'jit(_init_networks)' not in compiled(seen), compiled(seen)
  assert seen[('jaxpr', '_with_optimizer')] == 1, seen
  for a, b in zip(jax.tree.leaves((plain.encoder_params, plain.decoder_params, plain.batch_stats,
                                   plain.rng)),
                  jax.tree.leaves((both.encoder_params, both.decoder_params, both.batch_stats,
                                   both.rng))):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(both.ema), jax.tree.leaves(averaged_part(both))):
    np.testing.assert_array_equal(a, b)
    assert a.unsafe_buffer_pointer() != b.unsafe_buffer_pointer()
  target = both.target['params']
  assert jax.tree.structure(target) == jax.tree.structure(both.decoder_params)
  drawn = [(a, b) for a, b in zip(jax.tree.leaves(target), jax.tree.leaves(both.decoder_params))
           if np.std(b) > 0]  # the random ones (not BatchNorm's ones and zeros)
  assert drawn and not any(np.array_equal(a, b) for a, b in drawn)
