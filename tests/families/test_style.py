"""The style-based variant (VARIANTS.md 1): networks, fade-in, optimiser, stop-gradients, devices,
progressive training with resume, on tiny networks (4 -> 8 px, 8-16 channels)."""

import functools
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import ffhq256
from devices import cpu_devices_env
from runs import ROOT, compiled, jax_events, run_check
from sintrovae_jax.core import losses
from sintrovae_jax.families.style import (layers as style_layers, optim as style_optim,
                                          progressive, step as style_step)
from sintrovae_jax.program import (registry as programs, runner, startup, style_train,
                                   workdir as workdir_lib)
from sintrovae_jax.core.objectives import LossWeights
from sintrovae_jax.families.style.model import StyleVAE
from tiny import tiny_style_model

HIGHEST = jax.lax.Precision.HIGHEST


def count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_256px_networks_have_the_reference_channels_and_parameter_counts():
  model = StyleVAE()  # the shipped configs' architecture
  enc, dec, coeffs = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  # VARIANTS.md 1.9's counts: 26.8M, 1.05M, 24.0M, 2.10M.
  assert round(count(enc['encoder']) / 1e6, 1) == 26.8
  assert round(count(enc['mapping_tl']) / 1e6, 2) == 1.05
  assert round(count(dec['decoder']) / 1e6, 1) == 24.0
  assert round(count(dec['mapping_fl']) / 1e6, 2) == 2.10
  # Decoder o_i and encoder n_i -> m_i per block (1.4, 1.5), stored kernels 3x3.
  for i, o in enumerate((512, 512, 512, 512, 256, 128, 64)):
    assert dec['decoder'][f'decode_block_{i}']['conv_2']['kernel'].shape == (3, 3, o, o)
    assert dec['decoder'][f'to_rgb_{i}']['kernel'].shape == (1, 1, o, 3)
  for i, (n, m) in enumerate(zip((64, 128, 256, 512, 512, 512, 512),
                                 (128, 256, 512, 512, 512, 512, 512))):
    assert enc['encoder'][f'encode_block_{i}']['conv_2']['kernel'].shape == (3, 3, n, m)
    assert enc['encoder'][f'from_rgb_{i}']['kernel'].shape == (1, 1, 3, n)
  assert dec['decoder']['const'].shape == (1, 4, 4, 512)
  # A coefficient per parameter, shaped like a scalar.
  assert jax.tree.structure(coeffs['encoder']) == jax.tree.structure(enc)
  # Output shapes per lod: images 2^(l+2) px, one latent-size (mu, logvar) from any lod.
  z = jnp.zeros((2, 512))
  for lod in range(7):
    size = 2 ** (lod + 2)
    out = jax.eval_shape(lambda d, z, lod=lod: model.decode(d, z, lod), dec, z)
    assert out.shape == (2, size, size, 3)
    mu, logvar = jax.eval_shape(lambda e, x, lod=lod: model.encode(e, x, lod), enc,
                                jnp.zeros((2, size, size, 3)))
    assert mu.shape == logvar.shape == (2, 512)


def test_equalised_lr_initialisation_and_coefficients_follow_the_reference():
  model = tiny_style_model()
  enc, dec, coeffs = model.init(jax.random.PRNGKey(0))
  # mapping_fl layer: Linear gain sqrt(2), lrmul 0.1: weight std sqrt(2)/sqrt(16), c = std * 0.1.
  c = coeffs['decoder']['mapping_fl']['map_blocks_0']
  np.testing.assert_allclose(c['kernel'], np.sqrt(2) / 4 * 0.1, rtol=1e-6)
  np.testing.assert_allclose(c['bias'], 0.1, rtol=1e-6)
  # to_rgb: 1x1 conv, gain 0.03, fan-in 8 (decoder block 1 has 8 channels).
  np.testing.assert_allclose(coeffs['decoder']['decoder']['to_rgb_1']['kernel'],
                             0.03 / np.sqrt(8), rtol=1e-6)
  # style_k: gain 1; decoder conv_2 3x3 over 16 channels (block 0): sqrt(2)/sqrt(9*16).
  block0 = coeffs['decoder']['decoder']['decode_block_0']
  np.testing.assert_allclose(block0['style_1']['kernel'], 1 / np.sqrt(16), rtol=1e-6)
  np.testing.assert_allclose(block0['conv_2']['kernel'], np.sqrt(2) / 12, rtol=1e-6)
  np.testing.assert_allclose(block0['noise_weight_1'], 1.0)
  assert not np.any(dec['decoder']['decode_block_0']['noise_weight_1'])  # noise weights start 0
  np.testing.assert_array_equal(dec['decoder']['const'], 1.0)


