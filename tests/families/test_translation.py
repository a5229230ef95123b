"""The translation family (docs/translation.md): AdaIN, the networks' shapes and sizes, the step's
gradients against a restatement with the two encoders written apart, translation and its grid,
the proving ground, the evaluator, and a tiny run whose translation error falls."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

import sintrovae_jax as sv
from configs import translation as translation_config
from sintrovae_jax.data import rendered_objects
from sintrovae_jax.evaluators import translation as scores
from sintrovae_jax.families.residual import ImageEncoder
from sintrovae_jax.families.translation import inference, networks
from sintrovae_jax.program import config_lib, train
from runs import assert_states_close, latest_step, params_of, run_main_here
from tiny import TINY_IMAGE

sg = jax.lax.stop_gradient
SHAPE = (8, 8, 3)
K_CLASS, K_CONTENT = 3, 2


def _tiny_model():
  """8 px: one-level encoders (8 channels), codes 3 + 2, AdaIN layers 8 and 4 from 2 px."""
  return networks.translation_vae((8,), K_CLASS, K_CONTENT, (8, 4), 8, 3, modulation_layers=1,
                                  modulation_width=6)


def _np_adain(x, gamma, beta, eps=1e-5):
  x = np.asarray(x, np.float64)
  out = np.empty_like(x)
  for b in range(x.shape[0]):
    for c in range(x.shape[-1]):
      v = x[b, :, :, c]
      out[b, :, :, c] = gamma[b, c] * (v - v.mean()) / np.sqrt(v.var() + eps) + beta[b, c]
  return out


def test_adain_matches_its_numpy_restatement(rng):
  x = rng.normal(size=(2, 4, 5, 3)) * 3 + 1
  gamma, beta = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
  np.testing.assert_allclose(networks.adain(jnp.asarray(x, jnp.float32), jnp.asarray(gamma),
                                            jnp.asarray(beta)),
                             _np_adain(x, gamma, beta), rtol=1e-4, atol=1e-5)


def test_bfloat16_compute_keeps_float32_parameters_and_outputs():
  """compute_dtype='bfloat16': the same parameters, float32 codes and images, close to float32's."""
  x = jax.random.uniform(jax.random.PRNGKey(5), (2,) + SHAPE)
  outputs = []
  for dtype in (jnp.float32, jnp.bfloat16):
    model = networks.translation_vae((8,), K_CLASS, K_CONTENT, (8, 4), 8, 3, modulation_layers=1,
                                     modulation_width=6, dtype=dtype)
    state = sv.create_train_state(model, jax.random.PRNGKey(3), SHAPE, optax.sgd(1.0))
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(state.encoder_params))
    out = jax.jit(lambda s, v, m=model: (sv.encode(m, s, v), sv.reconstruct(m, s, v)))(state, x)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(out))
    outputs.append(out)
  for a, b in zip(jax.tree.leaves(outputs[0]), jax.tree.leaves(outputs[1])):
    np.testing.assert_allclose(a, b, rtol=0.1, atol=0.05)


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_networks_have_the_written_shapes_and_parameter_counts():
  """The write-down's sizes at LORD's settings (64 px, codes 256 + 128, four AdaIN layers of 256),
  traced only (jax.eval_shape)."""
  model = networks.translation_vae((64, 128, 256, 512), 256, 128, (256,) * 4, 64, 3)
  enc, dec, _ = jax.eval_shape(lambda k: model.init(k, (64, 64, 3)), jax.random.PRNGKey(0))
  assert model.z_dim == 384
  # The encoder is two image encoders side by side, of the class and the content code.
  for name, k in (('class_encoder', 256), ('content_encoder', 128)):
    alone = jax.eval_shape(lambda key: ImageEncoder((64, 128, 256, 512), k).init(
        key, jnp.zeros((1, 64, 64, 3)), train=False), jax.random.PRNGKey(0))['params']
    assert jax.tree.map(lambda a: a.shape, enc[name]) == jax.tree.map(lambda a: a.shape, alone)
  assert set(enc) == {'class_encoder', 'content_encoder'}
  # The generator, counted from the write-down: modulation 256->256->256, fc 128 -> 4*4*256,
  # per layer a bias-free 3x3 convolution and a Dense(256 -> 2c) of AdaIN parameters, a 5x5 output.
  want = (256 * 256 + 256) * 2 + (128 * 4 * 4 * 256 + 4 * 4 * 256)
  want += 4 * (9 * 256 * 256 + 256 * 512 + 512) + 25 * 256 * 3 + 3
  assert _count(dec) == want
  x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
  _, _, stats = jax.eval_shape(lambda k: model.init(k, (64, 64, 3)), jax.random.PRNGKey(0))
  (mu, logvar), _ = jax.eval_shape(model.encode, enc, stats['encoder'], x)
  out, _ = jax.eval_shape(model.decode, dec, stats['decoder'], mu)
  assert mu.shape == logvar.shape == (2, 384) and out.shape == (2, 64, 64, 3)


