"""The training options (issue 13): off by default, EMA, augmentation, the bootstrap variant.

The reductions of 'l1' / 'bce' are tested against the reference's formula in test_losses.py; 4
devices == 1 device with every option on is in test_parallel.py (`image`); a run of
main.py's program with every option on, and its exact resume, in test_main.py.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sintrovae_jax as sv
from conftest import (ONE_LEVEL_SHAPE, mlp_model, one_level_image_model, one_level_step_parts,
                      tiny_image_model)
from sintrovae_jax.core import augment
from sintrovae_jax.program import standard
from sintrovae_jax.core.train_state import averaged_part

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'golden'))
import make_step_golden  # pylint: disable=g-import-not-at-top,wrong-import-position
from tiny import tiny_mnist

sg = jax.lax.stop_gradient


def _flat(tree):
  return np.concatenate([np.ravel(a) for a in jax.tree.leaves(tree)])


# ---------------------------------------------------------------------------------------------
# Off by default.


def _golden_version(golden):
  """(version, exact): this JAX's (and compiler preset's) golden arrays, bit for bit if they were
  made on this processor; else the newest JAX's; compared to float32 rounding where not exact."""
  versions = sorted({k.split('|')[0] for k in golden})
  this = make_step_golden.version_tag()
  if this in versions:
    return this, str(golden[f'{this}|meta|cpu']) == make_step_golden.cpu_model()
  return versions[-1], False


def test_default_step_is_unchanged_bit_for_bit():
  """Today's default step equals what it computed before the options existed (step_golden.npz,
  made at commit a769eae): bit for bit on the JAX version and processor that made it."""
  golden = np.load(make_step_golden.PATH)
  version, exact = _golden_version(golden)
  for name, args in make_step_golden.scenarios().items():
    for path, value in make_step_golden.run(*args).items():
      want = golden[f'{version}|{name}|{path}']
      if exact:
        np.testing.assert_array_equal(value, want, err_msg=f'{name} {path}')
      else:  # another JAX, preset or processor: XLA's code differs, the arithmetic must not.
        # Three Adam steps at lr 1e-3 carry float32 rounding into the parameters as up to 1.5e-6
        # (measured between the four golden sets: 0.15% of one step, where a gradient is near 0
        # and Adam divides it by its own size); a changed formula moves them by ~lr.
        atol = 1e-6 if path.startswith('metric/') else 1e-5
        np.testing.assert_allclose(value, want, rtol=2e-5, atol=atol, err_msg=f'{name} {path}')


def test_options_left_at_their_defaults_keep_the_state_free_of_their_parts():
  config = tiny_mnist()
  exp = standard.build(config)
  assert exp.state.ema is None and exp.state.target is None
  assert sv.LossWeights(1.0, 1.0, 1.0).recon_reduction == 'reference'


# ---------------------------------------------------------------------------------------------
# Weight EMA.


def _adam_state(model, shape, **parts):
  tx = sv.make_optimizer(sv.learning_rate_schedule(1e-3))
  return sv.create_train_state(model, jax.random.PRNGKey(0), shape, tx, **parts)