def test_fade_in_is_continuous_at_both_ends():
  model = tiny_style_model()
  enc, dec, _ = model.init(jax.random.PRNGKey(1))
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(3, 16)), jnp.float32)
  x = jnp.asarray(rng.uniform(-1, 1, size=(3, 8, 8, 1)), jnp.float32)
  keys = jax.random.split(jax.random.PRNGKey(2), 3)
  # Decoder: alpha = 1 is the grown network; alpha = 0 the 4 px output, nearest-upsampled.
  grown = model.decode(dec, z, 1, None, keys)
  np.testing.assert_allclose(model.decode(dec, z, 1, 1.0, keys), grown, atol=1e-6)
  previous = style_layers.upscale2d(model.decode(dec, z, 0, None, keys))
  np.testing.assert_allclose(model.decode(dec, z, 1, 0.0, keys), previous, atol=1e-6)
  assert float(jnp.max(jnp.abs(grown - previous))) > 1e-3  # the two ends do differ
  # Encoder: alpha = 1 reads the 8 px image; alpha = 0 the 4 px path of its 2x2 average.
  np.testing.assert_allclose(model.encode(enc, x, 1, 1.0), model.encode(enc, x, 1), atol=1e-5)
  np.testing.assert_allclose(model.encode(enc, x, 1, 0.0),
                             model.encode(enc, style_layers.downscale2d(x), 0), atol=1e-5)


def test_bfloat16_compute_keeps_float32_parameters_and_outputs_and_fades_continuously():
  """compute_dtype='bfloat16' for the style networks: the same float32 parameters, float32
  (mu, logvar) and images close to float32's, convolutions in bfloat16, and the fade-in still
  continuous at both ends."""
  f32, bf16 = tiny_style_model(), tiny_style_model(dtype=jnp.bfloat16)
  params = f32.init(jax.random.PRNGKey(1))
  for a, b in zip(jax.tree.leaves(bf16.init(jax.random.PRNGKey(1))), jax.tree.leaves(params)):
    assert a.dtype == jnp.float32
    np.testing.assert_array_equal(a, b)
  enc, dec, _ = params
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(3, 16)), jnp.float32)
  x = jnp.asarray(rng.uniform(-1, 1, size=(3, 8, 8, 1)), jnp.float32)
  keys = jax.random.split(jax.random.PRNGKey(2), 3)
  for alpha in (None, 0.5):
    want, got = f32.decode(dec, z, 1, alpha, keys), bf16.decode(dec, z, 1, alpha, keys)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, atol=3e-2 * float(jnp.max(jnp.abs(want))))
    for want_part, got_part in zip(f32.encode(enc, x, 1, alpha), bf16.encode(enc, x, 1, alpha)):
      assert got_part.dtype == jnp.float32
      np.testing.assert_allclose(got_part, want_part,
                                 atol=3e-2 * float(jnp.max(jnp.abs(want_part))))
  assert not np.array_equal(bf16.decode(dec, z, 1, None, keys), f32.decode(dec, z, 1, None, keys))
  # The fade-in's ends, in bfloat16 as in float32.
  grown = bf16.decode(dec, z, 1, None, keys)
  np.testing.assert_allclose(bf16.decode(dec, z, 1, 1.0, keys), grown, atol=1e-6)
  previous = style_layers.upscale2d(bf16.decode(dec, z, 0, None, keys))
  np.testing.assert_allclose(bf16.decode(dec, z, 1, 0.0, keys), previous, atol=1e-6)
  np.testing.assert_allclose(bf16.encode(enc, x, 1, 0.0),
                             bf16.encode(enc, style_layers.downscale2d(x), 0), atol=1e-5)
  # Every convolution of the bfloat16 decoder takes bfloat16 operands; float32's, none.
  convs = lambda m: re.findall(r'stablehlo\.convolution.*', jax.jit(
      lambda d: m.decode(d, z, 1, None, keys)).lower(dec).as_text())
  assert convs(bf16) and all('bf16' in c and 'f32' not in c.split('->')[0] for c in convs(bf16))
  assert not any('bf16' in c for c in convs(f32))