def _restated_losses(model, enc_stats, w, x, d):
  """docs/translation.md's loss_E and loss_D, the two encoders written apart: each gives its part
  of the code, KL is the sum of the parts' KL, the generator takes [z_class, z_content]."""

  def E(p, v):  # training mode, as every call of the step (batch statistics)
    out = []
    for name, k in (('class_encoder', K_CLASS), ('content_encoder', K_CONTENT)):
      variables = {'params': p[name], 'batch_stats': enc_stats[name]}
      (mu, lv), _ = ImageEncoder((8,), k).apply(variables, v, train=True,
                                                mutable=['batch_stats'])
      out.append((mu, lv))
    return out

  G = lambda p, zc, zn: model.decoder.apply({'params': p}, jnp.concatenate([zc, zn], -1))
  rec_err, s = sv.reconstruction_error, w.scale

  def rep(parts, eps):  # each part reparameterised with its slice of the step's noise
    (mc, lc), (mn, ln) = parts
    return (sv.reparameterize(mc, lc, eps[:, :K_CLASS]),
            sv.reparameterize(mn, ln, eps[:, K_CLASS:]))

  kl = lambda parts: sum(sv.kl_divergence(m, l) for m, l in parts)
  noise = (d.noise[:, :K_CLASS], d.noise[:, K_CLASS:])
  ee = lambda e, k: jnp.mean(jnp.exp(-2 * s * (w.beta_rec * e + w.beta_neg * k)))

  def loss_e(enc, dec):
    fake = G(dec, *noise)
    parts = E(enc, x)
    rec = G(dec, *rep(parts, d.eps_real))
    r_parts, f_parts = E(enc, sg(rec)), E(enc, sg(fake))
    r = rec_err(rec, G(dec, *rep(r_parts, d.eps_rec)))
    f = rec_err(sg(fake), G(dec, *rep(f_parts, d.eps_fake)))
    return (s * (w.beta_rec * rec_err(x, rec).mean() + w.beta_kl * kl(parts).mean())
            + 0.25 * (ee(r, kl(r_parts)) + ee(f, kl(f_parts))))

  def loss_d(dec, enc, z):
    fake, rec = G(dec, *noise), G(dec, *(sg(c) for c in z))
    r_parts, f_parts = E(enc, rec), E(enc, fake)
    rr = G(dec, *(sg(c) for c in rep(r_parts, d.eps_rec_dec)))
    rf = G(dec, *(sg(c) for c in rep(f_parts, d.eps_fake_dec)))
    return s * (w.beta_rec * rec_err(x, rec).mean()
                + 0.5 * w.beta_kl * (kl(r_parts).mean() + kl(f_parts).mean())
                + 0.5 * w.gamma_r * w.beta_rec * (rec_err(sg(rec), rr).mean()
                                                  + rec_err(sg(fake), rf).mean()))

  return loss_e, loss_d, rep, E


def _flat(tree):
  return np.concatenate([np.ravel(a) for a in jax.tree.leaves(tree)])


