"""The train step: gradient placement, determinism, compilation, non-finite skipping, BatchNorm."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sintrovae_jax as sv
from conftest import ONE_LEVEL_SHAPE as SHAPE, mlp_model, one_level_step_parts

sg = jax.lax.stop_gradient
W2D = sv.LossWeights(beta_rec=0.2, beta_kl=0.3, beta_neg=0.9, gamma_r=1e-8, scale=0.5)


def restated_losses(model, w, x, d, stop_rr_target=False, stop_encoder_inputs=True):
  """ALGORITHM.md's loss_E(enc, dec) and loss_D(dec, enc), with stop-gradients spelled out.

  The flags move one stop-gradient each, to show the comparison below can fail.
  """
  E = lambda p, v: model.encoder.apply({'params': p}, v)
  D = lambda p, z: model.decoder.apply({'params': p}, z)
  rep = sv.reparameterize
  rec_err = sv.reconstruction_error
  kl = sv.kl_divergence
  maybe_sg = sg if stop_encoder_inputs else (lambda v: v)

  def loss_e(enc, dec):
    fake = D(dec, d.noise)
    mu, lv = E(enc, x)
    rec = D(dec, rep(mu, lv, d.eps_real))
    rmu, rlv = E(enc, maybe_sg(rec))
    fmu, flv = E(enc, maybe_sg(fake))
    target = sg(rec) if stop_rr_target else rec
    r = rec_err(target, D(dec, rep(rmu, rlv, d.eps_rec)))
    f = rec_err(sg(fake), D(dec, rep(fmu, flv, d.eps_fake)))
    s = w.scale
    ee = lambda e, k: jnp.mean(jnp.exp(-2 * s * (w.beta_rec * e + w.beta_neg * k)))
    return (s * (w.beta_rec * rec_err(x, rec).mean() + w.beta_kl * kl(mu, lv).mean())
            + 0.25 * (ee(r, kl(rmu, rlv)) + ee(f, kl(fmu, flv))))

  def loss_d(dec, enc, z):
    fake, rec = D(dec, d.noise), D(dec, sg(z))
    rmu, rlv = E(enc, rec)
    fmu, flv = E(enc, fake)
    rr = D(dec, sg(rep(rmu, rlv, d.eps_rec_dec)))
    rf = D(dec, sg(rep(fmu, flv, d.eps_fake_dec)))
    s = w.scale
    return s * (w.beta_rec * rec_err(x, rec).mean()
                + 0.5 * w.beta_kl * (kl(rmu, rlv).mean() + kl(fmu, flv).mean())
                + 0.5 * w.gamma_r * w.beta_rec * (rec_err(sg(rec), rr).mean()
                                                  + rec_err(sg(fake), rf).mean()))

  return loss_e, loss_d


def _sgd_state(model, data_shape=(2,), seed=0):
  """A state whose optimiser is SGD(lr=1), so a parameter's change is minus its gradient."""
  return sv.create_train_state(model, jax.random.PRNGKey(seed), data_shape, optax.sgd(1.0))


def _flat(tree):
  return np.concatenate([np.ravel(a) for a in jax.tree.leaves(tree)])


def test_gradients_flow_exactly_where_algorithm_says():
  model = mlp_model()
  state = _sgd_state(model)
  x = jax.random.normal(jax.random.PRNGKey(5), (16, 2))
  w = sv.LossWeights(beta_rec=1.0, beta_kl=1.0, beta_neg=0.9, gamma_r=1.0, scale=0.5)
  new, _ = jax.jit(sv.make_train_step(model, w))(state, x)
  d = sv.draw_normals(jax.random.fold_in(state.rng, 0), jnp.arange(16), model.z_dim)

  enc0, dec0 = state.encoder_params, state.decoder_params
  loss_e, loss_d = restated_losses(model, w, x, d)
  g_enc, g_dec_of_loss_e = jax.grad(loss_e, argnums=(0, 1))(enc0, dec0)
  # The encoder moved by exactly -grad_enc(loss_E).
  np.testing.assert_allclose(_flat(new.encoder_params), _flat(enc0) - _flat(g_enc), atol=1e-6)
  # The decoder moved by -grad_dec(loss_D) at the *updated* encoder, and by nothing of loss_E.
  mu, lv = model.encoder.apply({'params': enc0}, x)
  z = sv.reparameterize(mu, lv, d.eps_real)
  g_dec = jax.grad(loss_d)(dec0, new.encoder_params, z)
  np.testing.assert_allclose(_flat(new.decoder_params), _flat(dec0) - _flat(g_dec), atol=1e-6)
  assert np.abs(_flat(g_dec_of_loss_e)).max() > 1e-4  # loss_E does depend on the decoder
  g_dec_old_enc = jax.grad(loss_d)(dec0, enc0, z)
  assert np.abs(_flat(g_dec_old_enc) - _flat(g_dec)).max() > 1e-6  # order matters

  # The same comparison fails if a stop-gradient moves: the expELBO target `rec` must not be
  # stopped, and the re-encoded inputs must be.
  for kwargs in (dict(stop_rr_target=True), dict(stop_encoder_inputs=False)):
    wrong_e, _ = restated_losses(model, w, x, d, **kwargs)
    g_wrong = jax.grad(wrong_e)(enc0, dec0)
    assert np.abs(_flat(g_wrong) - _flat(g_enc)).max() > 1e-6, kwargs