def test_alpha_follows_the_reference_sine_ramp():
  phases = progressive.build_phases((100, 400, 400), (10, 20, 40), (1e-3,) * 3, (1., 2., 3.), 200,
                                    30)
  assert [(p.name, p.start, p.steps) for p in phases] == [
      ('4px_vae', 0, 3), ('4px_stable', 3, 7), ('8px_fade', 10, 10), ('8px_stable', 20, 10),
      ('16px_fade', 30, 5), ('16px_stable', 35, 5)]
  fade = phases[2]
  for step in range(fade.start, fade.end):
    t = (step - fade.start) * fade.batch / 200
    expected = (np.sin(np.pi * t - np.pi / 2) + 1) / 2
    assert abs(float(progressive.alpha(fade, step)) - expected) < 1e-6
  assert progressive.alpha(phases[3], 25) == 1.0
  assert progressive.phase_at(phases, 29).name == '8px_stable'
  assert progressive.phase_at(phases, 30).name == '16px_fade'
  assert [progressive.starts_lod(phases, p) for p in phases] == [True, False, True, False, True,
                                                                 False]


def test_lreq_adam_equals_a_numpy_restatement():
  """VARIANTS.md 1.6: v <- b2 v + (1-b2) g^2; p <- p - lr c sqrt(1-b2^t) g / (sqrt(v) + eps)."""
  rng = np.random.default_rng(0)
  params = {'a': rng.normal(size=(3, 4)).astype(np.float32),
            'b': {'c': rng.normal(size=(5,)).astype(np.float32)}}
  coeffs = {'a': np.float32(0.3), 'b': {'c': np.float32(1.7)}}
  lr, b2, eps = 0.01, 0.99, 1e-8
  tx = style_optim.lreq_adam(lr, coeffs, b2, eps)
  state, p = tx.init(params), params
  ref = {k: np.asarray(v, np.float64) for k, v in (('a', params['a']), ('c', params['b']['c']))}
  v = {k: np.zeros_like(x) for k, x in ref.items()}
  c = {'a': 0.3, 'c': 1.7}
  for t in range(1, 6):
    g = {'a': rng.normal(size=(3, 4)).astype(np.float32),
         'b': {'c': (rng.normal(size=(5,)) * 10 ** t).astype(np.float32)}}
    updates, state = tx.update(g, state, p)
    p = jax.tree.map(lambda x, u: x + u, p, updates)
    for k, gk in (('a', g['a']), ('c', g['b']['c'])):
      v[k] = b2 * v[k] + (1 - b2) * np.asarray(gk, np.float64) ** 2
      ref[k] = ref[k] - lr * c[k] * np.sqrt(1 - b2 ** t) * gk / (np.sqrt(v[k]) + eps)
  np.testing.assert_allclose(p['a'], ref['a'], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(p['b']['c'], ref['c'], rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# Gradients: where VARIANTS.md 1.8 puts the stop-gradients, and only into the used resolutions.

WEIGHTS = LossWeights(beta_rec=1.0, beta_kl=0.5, beta_neg=8.0, gamma_r=0.3, scale=1 / 64)


def _setup(lod=1):
  model = tiny_style_model()
  enc, dec, _ = model.init(jax.random.PRNGKey(3))
  # Non-zero noise weights, so that the noise inputs matter.
  dec = jax.tree_util.tree_map_with_path(
      lambda path, x: x + 0.1 if 'noise_weight' in jax.tree_util.keystr(path) else x, dec)
  size = 4 * 2 ** lod
  x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (4, size, size, 1)), jnp.float32)
  return model, enc, dec, x


