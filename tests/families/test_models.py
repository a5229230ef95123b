"""Network shapes, PyTorch-style initialisation, BatchNorm settings and compute dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sintrovae_jax as sv
from sintrovae_jax.families import residual


@pytest.mark.parametrize('size,channels,c', [(28, (8, 16), 1), (16, (8, 16), 3), (32, (4, 8, 8), 3)])
def test_image_networks_shapes(size, channels, c):
  """Shapes only, so traced without compiling (jax.eval_shape); other tests run the networks."""
  model = sv.SoftIntroVAE(sv.ImageEncoder(channels, 6), sv.ImageDecoder(channels, size, c))
  enc, dec, stats = jax.eval_shape(lambda key: model.init(key, (size, size, c)),
                                   jax.random.PRNGKey(0))
  x = jax.ShapeDtypeStruct((2, size, size, c), jnp.float32)
  (mu, logvar), _ = jax.eval_shape(model.encode, enc, stats['encoder'], x)
  out, _ = jax.eval_shape(model.decode, dec, stats['decoder'], mu)
  assert mu.shape == logvar.shape == (2, 6) and out.shape == (2, size, size, c)
  h0 = size // 2 ** len(channels)
  assert dec['fc']['kernel'].shape == (6, channels[-1] * h0 * h0)
  assert enc['fc']['kernel'].shape == (channels[-1] * h0 * h0, 12)


def test_size_that_channels_cannot_halve_is_a_clear_error():
  with pytest.raises(ValueError, match='multiple of 8'):
    residual.check_image_geometry(28, (64, 128, 256))
  model = sv.SoftIntroVAE(sv.ImageEncoder((8, 16, 32), 4), sv.ImageDecoder((8, 16, 32), 28, 1))
  with pytest.raises(ValueError, match='image_size=28 cannot be halved 3 times'):
    model.init(jax.random.PRNGKey(0), (28, 28, 1))


def test_pytorch_default_initialisation():
  enc = sv.MLPEncoder((512,), 2).init(jax.random.PRNGKey(0), jnp.ones((1, 300)))['params']
  kernel, bias = np.asarray(enc['Dense_0']['kernel']), np.asarray(enc['Dense_0']['bias'])
  bound = 1 / np.sqrt(300)
  assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
  np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.02)  # uniform(-b, b)
  np.testing.assert_allclose(np.abs(bias).max(), bound, rtol=0.05)
  dec = sv.ImageDecoder((8, 16), 16, 3).init(jax.random.PRNGKey(0), jnp.ones((1, 4)))['params']
  conv = np.asarray(dec['conv_out']['kernel'])  # 5 x 5 x 8 -> 3, with bias
  assert conv.shape == (5, 5, 8, 3) and np.abs(conv).max() <= 1 / np.sqrt(200)
  assert np.abs(np.asarray(dec['conv_out']['bias'])).max() <= 1 / np.sqrt(200)
  assert 'bias' not in dec['ResidualBlock_0']['conv1']  # convolutions have no bias


def test_batchnorm_uses_reference_momentum_and_epsilon():
  enc = sv.ImageEncoder((8, 16), 4)
  variables = enc.init(jax.random.PRNGKey(0), jnp.ones((1, 16, 16, 3)), train=False)
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 16, 16, 3)) * 3 + 1
  _, updates = enc.apply(variables, x, train=True, mutable=['batch_stats'])
  conv = jax.lax.conv_general_dilated(x, variables['params']['conv_in']['kernel'], (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  batch_mean = np.asarray(conv).mean(axis=(0, 1, 2))
  np.testing.assert_allclose(updates['batch_stats']['bn_in']['mean'], 0.1 * batch_mean,
                             rtol=1e-4, atol=1e-6)  # 0.9 * 0 + 0.1 * mean
  # Normalised with the batch's own statistics and eps = 1e-5 (scale 1, bias 0 at init); the
  # input is scaled so that the variance (~1e-5) makes a different epsilon visible.
  x = x * 0.002
  conv = jax.lax.conv_general_dilated(x, variables['params']['conv_in']['kernel'], (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  _, inter = enc.apply(variables, x, train=True, mutable=['batch_stats', 'intermediates'],
                       capture_intermediates=lambda mdl, _: mdl.name == 'bn_in')
  normed = np.asarray(inter['intermediates']['bn_in']['__call__'][0])
  c = np.asarray(conv, np.float64)
  want = (c - c.mean((0, 1, 2))) / np.sqrt(c.var((0, 1, 2)) + 1e-5)
  np.testing.assert_allclose(normed, want, rtol=1e-3, atol=1e-4)


def test_bfloat16_compute_keeps_float32_parameters_and_outputs():
  model = sv.SoftIntroVAE(sv.ImageEncoder((8, 16), 4, dtype=jnp.bfloat16),
                          sv.ImageDecoder((8, 16), 16, 3, dtype=jnp.bfloat16))
  # Dtypes are the programs' types: traced (jax.eval_shape, lower), nothing compiled or run.
  enc, dec, stats = jax.eval_shape(lambda key: model.init(key, (16, 16, 3)), jax.random.PRNGKey(0))
  assert {a.dtype for a in jax.tree.leaves((enc, dec, stats))} == {jnp.dtype('float32')}
  x = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)
  (mu, logvar), _ = jax.eval_shape(model.encode, enc, stats['encoder'], x)
  out, _ = jax.eval_shape(model.decode, dec, stats['decoder'], mu)
  assert mu.dtype == logvar.dtype == out.dtype == jnp.float32
  hlo = jax.jit(lambda p, s, x: model.encode(p, s, x)[0]).lower(enc, stats['encoder'],
                                                                x).as_text()
  assert 'bf16' in hlo  # the convolutions really run in bfloat16



def _highest(model, shape):
  """For each matmul and convolution of one encode + decode of `model`: full float32 or not."""
  enc, dec, stats = model.init(jax.random.PRNGKey(0), shape)

  def run(enc, dec, x):
    (mu, _), _ = model.encode(enc, stats['encoder'], x)
    return model.decode(dec, stats['decoder'], mu)[0]

  text = jax.jit(run).lower(enc, dec, jnp.ones((2,) + shape)).as_text()
  ops = [line for line in text.splitlines()
         if 'stablehlo.dot_general' in line or 'stablehlo.convolution' in line]
  assert len(ops) >= 4
  return [line.count('HIGHEST') == 2 for line in ops]


@pytest.mark.parametrize('dataset', ['toy2d', 'image'])
def test_matmul_precision_reaches_every_matmul_and_convolution(dataset):
  from configs import cifar10, toy2d  # pylint: disable=g-import-not-at-top
  from sintrovae_jax.program import config_lib  # pylint: disable=g-import-not-at-top
  config = toy2d.get_config('8gaussians') if dataset == 'toy2d' else cifar10.get_config()
  config.channels, config.z_dim, config.mlp_hidden = (8, 16), 4, (16, 16)
  shape = (2,) if dataset == 'toy2d' else (16, 16, 3)
  # The 2D config asks for full float32 (the reference's Linear layers); images the default.
  highest = _highest(config_lib.create_model(config, shape), shape)
  assert all(highest) if dataset == 'toy2d' else not any(highest)
  config.matmul_precision = 'highest'
  assert all(_highest(config_lib.create_model(config, shape), shape))
  config.matmul_precision = 'default'
  assert not any(_highest(config_lib.create_model(config, shape), shape))


def test_remat_keeps_variables_values_and_gradients():
  """Rematerialised residual blocks: same variable tree, same outputs, statistics and gradients."""
  plain = sv.SoftIntroVAE(sv.ImageEncoder((8, 16), 4), sv.ImageDecoder((8, 16), 16, 3))
  remat = sv.SoftIntroVAE(sv.ImageEncoder((8, 16), 4, remat=True),
                          sv.ImageDecoder((8, 16), 16, 3, remat=True))
  variables = plain.init(jax.random.PRNGKey(0), (16, 16, 3))
  assert (jax.tree.structure(variables)
          == jax.tree.structure(remat.init(jax.random.PRNGKey(0), (16, 16, 3))))
  enc, dec, stats = variables
  x = jax.random.uniform(jax.random.PRNGKey(1), (4, 16, 16, 3))

  def loss(model, enc, dec):
    (mu, logvar), enc_stats = model.encode(enc, stats['encoder'], x)
    out, dec_stats = model.decode(dec, stats['decoder'], mu + jnp.exp(0.5 * logvar))
    return jnp.sum((out - x) ** 2), (enc_stats, dec_stats)

  results = [jax.value_and_grad(lambda e, d, m=m: loss(m, e, d), argnums=(0, 1), has_aux=True)(
      enc, dec) for m in (plain, remat)]
  for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
    # Recomputation may reorder float32 sums: equal to rounding, relative to the leaf's scale.
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(a).max())))
  grad_fn = jax.grad(lambda e, d: loss(remat, e, d)[0])
  assert 'remat' in str(jax.make_jaxpr(grad_fn)(enc, dec))  # the blocks really are recomputed
  assert 'remat' not in str(jax.make_jaxpr(jax.grad(lambda e, d: loss(plain, e, d)[0]))(enc, dec))