def test_ema_is_the_exponential_average_of_every_step_and_leaves_training_alone():
  """A one-level image network (BatchNorm), 5 warm-up steps then Soft-IntroVAE steps, with an EMA:
  the trained networks equal the plain step's bit for bit (the plain step is the program of
  test_train_step.py's determinism test, served from the compilation cache; the golden test above
  ties the default step to step_golden.npz), and the EMA follows decay * ema + (1 - decay) * new."""
  model, w, state = one_level_step_parts(ema=True)
  _, _, plain = one_level_step_parts()
  decay = 0.8
  step = jax.jit(sv.make_train_step(model, w, num_vae_steps=5, ema_decay=decay))
  plain_step = jax.jit(sv.make_train_step(model, w, num_vae_steps=5))
  np.testing.assert_array_equal(_flat(state.ema), _flat(averaged_part(state)))
  expected = _flat(averaged_part(state)).astype(np.float64)
  batches = np.random.default_rng(0).uniform(size=(7, 4) + ONE_LEVEL_SHAPE).astype(np.float32)
  for batch in batches:
    state, _ = step(state, batch)
    plain, metrics = plain_step(plain, batch)
    expected = decay * expected + (1 - decay) * _flat(averaged_part(state))
    # Parameters and BatchNorm statistics, in both phases.
    np.testing.assert_allclose(_flat(state.ema), expected, rtol=1e-5, atol=1e-7)
  assert float(metrics['soft_intro']) == 1.0  # the last two steps were Soft-IntroVAE steps
  assert np.abs(_flat(state.ema['batch_stats'])
                - _flat(averaged_part(state)['batch_stats'])).max() > 1e-4
  trained = lambda s: (s.step, s.encoder_params, s.decoder_params, s.batch_stats,
                       s.encoder_opt_state, s.decoder_opt_state, s.rng)
  for a, b in zip(jax.tree.leaves(trained(state)), jax.tree.leaves(trained(plain))):
    np.testing.assert_array_equal(a, b)
  view = sv.ema_view(state)
  assert view.decoder_params is state.ema['decoder_params'] and view.step is state.step
  plain = state.replace(ema=None)
  assert sv.ema_view(plain) is plain


def test_ema_needs_its_state_and_a_valid_decay():
  model = mlp_model()
  w = sv.LossWeights(0.2, 0.3, 0.9, scale=0.5)
  with pytest.raises(ValueError, match='ema=True'):
    sv.make_train_step(model, w, ema_decay=0.9)(_adam_state(model, (2,)), jnp.zeros((4, 2)))
  with pytest.raises(ValueError, match='ema_decay'):
    sv.make_train_step(model, w, ema_decay=1.0)


# ---------------------------------------------------------------------------------------------
# Differentiable augmentation.


def _one(shift=(0, 0), corner=(0, 0), size=0):
  return augment.Augmentation(jnp.array([shift], jnp.int32), jnp.array([corner], jnp.int32),
                              jnp.array([size], jnp.int32))


def _np_translate(image, dy, dx):
  out = np.zeros_like(image)
  h, w = image.shape[:2]
  for y in range(h):
    for x in range(w):
      if 0 <= y - dy < h and 0 <= x - dx < w:
        out[y, x] = image[y - dy, x - dx]
  return out


def test_translation_and_cutout_on_a_known_image():
  image = np.arange(8 * 8 * 2, dtype=np.float32).reshape(8, 8, 2) + 1
  for dy, dx in ((1, -2), (-3, 0), (0, 0), (2, 2)):
    got = np.asarray(augment.apply(jnp.asarray(image[None]), _one(shift=(dy, dx))))[0]
    np.testing.assert_array_equal(got, _np_translate(image, dy, dx))
  cut = image.copy()
  cut[2:5, 3:6] = 0
  got = augment.apply(jnp.asarray(image[None]), _one(corner=(2, 3), size=3))[0]
  np.testing.assert_array_equal(got, cut)
  cut = image.copy()
  cut[0:2, 5:8] = 0  # a square hanging over the top and right edges is clipped
  got = augment.apply(jnp.asarray(image[None]), _one(corner=(-1, 5), size=3))[0]
  np.testing.assert_array_equal(got, cut)
  both = _np_translate(image, 1, 1)
  both[0:4, 0:4] = 0  # translation first, then the cutout
  got = augment.apply(jnp.asarray(image[None]), _one(shift=(1, 1), corner=(0, 0), size=4))[0]
  np.testing.assert_array_equal(got, both)