def _draws(model, lod):
  """The random numbers of the half-steps below (4 examples, no style mixing)."""
  return style_step._Draws(jax.random.PRNGKey(4), jnp.arange(4), model.latent, lod, 0.0)


def _restated_decoder_loss(dec, dec_const, enc, x, d, model, w, lod, alpha):
  """loss_D with every stop-gradient written as a frozen copy `dec_const` of the decoder's
  parameters (differentiated w.r.t. `dec` only): no lax.stop_gradient anywhere."""
  def D(params, z, call):
    return model.decode(params, z, lod, alpha, d.noise_keys(call))
  mu, logvar = model.encode(enc, x, lod, alpha)
  z = losses.reparameterize(mu, logvar, d.eps_real)  # independent of dec anyway
  fake, rec = D(dec, d.z_fake, 0), D(dec, z, 1)
  rec_c, fake_c = D(dec_const, z, 1), D(dec_const, d.z_fake, 0)
  rec_mu, rec_logvar = model.encode(enc, rec, lod, alpha)
  fake_mu, fake_logvar = model.encode(enc, fake, lod, alpha)
  # The re-reconstructions' latents come through the encoder from the frozen copies' outputs.
  rmu_c, rlv_c = model.encode(enc, rec_c, lod, alpha)
  fmu_c, flv_c = model.encode(enc, fake_c, lod, alpha)
  rec_rec = D(dec, losses.reparameterize(rmu_c, rlv_c, d.eps_rec), 2)
  rec_fake = D(dec, losses.reparameterize(fmu_c, flv_c, d.eps_fake), 3)
  mean = lambda a, b: losses.mean_reconstruction_error(a, b, 'mse')
  return losses.decoder_loss(mean(x, rec), jnp.mean(losses.kl_divergence(rec_mu, rec_logvar)),
                             jnp.mean(losses.kl_divergence(fake_mu, fake_logvar)),
                             mean(rec_c, rec_rec), mean(fake_c, rec_fake), w.scale, w.beta_rec,
                             w.beta_kl, w.gamma_r)


def _restated_encoder_loss(enc, enc_const, dec, x, d, model, w, lod, alpha):
  """loss_E with the encoder's stop-gradient (E(sg(rec))) written as a frozen copy."""
  def D(z, call):
    return model.decode(dec, z, lod, alpha, d.noise_keys(call))
  fake = D(d.z_fake, 0)
  mu, logvar = model.encode(enc, x, lod, alpha)
  rec = D(losses.reparameterize(mu, logvar, d.eps_real), 1)
  mu_c, logvar_c = model.encode(enc_const, x, lod, alpha)
  rec_c = D(losses.reparameterize(mu_c, logvar_c, d.eps_real), 1)
  rec_mu, rec_logvar = model.encode(enc, rec_c, lod, alpha)
  rec_rec = D(losses.reparameterize(rec_mu, rec_logvar, d.eps_rec), 2)
  fake_mu, fake_logvar = model.encode(enc, fake, lod, alpha)
  rec_fake = D(losses.reparameterize(fake_mu, fake_logvar, d.eps_fake), 3)
  err = lambda a, b: losses.reconstruction_error(a, b, 'mse')
  e_rec = losses.exp_elbo(err(rec, rec_rec), losses.kl_divergence(rec_mu, rec_logvar), w.scale,
                          w.beta_rec, w.beta_neg)
  e_fake = losses.exp_elbo(err(fake, rec_fake), losses.kl_divergence(fake_mu, fake_logvar),
                           w.scale, w.beta_rec, w.beta_neg)
  return losses.encoder_loss(losses.mean_reconstruction_error(x, rec, 'mse'),
                             jnp.mean(losses.kl_divergence(mu, logvar)), e_rec, e_fake, w.scale,
                             w.beta_rec, w.beta_kl)