def test_vae_warmup_updates_both_networks_with_plain_elbo():
  model = mlp_model()
  state = _sgd_state(model)
  x = jax.random.normal(jax.random.PRNGKey(5), (16, 2))
  new, metrics = jax.jit(sv.make_train_step(model, W2D, num_vae_steps=1))(state, x)
  d = sv.draw_normals(jax.random.fold_in(state.rng, 0), jnp.arange(16), model.z_dim)

  def loss(enc, dec):
    mu, lv = model.encoder.apply({'params': enc}, x)
    rec = model.decoder.apply({'params': dec}, sv.reparameterize(mu, lv, d.eps_real))
    return (W2D.beta_rec * sv.reconstruction_error(x, rec).mean()
            + W2D.beta_kl * sv.kl_divergence(mu, lv).mean())

  g_enc, g_dec = jax.grad(loss, argnums=(0, 1))(state.encoder_params, state.decoder_params)
  np.testing.assert_allclose(_flat(new.encoder_params),
                             _flat(state.encoder_params) - _flat(g_enc), atol=1e-6)
  np.testing.assert_allclose(_flat(new.decoder_params),
                             _flat(state.decoder_params) - _flat(g_dec), atol=1e-6)
  assert metrics['soft_intro'] == 0 and metrics['loss_enc'] == 0
  np.testing.assert_allclose(metrics['loss_vae'], loss(state.encoder_params,
                                                       state.decoder_params), rtol=1e-5)


def test_step_is_deterministic_and_compiles_once():
  model, w, initial = one_level_step_parts()
  train_step = sv.make_train_step(model, w, num_vae_steps=5)
  traces = []

  @functools.wraps(train_step)  # its name: the same program as test_nonfinite_step_is_skipped[5]
  def counted(state, batch):
    traces.append(1)
    return train_step(state, batch)

  step = jax.jit(counted)
  x = jax.random.uniform(jax.random.PRNGKey(1), (4,) + SHAPE)
  runs = []
  for _ in range(2):
    state = initial
    for _ in range(6):  # 5 warm-up steps, then a Soft-IntroVAE step
      state, metrics = step(state, x)
    runs.append((state, metrics))
  assert len(traces) == 1
  for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1])):
    np.testing.assert_array_equal(a, b)
  assert int(runs[0][0].step) == 6 and float(runs[0][1]['soft_intro']) == 1.0
  # A different key gives a different step.
  other, _ = step(initial.replace(rng=jax.random.PRNGKey(9)), x)
  assert not np.allclose(_flat(other.encoder_params), _flat(step(initial, x)[0].encoder_params))
  assert len(traces) == 1


@pytest.mark.parametrize('num_vae_steps', [0, 5])
def test_nonfinite_step_is_skipped(num_vae_steps):
  model, w, initial = one_level_step_parts()
  step = jax.jit(sv.make_train_step(model, w, num_vae_steps=num_vae_steps))
  x = jax.random.uniform(jax.random.PRNGKey(1), (4,) + SHAPE)
  state, _ = step(initial, x)
  bad = x.at[0, 0, 0, 0].set(jnp.nan)
  skipped, metrics = step(state, bad)
  assert float(metrics['nonfinite']) == 1.0
  assert int(skipped.step) == int(state.step) + 1
  for a, b in zip(jax.tree.leaves(skipped.replace(step=state.step)), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)
  after, metrics = step(skipped, x)
  assert float(metrics['nonfinite']) == 0.0 and np.isfinite(_flat(after.encoder_params)).all()