def test_gradients_pass_the_transform_to_the_kept_pixels_only():
  image = jnp.asarray(np.random.default_rng(1).normal(size=(1, 8, 8, 1)), jnp.float32)
  weights = np.random.default_rng(2).normal(size=(8, 8, 1)).astype(np.float32)
  aug = _one(shift=(2, -1), corner=(4, 4), size=2)
  grad = np.asarray(jax.grad(lambda x: jnp.sum(augment.apply(x, aug)[0] * weights))(image))[0]
  # Output pixel (y, x) reads input (y - 2, x + 1) unless it was cut out; its weight flows back.
  kept = np.ones((8, 8, 1), np.float32)
  kept[4:6, 4:6] = 0
  want = _np_translate(weights * kept, -2, 1)
  np.testing.assert_array_equal(grad, want)


def test_draws_follow_p_stay_in_range_and_depend_on_the_global_index_alone():
  key = jax.random.PRNGKey(3)
  kinds = ('translation', 'cutout')
  draw = jax.jit(augment.draw, static_argnums=(2, 3, 4))  # one program per call, not per op
  full = draw(key, jnp.arange(400), (32, 32), kinds, 0.5)
  part = draw(key, jnp.arange(200, 400), (32, 32), kinds, 0.5)
  for a, b in zip(full, part):
    np.testing.assert_array_equal(np.asarray(a)[200:], b)
  shift, size = np.asarray(full.shift), np.asarray(full.cut_size)
  assert shift.min() == -4 and shift.max() == 4  # up to 1/8 of 32, both directions
  assert 0.4 < np.mean(np.any(shift != 0, axis=1)) < 0.6
  assert 0.4 < np.mean(size > 0) < 0.6 and size.max() <= 16 and set(size[size > 0]) >= {1, 16}
  never = draw(key, jnp.arange(50), (32, 32), kinds, 0.0)
  assert not np.any(np.asarray(never.shift)) and not np.any(np.asarray(never.cut_size))
  only_cut = draw(key, jnp.arange(50), (32, 32), ('cutout',), 1.0)
  assert not np.any(np.asarray(only_cut.shift)) and np.all(np.asarray(only_cut.cut_size) > 0)
  with pytest.raises(ValueError, match='unknown augmentation'):
    augment.parse('translation,rotation')


def test_the_decoder_learns_through_the_augmented_encoder_inputs():
  """loss_D's KL terms reach D only through E(T(D(.))): with beta_rec = gamma_r = 0 the decoder's
  gradient is non-zero through a partial cutout, and exactly zero when the cutout covers all."""
  model = one_level_image_model()  # 8 px images
  enc, dec, stats = jax.jit(model.init, static_argnums=1)(jax.random.PRNGKey(0), (8, 8, 3))
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(4, 8, 8, 3)), jnp.float32)
  d = jax.jit(sv.draw_normals, static_argnums=2)(jax.random.PRNGKey(1), jnp.arange(4), model.z_dim)
  z = jnp.asarray(np.random.default_rng(1).normal(size=(4, model.z_dim)), jnp.float32)
  w = sv.LossWeights(0.0, 1.0, 256.0, gamma_r=0.0, scale=1 / 192)

  @jax.jit  # one program per kind of call (none, an augmentation), not one per operation
  def grad(dec, aug):
    fn = None if aug is None else (lambda v: augment.apply(v, aug))
    loss = lambda p: sv.decoder_objective(p, enc, stats, x, z, d, model, w, augment=fn)[0]
    return jax.grad(loss)(dec)

  grad_with = lambda aug: _flat(grad(dec, aug))

  batch = lambda **kw: augment.Augmentation(*[jnp.repeat(a, 4, axis=0) for a in _one(**kw)])
  plain, partial = grad_with(None), grad_with(batch(corner=(0, 0), size=4))
  everything = grad_with(batch(corner=(0, 0), size=8))
  assert np.abs(plain).max() > 1e-6 and np.abs(partial).max() > 1e-6
  assert np.abs(partial - plain).max() > 1e-7
  assert not np.any(everything)