def _assert_trees_close(a, b):
  """Equal to 1e-4 of each network's largest gradient (biases before an InstanceNorm have
  gradients that are zero but for rounding)."""
  for part in b:
    scale = max(float(jnp.max(jnp.abs(y))) for y in jax.tree.leaves(b[part]))
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a[part]),
                            jax.tree.leaves(b[part])):
      assert float(jnp.max(jnp.abs(x - y))) <= 1e-4 * scale, (part, jax.tree_util.keystr(path))


def test_stop_gradients_are_where_the_reference_puts_them():
  model, enc, dec, x = _setup(lod=0)
  d = _draws(model, 0)

  @jax.jit
  def gradients(enc, dec):
    g_dec = jax.grad(lambda p: style_step.decoder_objective(p, enc, x, d, model, WEIGHTS, 0,
                                                            None)[0])(dec)
    g_dec_ref = jax.grad(_restated_decoder_loss)(dec, dec, enc, x, d, model, WEIGHTS, 0, None)
    g_enc = jax.grad(lambda p: style_step.encoder_objective(p, dec, x, d, model, WEIGHTS, 0,
                                                            None)[0])(enc)
    g_enc_ref = jax.grad(_restated_encoder_loss)(enc, enc, dec, x, d, model, WEIGHTS, 0, None)
    # Without the frozen copies (no stop-gradient at all) the decoder's gradient differs.
    loose = jax.grad(lambda p: _restated_decoder_loss(p, p, enc, x, d, model, WEIGHTS, 0,
                                                      None))(dec)
    return g_dec, g_dec_ref, g_enc, g_enc_ref, loose

  g_dec, g_dec_ref, g_enc, g_enc_ref, loose = gradients(enc, dec)
  _assert_trees_close(g_dec, g_dec_ref)
  _assert_trees_close(g_enc, g_enc_ref)
  assert max(float(jnp.max(jnp.abs(a - b))) for a, b in
             zip(jax.tree.leaves(loose), jax.tree.leaves(g_dec))) > 1e-3 * max(
                 float(jnp.max(jnp.abs(b))) for b in jax.tree.leaves(g_dec))
  # At 4 px nothing reaches the 8 px layers.
  norm = lambda tree: float(sum(jnp.sum(jnp.abs(v)) for v in jax.tree.leaves(tree)))
  assert norm(g_dec['decoder']['decode_block_1']) == 0 and norm(g_dec['decoder']['to_rgb_1']) == 0
  assert norm(g_enc['encoder']['encode_block_0']) == 0 and norm(g_enc['encoder']['from_rgb_0']) == 0
  assert norm(g_dec['decoder']['decode_block_0']) > 0 and norm(g_enc['encoder']['from_rgb_1']) > 0


@functools.partial(jax.jit, static_argnames=('model', 'alpha'))
def _gradients_at_8px(model, enc, dec, x, alpha):
  """The encoder's and the decoder's gradients of their losses at 8 px (lod 1): one program per
  (model, alpha)."""
  d = _draws(model, 1)
  return (jax.grad(lambda p: style_step.encoder_objective(p, dec, x, d, model, WEIGHTS, 1,
                                                          alpha)[0])(enc),
          jax.grad(lambda p: style_step.decoder_objective(p, enc, x, d, model, WEIGHTS, 1,
                                                          alpha)[0])(dec))