def test_running_batch_stats_update_and_sampling_uses_them():
  model, w, state = one_level_step_parts()
  x = jax.random.uniform(jax.random.PRNGKey(1), (4,) + SHAPE)
  new, _ = jax.jit(sv.make_train_step(model, w))(state, x)
  for part in ('encoder', 'decoder'):
    assert not np.allclose(_flat(new.batch_stats[part]), _flat(state.batch_stats[part])), part
  key = jax.random.PRNGKey(3)
  sample = jax.jit(lambda s: sv.sample(model, s, key, 2))  # one program, not one per operation
  a = sample(new)
  b = sample(new.replace(batch_stats=state.batch_stats))
  assert a.shape == (2,) + SHAPE and not np.allclose(a, b)


def test_learning_rate_schedule_matches_multistep():
  sched = sv.learning_rate_schedule(2e-4, (3, 5))
  np.testing.assert_allclose([sched(t) for t in range(7)],
                             [2e-4, 2e-4, 2e-4, 2e-5, 2e-5, 2e-6, 2e-6], rtol=1e-6)


def test_2d_training_learns_and_keeps_kl_fake_above_kl_real():
  from sintrovae_jax.data import toy as toy_data
  model = sv.SoftIntroVAE(sv.MLPEncoder((64, 64), 2), sv.MLPDecoder((64, 64), 2))
  w = sv.LossWeights(beta_rec=0.2, beta_kl=0.3, beta_neg=0.9, gamma_r=1e-8, scale=0.5)
  tx = sv.make_optimizer(sv.learning_rate_schedule(2e-3))
  state = sv.create_train_state(model, jax.random.PRNGKey(0), (2,), tx)
  step = jax.jit(sv.make_train_step(model, w, num_vae_steps=100))
  rng = np.random.default_rng(0)
  history = []
  for _ in range(400):
    state, m = step(state, toy_data.sample('8gaussians', 128, rng))
    history.append(jax.device_get(m))
  rec = [h['rec_error_deterministic'] for h in history]
  assert np.mean(rec[-50:]) < 0.5 * np.mean(rec[:10])
  soft = history[150:]
  assert np.mean([h['kl_fake'] - h['kl_real'] for h in soft]) > 0
  assert np.mean([h['diff_kl'] > 0 for h in soft]) > 0.8
  assert not any(h['nonfinite'] for h in history)


def test_fixed_phase_steps_equal_the_automatic_choice():
  model = mlp_model()
  state = _sgd_state(model)
  x = jax.random.normal(jax.random.PRNGKey(5), (16, 2))
  auto = jax.jit(sv.make_train_step(model, W2D, num_vae_steps=1))
  vae = jax.jit(sv.make_train_step(model, W2D, phase='vae'))
  soft = jax.jit(sv.make_train_step(model, W2D, phase='soft_intro'))
  a1, _ = auto(state, x)
  v1, _ = vae(state, x)
  a2, _ = auto(a1, x)
  s2, _ = soft(a1, x)
  for a, b in ((a1, v1), (a2, s2)):
    for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_array_equal(p, q)
  assert not np.allclose(_flat(a2.encoder_params), _flat(vae(a1, x)[0].encoder_params))
  with pytest.raises(ValueError, match='phase'):
    sv.make_train_step(model, W2D, phase='warmup')


@pytest.mark.parametrize('phase', ['vae', 'soft_intro'])
@pytest.mark.parametrize('learning_rate,beta', [(np.inf, 1.0), (1e-3, 1e38)],
                         ids=['infinite_learning_rate', 'huge_betas'])
def test_a_step_that_would_overflow_the_state_is_skipped(learning_rate, beta, phase):
  """Finite losses and gradients can still overflow parameters or Adam's moments: skip those."""
  model = mlp_model()
  tx = sv.make_optimizer(sv.learning_rate_schedule(learning_rate, ()))
  state = sv.create_train_state(model, jax.random.PRNGKey(0), (2,), tx)
  w = sv.LossWeights(beta_rec=beta, beta_kl=beta, beta_neg=1.0, scale=0.5)
  batch = jnp.asarray(np.random.default_rng(0).normal(size=(16, 2)), jnp.float32)
  new, metrics = jax.jit(sv.make_train_step(model, w, phase=phase))(state, batch)
  assert np.isfinite(float(metrics['loss_rec']))  # the loss alone would not have caught it
  assert float(metrics['nonfinite']) == 1.0
  for a, b in zip(jax.tree.leaves(new.replace(step=state.step)), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)