def test_the_step_augments_every_encoder_input_and_nothing_else(monkeypatch):
  """Traced per phase: 5 encoder inputs per Soft-IntroVAE iteration (x, sg(rec), sg(fake), rec,
  fake), 1 per warm-up step; the decoder's inputs and the reconstruction targets are untouched."""
  calls = []
  original = augment.apply
  monkeypatch.setattr(augment, 'apply', lambda x, aug: calls.append(x.shape) or original(x, aug))
  model = tiny_image_model()
  shape = (16, 16, 3)
  w = sv.LossWeights(1.0, 1.0, 256.0, scale=sv.default_scale(shape))
  state = _adam_state(model, shape)
  x = jnp.zeros((4,) + shape, jnp.float32)
  counts = {}
  for phase in ('soft_intro', 'vae'):
    calls.clear()
    jax.eval_shape(sv.make_train_step(model, w, phase=phase, augment=('translation', 'cutout')),
                   state, x)
    counts[phase] = len(calls)
    assert all(c == (4,) + shape for c in calls)
  assert counts == {'soft_intro': 5, 'vae': 1}
  with pytest.raises(ValueError, match='image batches'):
    jax.eval_shape(sv.make_train_step(mlp_model(), w, augment=('cutout',)),
                   _adam_state(mlp_model(), (2,)), jnp.zeros((4, 2)))


# ---------------------------------------------------------------------------------------------
# The bootstrap variant (VARIANTS.md section 2).


def restated_bootstrap(model, w, x, d, stop_like_the_main_variant=False):
  """VARIANTS.md 2.2: loss_E with T for rec_rec / rec_fake; loss_D with T, no sg on the latents
  nor on the targets (the flag restores the main variant's stop-gradients, to show the test can
  fail)."""
  E = lambda p, v: model.encoder.apply({'params': p}, v)
  D = lambda p, z: model.decoder.apply({'params': p}, z)
  rep, rec_err, kl = sv.reparameterize, sv.reconstruction_error, sv.kl_divergence
  s = w.scale
  ee = lambda e, k: jnp.mean(jnp.exp(-2 * s * (w.beta_rec * e + w.beta_neg * k)))
  maybe_sg = sg if stop_like_the_main_variant else (lambda v: v)

  def loss_e(enc, dec, tgt):
    fake = D(dec, d.noise)
    mu, lv = E(enc, x)
    rec = D(dec, rep(mu, lv, d.eps_real))
    rmu, rlv = E(enc, sg(rec))
    fmu, flv = E(enc, sg(fake))
    r = rec_err(rec, D(tgt, rep(rmu, rlv, d.eps_rec)))
    f = rec_err(sg(fake), D(tgt, rep(fmu, flv, d.eps_fake)))
    return (s * (w.beta_rec * rec_err(x, rec).mean() + w.beta_kl * kl(mu, lv).mean())
            + 0.25 * (ee(r, kl(rmu, rlv)) + ee(f, kl(fmu, flv))))

  def loss_d(dec, enc, tgt, z):
    fake, rec = D(dec, d.noise), D(dec, sg(z))
    rmu, rlv = E(enc, rec)
    fmu, flv = E(enc, fake)
    rr = D(tgt, maybe_sg(rep(rmu, rlv, d.eps_rec_dec)))
    rf = D(tgt, maybe_sg(rep(fmu, flv, d.eps_fake_dec)))
    return s * (w.beta_rec * rec_err(x, rec).mean()
                + 0.5 * w.beta_kl * (kl(rmu, rlv).mean() + kl(fmu, flv).mean())
                + 0.5 * w.gamma_r * w.beta_rec * (rec_err(maybe_sg(rec), rr).mean()
                                                  + rec_err(maybe_sg(fake), rf).mean()))

  return loss_e, loss_d