def test_gradients_reach_exactly_the_resolutions_in_use_and_remat_keeps_them():
  """At 8 px, plain and fading in: the gradients reach the blocks in use and no other. Then
  config.remat for the style model: the blocks run under jax.checkpoint (so their activations are
  recomputed for the gradient), with the same parameter tree and the same gradients. (One test:
  both halves take the plain 0.4 program, which two tests on two workers compiled twice.)"""
  model, enc, dec, x = _setup(lod=1)
  norm = lambda tree: float(sum(jnp.sum(jnp.abs(v)) for v in jax.tree.leaves(tree)))
  for alpha in (None, 0.4):
    g_enc, g_dec = _gradients_at_8px(model, enc, dec, x, alpha)
    g_enc, g_dec, fading = g_enc['encoder'], g_dec['decoder'], alpha is not None
    # At 8 px: encoder blocks 0 (8 -> 4) and 1 (4 -> 2), from_rgb_0; decoder blocks 0 and 1,
    # to_rgb_1. A fade-in also uses the 4 px path: from_rgb_1 and to_rgb_0.
    for name in ('encode_block_0', 'encode_block_1', 'from_rgb_0'):
      assert norm(g_enc[name]) > 0, name
    for name in ('decode_block_0', 'decode_block_1', 'to_rgb_1', 'const'):
      assert norm(g_dec[name]) > 0, name
    assert (norm(g_enc['from_rgb_1']) > 0) == fading
    assert (norm(g_dec['to_rgb_0']) > 0) == fading

  remat = tiny_style_model(remat=True)
  for a, b in zip(remat.init(jax.random.PRNGKey(3)), model.init(jax.random.PRNGKey(3))):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_array_equal(u, v)
  # The checkpointed blocks are in the remat model's program and not in the plain one's
  # (jax.checkpoint's primitive prints as remat2[...] in JAX 0.10-0.12).
  checkpointed = lambda m: re.search(r'\b(remat\w*|checkpoint)\[', str(jax.make_jaxpr(
      lambda: _gradients_at_8px.__wrapped__(m, enc, dec, x, 0.4))()))
  assert checkpointed(remat) and not checkpointed(model)
  for got, want in zip(_gradients_at_8px(remat, enc, dec, x, 0.4),
                       _gradients_at_8px(model, enc, dec, x, 0.4)):
    _assert_trees_close(got, want)


def test_four_devices_equal_one_device():
  """The style step on 4 devices (pmap) against 1, in float32 and in bfloat16 compute."""
  # At the suite's fast-compile preset, as at XLA's defaults (where the bf16 bounds below were
  # first measured), each step's bf16 metrics, from the same state on both sides, are 4.3e-3 apart
  # on JAX 0.12.1 and 3.5e-3 on 0.10.2, and 0.2-0.4% of the bf16 parameters step apart: see the
  # check's comments for why not the last of three steps run apart (1.05e-2 on 0.12.1).
  env = dict(cpu_devices_env(4),
             PYTHONPATH=os.pathsep.join(['tests', os.environ['PYTHONPATH']]))
  d = run_check('style_multidevice_check.py', env=env, timeout=400)
  assert d['devices'] == 4
  assert d['moved'] > 1e-4 and d['ema_moved'] > 1e-5 and d['w_avg_moved'] > 1e-4, d
  for key in ('state_pmap',):
    for part, diff in d[key].items():
      assert diff < 1e-5, (key, part, d)
  assert d['metrics_pmap'] < 1e-4, d
  # compute_dtype='bfloat16': float32 states and metrics; N devices == 1 device and float32 ==
  # bfloat16 to bfloat16's rounding (8 bits: ~4e-3 per operation): each step's metrics to 1e-2
  # relative (the soft exponential terms as exponents), and fewer than 2% of the parameters
  # apart by more than half a learning-rate step (Adam moves a parameter by ~lr whatever its
  # gradient's size, so near-zero gradients may step apart).
  assert d['bf16_float_dtypes'] == ['float32'], d
  assert d['bf16_metrics_pmap'] < 1e-2 and d['bf16_params_apart_pmap'] < 2e-2, d
  assert d['bf16_vs_f32_metrics'] < 5e-2 and d['bf16_vs_f32_params_apart'] < 5e-2, d