def test_step_gradients_equal_the_restated_two_encoder_objective():
  """One Soft-IntroVAE step with SGD(1): the encoders move by -grad loss_E, the generator by
  -grad loss_D at the updated encoders (z from the old ones), as restated with the encoders
  apart."""
  model = _tiny_model()
  w = sv.LossWeights(beta_rec=1.0, beta_kl=1.0, beta_neg=4.0, gamma_r=1.0, scale=1 / 192)
  state = sv.create_train_state(model, jax.random.PRNGKey(1), SHAPE, optax.sgd(1.0))
  x = jax.random.uniform(jax.random.PRNGKey(2), (4,) + SHAPE)
  new, _ = jax.jit(sv.make_train_step(model, w, phase='soft_intro'))(state, x)
  d = sv.draw_normals(jax.random.fold_in(state.rng, 0), jnp.arange(4), model.z_dim)
  loss_e, loss_d, rep, E = _restated_losses(model, state.batch_stats['encoder'], w, x, d)
  enc0, dec0 = state.encoder_params, state.decoder_params

  @jax.jit
  def restated_updates(enc0, dec0, enc1):
    g_enc = jax.grad(loss_e)(enc0, dec0)
    z = rep(E(enc0, x), d.eps_real)
    return g_enc, jax.grad(loss_d)(dec0, enc1, z), jax.grad(loss_d)(dec0, enc0, z)

  g_enc, g_dec, g_dec_old = restated_updates(enc0, dec0, new.encoder_params)
  for name in ('class_encoder', 'content_encoder'):  # both encoders take part in loss_E
    np.testing.assert_allclose(_flat(new.encoder_params[name]),
                               _flat(enc0[name]) - _flat(g_enc[name]), rtol=1e-4, atol=1e-6)
    assert np.abs(_flat(g_enc[name])).max() > 1e-6
  np.testing.assert_allclose(_flat(new.decoder_params), _flat(dec0) - _flat(g_dec), rtol=1e-4,
                             atol=1e-6)
  assert np.abs(_flat(g_dec_old) - _flat(g_dec)).max() > 1e-6  # the updated encoders count


def test_translating_an_image_with_itself_is_its_reconstruction_and_the_grid_is_laid_out():
  model = _tiny_model()
  state = sv.create_train_state(model, jax.random.PRNGKey(3), SHAPE, optax.sgd(1.0))
  x = np.asarray(jax.random.uniform(jax.random.PRNGKey(4), (5,) + SHAPE))
  np.testing.assert_allclose(inference.translate(model, state, x, x),
                             sv.reconstruct(model, state, x), rtol=1e-5, atol=1e-6)
  ids, poses = x[:2], x[2:]
  grid = inference.translation_grid(model, state, ids, poses)
  assert grid.shape == (3 * 4,) + SHAPE
  cells = grid.reshape((3, 4) + SHAPE)
  assert np.all(cells[0, 0] == 1.0)  # the blank corner
  np.testing.assert_array_equal(cells[0, 1:], poses)
  np.testing.assert_array_equal(cells[1:, 0], ids)
  want = np.clip(inference.translate(model, state, ids[1:2], poses[2:3]), 0, 1)
  np.testing.assert_allclose(cells[2, 3], want[0], rtol=1e-5, atol=1e-6)
  # Codes swap: the class code of ids[1] with the content code of poses[2].
  (c_id, _), (_, n_pose) = inference.codes(model, state, ids), inference.codes(model, state, poses)
  mu = jnp.concatenate([c_id[1:2], n_pose[2:3]], -1)
  np.testing.assert_allclose(np.clip(sv.decode(model, state, mu), 0, 1)[0], cells[2, 3],
                             rtol=1e-5, atol=1e-6)