def test_bootstrap_uses_the_target_exactly_where_the_reference_does():
  model = mlp_model()
  state = sv.create_train_state(model, jax.random.PRNGKey(0), (2,), optax.sgd(1.0), target=True)
  tgt = state.target['params']
  assert np.abs(_flat(tgt) - _flat(state.decoder_params)).max() > 1e-3  # its own initialisation
  x = jax.random.normal(jax.random.PRNGKey(5), (16, 2))
  w = sv.LossWeights(beta_rec=1.0, beta_kl=1.0, beta_neg=0.9, gamma_r=1.0, scale=0.5)
  new, _ = jax.jit(sv.make_train_step(model, w, variant='bootstrap',
                                      bootstrap_refresh_steps=5))(state, x)
  d = sv.draw_normals(jax.random.fold_in(state.rng, 0), jnp.arange(16), model.z_dim)
  enc0, dec0 = state.encoder_params, state.decoder_params
  loss_e, loss_d = restated_bootstrap(model, w, x, d)
  g_enc = jax.grad(loss_e)(enc0, dec0, tgt)
  np.testing.assert_allclose(_flat(new.encoder_params), _flat(enc0) - _flat(g_enc), atol=1e-6)
  mu, lv = model.encoder.apply({'params': enc0}, x)
  z = sv.reparameterize(mu, lv, d.eps_real)
  g_dec = jax.grad(loss_d)(dec0, new.encoder_params, tgt, z)
  np.testing.assert_allclose(_flat(new.decoder_params), _flat(dec0) - _flat(g_dec), atol=1e-6)
  # The target is frozen between refreshes: no update at all.
  np.testing.assert_array_equal(_flat(new.target), _flat(state.target))
  # The comparisons can fail: with D in T's place in loss_E, or the main variant's stop-gradients
  # in loss_D, the gradients differ.
  g_enc_with_d = jax.grad(loss_e)(enc0, dec0, dec0)
  assert np.abs(_flat(g_enc_with_d) - _flat(g_enc)).max() > 1e-6
  _, loss_d_main = restated_bootstrap(model, w, x, d, stop_like_the_main_variant=True)
  g_dec_main = jax.grad(loss_d_main)(dec0, new.encoder_params, tgt, z)
  assert np.abs(_flat(g_dec_main) - _flat(g_dec)).max() > 1e-6
  # T's parameters do shape loss_D (it is used), yet the step leaves them alone (above).
  assert np.abs(_flat(jax.grad(loss_d, argnums=2)(dec0, new.encoder_params, tgt, z))).max() > 1e-6


def test_bootstrap_target_is_refreshed_from_the_decoder_every_n_steps():
  model = one_level_image_model()
  shape = (8, 8, 3)
  w = sv.LossWeights(1.0, 1.0, 256.0, gamma_r=1.0, scale=sv.default_scale(shape))
  state = _adam_state(model, shape, target=True)
  step = jax.jit(sv.make_train_step(model, w, variant='bootstrap', bootstrap_refresh_steps=2))
  batches = np.random.default_rng(0).uniform(size=(3, 4) + shape).astype(np.float32)
  decoders, targets = [], []
  for batch in batches:
    state, metrics = step(state, batch)
    assert float(metrics['nonfinite']) == 0
    decoders.append({'params': state.decoder_params, 'batch_stats': state.batch_stats['decoder']})
    targets.append(state.target)
  # After step 2: T == D, parameters and statistics. After 1: T's parameters are still its own;
  # after 3: T's parameters are step 2's D, its statistics moved on (it runs in training mode).
  np.testing.assert_array_equal(_flat(targets[1]), _flat(decoders[1]))
  np.testing.assert_array_equal(_flat(targets[2]['params']), _flat(decoders[1]['params']))
  assert np.abs(_flat(targets[2]['batch_stats']) - _flat(decoders[1]['batch_stats'])).max() > 0
  assert np.abs(_flat(targets[0]['params']) - _flat(decoders[0]['params'])).max() > 1e-3
  with pytest.raises(ValueError, match='target=True'):
    sv.make_train_step(model, w, variant='bootstrap', bootstrap_refresh_steps=2)(
        _adam_state(model, shape), batches[0])
  with pytest.raises(ValueError, match='bootstrap_refresh_steps'):
    sv.make_train_step(model, w, variant='bootstrap')