# ------------------------------------------------------------------------------------------------
# The program: progressive training through two resolutions, resume across the switch.


def tiny_style_config(data_dir, **overrides):
  c = ffhq256.get_config()
  c.data_dir = str(data_dir)
  c.image_channels, c.image_size, c.z_dim = 1, 8, 16
  c.style_start_channels, c.style_max_channels, c.style_mapping_layers = 8, 16, 2
  c.style_fused_from = 8
  # 4 px: 6 warm-up + 34 Soft-IntroVAE steps; 8 px: 40 fading in + 120 steps (batch 16).
  c.style_lod_images, c.style_lod_batch = (640, 2560), (16, 16)
  # 10x the reference's rate: equalised-lr layers move by ~lr of their scale per step, and the
  # test has 200 steps, not thousands.
  c.style_lod_learning_rate, c.style_lod_beta_neg = (1e-2, 1e-2), (64.0, 32.0)
  c.style_fade_images, c.style_vae_images = 640, 96
  c.style_truncation_cutoff = 2
  c.scale = 1 / 64
  c.beta_rec = 1.0
  c.log_every_steps, c.checkpoint_every_steps, c.sample_every_steps = 10, 1000, 1000
  c.num_eval_examples, c.num_grid_images = 64, 8
  c.compilation_cache_dir = ''
  for k, v in overrides.items():
    c[k] = v
  return c


@pytest.fixture(scope='module')
def faces(tmp_path_factory):
  from real_images import faces_folder  # pylint: disable=g-import-not-at-top
  return faces_folder(str(tmp_path_factory.mktemp('style_data')))


def _stop_at(step_to_stop):
  """A preemption that stops the run after `step_to_stop`."""
  class Stop(startup.Preemption):
    def __call__(self, step):
      return step == step_to_stop
  return Stop


def _state(workdir, config, step=None):
  """The state of `workdir`'s checkpoint at `step` (default: its latest)."""
  exp = style_train.build(config)
  if step is None:
    return workdir_lib.latest_checkpoint_state(exp, str(workdir), 'read')
  with workdir_lib.checkpoint_manager(str(workdir), config) as manager:
    return manager.restore(step, args=ocp.args.StandardRestore(exp.state))