def test_the_proving_ground_has_distinct_poses_and_a_balanced_heldout_split():
  images = rendered_objects.proving_ground(3, 2, 8, 16)
  assert images.shape == (6, 8, 16, 16, 3) and images.min() >= 0 and images.max() <= 1
  flat = images.reshape(48, -1)
  distance = np.abs(flat[:, None] - flat[None]).max(-1)
  assert np.all(distance[~np.eye(48, dtype=bool)] > 0.05)  # no two images alike (marked faces)
  assert np.all(images[:, :, 0, 0] == 0)  # black background
  held = rendered_objects.heldout_mask(6, 8)
  assert held.any(1).all() and held.any(0).all() and (~held).any(1).all()
  assert held.mean() == 0.25
  grey = rendered_objects.proving_ground(1, 1, 8, 16, grey=True)
  np.testing.assert_allclose(grey[0, ..., 0], images[0] @ [0.299, 0.587, 0.114], rtol=1e-5)


def test_scores_are_zero_for_an_oracle_and_probes_see_what_codes_hold():
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(6, 8, 4, 4, 1))
  held = rendered_objects.heldout_mask(6, 8)
  pairs = scores.heldout_pairs(held, 50, 0)
  assert np.all(held[pairs[:, 0], pairs[:, 1]]) and np.all(held[pairs[:, 2], pairs[:, 3]])
  assert np.all(pairs[:, 0] != pairs[:, 2]) and np.all(pairs[:, 1] != pairs[:, 3])
  one_identity = np.zeros_like(held)
  one_identity[0] = True  # every held-out pair would share the identity: an error, not a hang
  with pytest.raises(ValueError, match='differ in both identity and pose'):
    scores.heldout_pairs(one_identity, 5, 0)
  where = {im.tobytes(): (i, v) for i in range(6) for v in range(8) for im in [images[i, v]]}
  lookup = lambda x: np.array([where[im.tobytes()] for im in x])

  def oracle(xi, xj):
    (a, _), (_, q) = lookup(xi).T, lookup(xj).T
    return images[a, q]

  result = scores.translation_error(oracle, images, pairs, batch=7)
  a, p, b, q = pairs.T
  assert result['translation_mse'] == 0.0
  np.testing.assert_allclose(result['baseline_class_image_mse'],
                             np.mean((images[a, p] - images[a, q]) ** 2))
  np.testing.assert_allclose(result['baseline_content_image_mse'],
                             np.mean((images[b, q] - images[a, q]) ** 2))
  # Codes that hold exactly one factor each: one-hot identity as the class code, one-hot pose as
  # the content code (plus noise, so the probes' inputs vary).
  def codes(x):
    i, v = lookup(x).T
    return (np.eye(6)[i] + 0.01 * rng.normal(size=(len(x), 6)),
            np.eye(8)[v] + 0.01 * rng.normal(size=(len(x), 8)))

  purity = scores.code_purity(codes, images, held)
  assert purity['probe_class_to_identity'] == purity['probe_content_to_pose'] == 1.0
  assert purity['probe_class_to_pose'] <= 2 * purity['chance_pose']
  assert purity['probe_content_to_identity'] <= 2 * purity['chance_identity']


def test_a_tiny_run_on_the_proving_ground_lowers_the_translation_error():
  """The suite's tiny version of scripts/translation_objects.py: 8 px objects (3 shapes x 2
  colours, 8 poses), the tiny networks, 150 Soft-IntroVAE steps; held-out pairs scored."""
  images = rendered_objects.proving_ground(3, 2, 8, 8)
  held = rendered_objects.heldout_mask(6, 8)
  train = images[~held]
  model = _tiny_model()
  w = sv.LossWeights(1.0, 1.0, 256.0, scale=sv.default_scale(SHAPE))
  state = sv.create_train_state(model, jax.random.PRNGKey(0), SHAPE,
                                sv.make_optimizer(sv.learning_rate_schedule(2e-3, ())))
  step = jax.jit(sv.make_train_step(model, w, phase='soft_intro'))
  before = scores.evaluate(model, state, images, held, num_pairs=64)
  rng = np.random.default_rng(0)
  for _ in range(150):
    state, metrics = step(state, train[rng.choice(len(train), 8)])
  assert float(metrics['nonfinite']) == 0.0
  after = scores.evaluate(model, state, images, held, num_pairs=64)
  assert after['translation_mse'] < 0.5 * before['translation_mse'], (before, after)
  assert after['baseline_content_image_mse'] == before['baseline_content_image_mse'] > 0