@pytest.mark.long
@pytest.mark.default_python_only
def test_trains_through_two_resolutions_and_resumes_exactly_across_the_switch(
    tmp_path, faces, monkeypatch):
  config = tiny_style_config(faces)
  results = style_train.train_and_evaluate(config, str(tmp_path / 'full'))
  history = [json.loads(line) for line in open(tmp_path / 'full' / 'history.jsonl')]
  steps = [h['step'] for h in history]
  assert steps[-1] == 200 and results['rec_error_deterministic'] > 0
  at = lambda res: [h for h in history if h.get('resolution') == res]
  # It trains: the reconstruction error falls at each resolution (first vs last logged mean).
  assert at(4)[-1]['loss_rec'] < at(4)[0]['loss_rec'], at(4)  # 4 px holds little to learn
  assert at(8)[-1]['loss_rec'] < 0.7 * at(8)[0]['loss_rec'], at(8)
  assert all(h['nonfinite'] == 0 for h in history if 'nonfinite' in h)
  fade = [h for h in at(8) if h['alpha'] < 1]
  assert fade and fade[0]['alpha'] < 0.5  # the fade-in ran, from a small blend
  pictures = os.listdir(tmp_path / 'full' / 'pictures')
  assert 'real_rec_sample_00000040.png' in pictures  # the end of the 4 px phases

  # Stopped at the last 4 px step (40), then resumed through the whole 8 px fade-in (to 80, where
  # the uninterrupted run saved a checkpoint as that phase ended; it keeps its last three, 40, 80
  # and 200): the same state, bit for bit. (Past 80 the resumed run goes on in the same process
  # as the uninterrupted one did: nothing there depends on the resume.)
  # (The same config in this process: its phases' programs are the full run's, not traced again.)
  with jax_events() as seen:
    monkeypatch.setattr(runner, 'Preemption', _stop_at(40))
    assert style_train.train_and_evaluate(config, str(tmp_path / 'split')) is None
    assert int(_state(tmp_path / 'split', config).step) == 40
    monkeypatch.setattr(runner, 'Preemption', _stop_at(80))
    assert style_train.train_and_evaluate(config, str(tmp_path / 'split')) is None
  assert seen[('jaxpr', '_fun')] == 0, seen
  full, split = _state(tmp_path / 'full', config, 80), _state(tmp_path / 'split', config)
  assert int(full.step) == int(split.step) == 80
  for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(split)):
    np.testing.assert_array_equal(a, b)

  # Sampling from the run: plain, truncated, mixed grids and an interpolation strip.
  paths = programs.sample_from_checkpoint(config, str(tmp_path / 'full'), num=4)
  assert sorted(os.path.basename(p).rsplit('_', 1)[0] for p in paths) == [
      'interpolation', 'samples', 'samples_mixed', 'samples_truncated']

  # The evaluation of two checkpoints (a notebook cell, a mode after training): the second reuses
  # the first's program, and gives its own state's numbers, the run's.
  exp, final = style_train.build(config), _state(tmp_path / 'full', config)
  earlier = style_train.evaluate(exp, _state(tmp_path / 'full', config, 80))
  with jax_events() as again:
    evaluated = style_train.evaluate(exp, final)
  assert not compiled(again), again
  assert int(final.step) == 200 and evaluated != earlier
  assert evaluated == {k: results[k] for k in evaluated}, (evaluated, results)


def test_style_config_errors_name_the_field(faces):
  from sintrovae_jax.program import config_lib  # pylint: disable=g-import-not-at-top
  for field, value, says in (('style_lod_batch', (16,), 'expected 2 entries'),
                             ('image_size', 12, 'power of two'),
                             ('style_fade_images', 10_000, 'style_fade_images'),
                             ('ema_decay', 0.999, 'own EMA')):
    with pytest.raises(config_lib.ConfigError, match=says):
      config_lib.validate(tiny_style_config(faces, **{field: value}), num_devices=1)
  with pytest.raises(config_lib.ConfigError, match='divide evenly over the 3 devices'):
    config_lib.validate(tiny_style_config(faces), num_devices=3)
  # bfloat16 compute and recomputed blocks are the style variant's options too.
  c = tiny_style_config(faces, compute_dtype='bfloat16', remat=True)
  config_lib.validate(c, num_devices=1)
  model = config_lib.create_style_model(c)
  assert model.dtype == jnp.bfloat16 and model.remat
  assert model.encoder.dtype == model.decoder.dtype == jnp.bfloat16
  for name in ('configs/ffhq256.py', 'configs/celebahq256_style.py'):
    import importlib.util  # pylint: disable=g-import-not-at-top
    spec = importlib.util.spec_from_file_location('cfg', os.path.join(ROOT, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config()
    c.data_dir = str(faces)
    config_lib.validate(c, num_devices=4)  # the shipped configs are valid on 4 devices
    phases = progressive.phases_from_config(c)
    assert phases[-1].resolution == 256 and phases[0].kind == 'vae'