TINY_TRANSLATION = dict(TINY_IMAGE, image_size=16, num_vae_steps=0, translation_class_dim=2,
                        translation_content_dim=2, translation_generator_channels=(8, 4),
                        translation_modulation_layers=1, translation_modulation_width=6)


@pytest.mark.parametrize('field,value,valid', [
    ('z_dim', 5, 'set z_dim=4'),
    ('translation_generator_channels', (8, 8, 8, 8, 8), 'multiple of 32'),
    ('translation_modulation_layers', -1, 'positive number of layers'),
    ('translation_class_dim', 0, 'positive integer'),
])
def test_bad_translation_config_names_field_value_and_fix(tmp_path, field, value, valid):
  config = translation_config.get_config('kth')
  config.update(dict(TINY_TRANSLATION, data_dir=str(tmp_path)))
  Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / 'a.png')
  config_lib.validate(config)  # (valid as it is)
  config[field] = value
  with pytest.raises(config_lib.ConfigError) as err:
    config_lib.validate(config)
  assert f'config.{field}={value!r}' in str(err.value) and valid in str(err.value)


@pytest.mark.long
@pytest.mark.default_python_only
def test_main_trains_on_an_image_folder_and_writes_the_translation_grid(tmp_path):
  """configs/translation.py on a folder of rendered objects (16 px), exact resume, the grid among
  the training pictures, --mode=translate from two folders, and a clear error for a run of another
  family."""
  images = rendered_objects.proving_ground(2, 2, 8, 16)
  train_dir, heldout_dir = rendered_objects.write_folders(
      images, rendered_objects.heldout_mask(4, 8), str(tmp_path / 'data'))
  workdir = str(tmp_path / 'run')
  out = run_main_here('--config=configs/translation.py:cars3d', f'--workdir={workdir}',
                      f'--config.data_dir={train_dir}',
                      *[f'--config.{k}={v}' for k, v in TINY_TRANSLATION.items()
                        if k not in ('channels', 'translation_generator_channels')],
                      '--config.channels=(8,)', '--config.translation_generator_channels=(8,4)')
  assert out.returncode == 0, out.stderr[-3000:]
  # Exact resume: 2 steps, then on to 4 in another run, equal the uninterrupted 4 steps.
  config = translation_config.get_config('cars3d')
  config.update(dict(TINY_TRANSLATION, data_dir=train_dir, channels=(8,),
                     translation_generator_channels=(8, 4)))
  for steps in (2, 4):
    config.num_train_steps = steps
    train.train_and_evaluate(config, str(tmp_path / 'resumed'))
  assert latest_step(str(tmp_path / 'resumed'), config) == 4
  assert_states_close(params_of(str(tmp_path / 'resumed'), config), params_of(workdir, config))
  pictures = os.listdir(os.path.join(workdir, 'pictures'))
  assert {'translation_00000002.png', 'translation_00000004.png'} <= set(pictures)
  out = run_main_here('--mode=translate', f'--workdir={workdir}', f'--source_dir={train_dir}',
                      f'--target_dir={heldout_dir}')
  assert out.returncode == 0, out.stderr[-3000:]
  grid = np.asarray(Image.open(os.path.join(workdir, 'samples', 'translation_00000004.png')))
  # 5 identities (of 24 training images) down, 8 held-out poses across (5 of them), 16 px cells
  # and 2 px gaps: 6 rows and 6 columns.
  assert grid.shape == (6 * 18 + 2, 6 * 18 + 2, 3)
  other = run_main_here('--config=configs/toy2d.py:8gaussians', '--mode=translate',
                        f'--workdir={tmp_path / "other"}')
  assert other.returncode == 1 and 'needs a run of the translation family' in other.stderr
  assert 'Traceback' not in other.stderr
