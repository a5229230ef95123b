"""The style-based (ALAE) networks of the style Soft-IntroVAE (VARIANTS.md 1.1-1.5), in NHWC.

Four Flax modules: `StyleEncoder` (image -> one latent-size vector, the sum of per-block styles),
`MappingToLatent` (-> mu, logvar), `MappingFromLatent` (z -> w) and `StyleDecoder` (styles ->
image). Every network holds all its resolutions; a call takes the level of detail `lod` (0 = 4 px,
static) and, while a new resolution fades in, the blend factor `alpha` (None = no fade).

Equalised learning rate, "implicit" as in the reference (lreq.py): weights are stored at their
effective scale and used as they are; each layer records its learning-rate coefficient `c` in the
'lr_coeff' collection at initialisation, which the optimiser (style_optim.py) multiplies into
every update. Kernels are stored as the reference stores them, transposed to HWIO / [in, out]
(the fused stride-2 kernels are built from the stored 3x3 at run time), so importing its
checkpoints is a transposition (style_checkpoint.py).

Noise inputs are drawn per example from `noise_keys` ([B] keys, one per global example, so a
batch's noise does not depend on how it is split over devices); `noise_keys=None` replaces the
noise by the reference's deterministic `noise=False` term. All of them, block 0's first too: the
reference draws that one with the shape of its input, the learned constant [1, C, 4, 4], so one
[1, 1, 4, 4] map is shared by the whole batch. Each image's noise has the same distribution
either way (per-image quality and FID are unaffected); ours stays a function of each example's
own key, so a batch's noise is the same on N devices as on 1.
"""

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

SQRT2 = math.sqrt(2.0)
LR_COEFF = 'lr_coeff'


def lrelu(x):
  return nn.leaky_relu(x, negative_slope=0.2)


def pixel_norm(x, eps: float = 1e-8):
  """`x / sqrt(mean_channels(x^2) + eps)` over the last axis."""
  return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps)


def instance_norm(x, eps: float):
  """Per example and channel over H, W; no affine, biased variance (PyTorch InstanceNorm2d)."""
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + eps)


def _sqrt_or_zero(v):
  """sqrt(v), with a zero (not infinite) gradient where v == 0: the encoder's per-channel std has
  no eps in the reference, so a constant channel would otherwise give NaN gradients."""
  positive = v > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, v, 1.0)), 0.0)


def channel_stats(x):
  """[B, 2C]: per-channel spatial mean and std (biased, no eps), as the encoder's styles read."""
  mean = jnp.mean(x, axis=(1, 2))
  std = _sqrt_or_zero(jnp.mean(jnp.square(x - mean[:, None, None]), axis=(1, 2)))
  return jnp.concatenate([mean, std], axis=-1)


def style_mod(x, style):
  """`x * (1 + style[:, :C]) + style[:, C:]` per channel."""
  c = x.shape[-1]
  return x * (1.0 + style[:, None, None, :c]) + style[:, None, None, c:]


def upscale2d(x):
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def downscale2d(x):
  b, h, w, c = x.shape
  return jnp.mean(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


def blur(x):
  """Depthwise 3x3 `[1,2,1]^T [1,2,1] / 16`, padding 1 (the reference's fixed `blur.weight`)."""
  f = np.array([1.0, 2.0, 1.0], np.float32)
  k = np.outer(f, f) / 16.0
  c = x.shape[-1]
  kernel = jnp.asarray(np.tile(k[:, :, None, None], (1, 1, 1, c)), x.dtype)
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                      feature_group_count=c, precision=jax.lax.Precision.HIGHEST)


def fused_kernel(k3):
  """The reference's `transform_kernel`: the stored 3x3 kernel zero-padded to 5x5 and its four
  one-pixel shifts summed, a 4x4 kernel (HWIO)."""
  w = jnp.pad(k3, ((1, 1), (1, 1), (0, 0), (0, 0)))
  return w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]


def _conv(x, kernel, stride: int, padding: int, precision, lhs_dilation: int = 1):
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), ((padding, padding),) * 2,
                                      lhs_dilation=(lhs_dilation,) * 2,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                      precision=precision)


def _normal(std: float):
  return nn.initializers.normal(stddev=std)


class EqualDense(nn.Module):
  """Equalised Linear: kernel [in, out] ~ N(0, (gain/sqrt(in))^2), bias 0; lr coefficients
  `gain * lrmul / sqrt(in)` (kernel) and `lrmul` (bias)."""
  features: int
  gain: float = SQRT2
  lrmul: float = 1.0
  precision: Optional[jax.lax.Precision] = None

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1]
    std = self.gain / math.sqrt(fan_in)
    kernel = self.param('kernel', _normal(std), (fan_in, self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    if self.is_initializing():
      self.variable(LR_COEFF, 'kernel', lambda: jnp.float32(std * self.lrmul))
      self.variable(LR_COEFF, 'bias', lambda: jnp.float32(self.lrmul))
    return jnp.dot(x, kernel, precision=self.precision) + bias


class EqualConv(nn.Module):
  """Equalised k x k convolution (kernel HWIO ~ N(0, (gain/sqrt(k^2 in))^2), lr coefficient
  `gain/sqrt(k^2 in)`; bias coefficient 1).

  mode: 'same' (stride 1, padding k//2), 'down' (the fused 4x4 stride-2 kernel, x0.25) or 'up'
  (the fused 4x4 transposed convolution, stride 2; the kernel is stored as PyTorch's
  ConvTranspose2d weight [in, out, 3, 3], transposed to [3, 3, in, out]).
  """
  features: int
  kernel_size: int = 3
  mode: str = 'same'
  use_bias: bool = True
  gain: float = SQRT2
  precision: Optional[jax.lax.Precision] = None

  @nn.compact
  def __call__(self, x):
    k, fan_in = self.kernel_size, self.kernel_size ** 2 * x.shape[-1]
    std = self.gain / math.sqrt(fan_in)
    kernel = self.param('kernel', _normal(std), (k, k, x.shape[-1], self.features))
    if self.is_initializing():
      self.variable(LR_COEFF, 'kernel', lambda: jnp.float32(std))
    if self.mode == 'same':
      y = _conv(x, kernel, 1, k // 2, self.precision)
    elif self.mode == 'down':
      y = _conv(x, fused_kernel(kernel) * 0.25, 2, 1, self.precision)
    elif self.mode == 'up':
      # PyTorch's conv_transpose2d(stride 2, padding 1) = a convolution of the 2x-dilated input
      # with the spatially flipped kernel, padded by 4 - 1 - 1 = 2.
      y = _conv(x, fused_kernel(kernel)[::-1, ::-1], 1, 2, self.precision, lhs_dilation=2)
    else:
      raise ValueError(f'mode={self.mode!r}')
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,))
      if self.is_initializing():
        self.variable(LR_COEFF, 'bias', lambda: jnp.float32(1.0))
    return y


def _plain_param(module: nn.Module, name: str, shape, init=nn.initializers.zeros):
  """A parameter with learning-rate coefficient 1 (const, biases, noise weights)."""
  value = module.param(name, init, shape)
  if module.is_initializing():
    module.variable(LR_COEFF, name, lambda: jnp.float32(1.0))
  return value


def _noise_maps(noise_keys, which: int, shape):
  """[B, H, W, 1] standard normals, example i's from its own key (folded with `which`)."""
  return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, which), shape + (1,)))(
      noise_keys)


class DecodeBlock(nn.Module):
  """VARIANTS.md 1.4: (up-sample, conv_1, blur,) noise, bias, LReLU, IN, style; conv_2, noise,
  bias, LReLU, IN, style."""
  features: int
  layer: int
  first: bool
  fused: bool
  precision: Optional[jax.lax.Precision] = None

  def _noise(self, x, weight, noise_keys, which: int):
    if noise_keys is None:  # the reference's noise=False
      s = math.sqrt(self.layer + 1)
      return x + s * jnp.exp(-x * x / (2.0 * s * s)) / math.sqrt(2.0 * math.pi) * 0.8
    return x + weight * _noise_maps(noise_keys, 2 * self.layer + which, x.shape[1:3])

  @nn.compact
  def __call__(self, x, s1, s2, noise_keys):
    c = self.features
    if not self.first:
      if self.fused:
        x = EqualConv(c, mode='up', use_bias=False, precision=self.precision, name='conv_1')(x)
      else:
        x = EqualConv(c, use_bias=False, precision=self.precision, name='conv_1')(upscale2d(x))
      x = blur(x)
    x = self._noise(x, _plain_param(self, 'noise_weight_1', (c,)), noise_keys, 0)
    x = lrelu(x + _plain_param(self, 'bias_1', (c,)))
    x = instance_norm(x, 1e-8)
    x = style_mod(x, EqualDense(2 * c, gain=1.0, precision=self.precision, name='style_1')(s1))
    x = EqualConv(c, use_bias=False, precision=self.precision, name='conv_2')(x)
    x = self._noise(x, _plain_param(self, 'noise_weight_2', (c,)), noise_keys, 1)
    x = lrelu(x + _plain_param(self, 'bias_2', (c,)))
    x = instance_norm(x, 1e-8)
    return style_mod(x, EqualDense(2 * c, gain=1.0, precision=self.precision, name='style_2')(s2))


def decoder_block_fused(block: int, fused_from: int) -> bool:
  """Whether decoder block `block` (output 2^(block+2) px) up-samples with the fused transposed
  convolution (the reference: from 128 px on)."""
  return 2 ** (block + 2) >= fused_from


def encoder_block_fused(block: int, layer_count: int, fused_from: int) -> bool:
  """Whether encoder block `block` (input 2^(layer_count+1-block) px) down-samples with the fused
  stride-2 convolution (the reference: from 128 px on)."""
  return 2 ** (layer_count + 1 - block) >= fused_from


def decoder_channels(layer_count: int, start: int, maximum: int):
  """Output channels of decoder block i: `min(maximum, start * 2^(layer_count - 1 - i))`."""
  return [min(maximum, start * 2 ** (layer_count - 1 - i)) for i in range(layer_count)]


def encoder_channels(layer_count: int, start: int, maximum: int):
  """(input, output) channels of encoder block i: `min(maximum, start * 2^i)`, doubled."""
  return [(min(maximum, start * 2 ** i), min(maximum, start * 2 ** (i + 1)))
          for i in range(layer_count)]


class StyleDecoder(nn.Module):
  """The generator: learned 4x4 constant, `layer_count` blocks (4 .. 2^(layer_count+1) px), one
  to_rgb (1x1, gain 0.03) per resolution. `styles`: [B, 2 layer_count, latent]."""
  layer_count: int
  start_channels: int = 64
  max_channels: int = 512
  image_channels: int = 3
  fused_from: int = 128  # fused transposed convolutions from this output resolution on
  precision: Optional[jax.lax.Precision] = None
  remat: bool = False  # recompute each block in the backward pass: less memory, more FLOPs

  @nn.compact
  def __call__(self, styles, lod: int, alpha=None, noise_keys=None):
    chans = decoder_channels(self.layer_count, self.start_channels, self.max_channels)
    block = nn.remat(DecodeBlock) if self.remat else DecodeBlock  # same parameters either way
    blocks = [block(chans[i], i, i == 0, decoder_block_fused(i, self.fused_from),
                    self.precision, name=f'decode_block_{i}')
              for i in range(self.layer_count)]
    to_rgb = [EqualConv(self.image_channels, 1, gain=0.03, precision=self.precision,
                        name=f'to_rgb_{i}') for i in range(self.layer_count)]
    const = _plain_param(self, 'const', (1, 4, 4, chans[0]), nn.initializers.ones)
    x = jnp.broadcast_to(const, (styles.shape[0],) + const.shape[1:])
    if self.is_initializing():  # create every resolution's parameters
      y = x
      for i in range(self.layer_count):
        y = blocks[i](y, styles[:, 2 * i], styles[:, 2 * i + 1], noise_keys)
        to_rgb[i](y)
    for i in range(lod):
      x = blocks[i](x, styles[:, 2 * i], styles[:, 2 * i + 1], noise_keys)
    if alpha is None:
      x = blocks[lod](x, styles[:, 2 * lod], styles[:, 2 * lod + 1], noise_keys)
      return to_rgb[lod](x)
    previous = upscale2d(to_rgb[lod - 1](x))  # nearest, as F.interpolate
    x = to_rgb[lod](blocks[lod](x, styles[:, 2 * lod], styles[:, 2 * lod + 1], noise_keys))
    return previous + alpha * (x - previous)


class EncodeBlock(nn.Module):
  """VARIANTS.md 1.5: conv_1, bias, LReLU, stats1, IN, blur, conv_2 (fused, or + avg-pool), bias,
  LReLU, stats2, IN. Returns `(x, w1, w2)`, the styles of both halves."""
  features: int
  latent: int
  fused: bool
  precision: Optional[jax.lax.Precision] = None

  @nn.compact
  def __call__(self, x):
    c_in = x.shape[-1]
    x = EqualConv(c_in, use_bias=False, precision=self.precision, name='conv_1')(x)
    x = lrelu(x + _plain_param(self, 'bias_1', (c_in,)))
    stats1 = channel_stats(x)
    x = blur(instance_norm(x, 1e-5))
    if self.fused:
      x = EqualConv(self.features, mode='down', use_bias=False, precision=self.precision,
                    name='conv_2')(x)
    else:
      x = downscale2d(EqualConv(self.features, use_bias=False, precision=self.precision,
                                name='conv_2')(x))
    x = lrelu(x + _plain_param(self, 'bias_2', (self.features,)))
    stats2 = channel_stats(x)
    x = instance_norm(x, 1e-5)
    w1 = EqualDense(self.latent, precision=self.precision, name='style_1')(stats1)
    w2 = EqualDense(self.latent, precision=self.precision, name='style_2')(stats2)
    return x, w1, w2


class StyleEncoder(nn.Module):
  """The encoder (`Encoder_old`): from_rgb at the input resolution, then the blocks down to 2x2;
  returns the sum of every block's two styles, [B, latent]."""
  layer_count: int
  latent: int = 512
  start_channels: int = 64
  max_channels: int = 512
  fused_from: int = 128  # fused stride-2 convolutions from this input resolution on
  precision: Optional[jax.lax.Precision] = None
  remat: bool = False  # recompute each block in the backward pass: less memory, more FLOPs

  @nn.compact
  def __call__(self, x, lod: int, alpha=None):
    n = self.layer_count
    chans = encoder_channels(n, self.start_channels, self.max_channels)
    block = nn.remat(EncodeBlock) if self.remat else EncodeBlock  # same parameters either way
    blocks = [block(chans[i][1], self.latent, encoder_block_fused(i, n, self.fused_from),
                    self.precision, name=f'encode_block_{i}') for i in range(n)]
    from_rgb = [EqualConv(chans[i][0], 1, precision=self.precision, name=f'from_rgb_{i}')
                for i in range(n)]
    # FromRGB has its own LReLU, and the encoder applies a second one (net.py L267-277).
    rgb = lambda i, image: lrelu(lrelu(from_rgb[i](image)))
    if self.is_initializing():  # create every resolution's parameters
      for i in range(n):
        size = 2 ** (n + 1 - i)
        h = rgb(i, jnp.zeros((1, size, size, x.shape[-1]), x.dtype))
        blocks[i](h)
    first = n - lod - 1
    styles = jnp.zeros((x.shape[0], self.latent), jnp.float32)
    h, w1, w2 = blocks[first](rgb(first, x))
    if alpha is None:
      styles = styles + w1 + w2
    else:  # fade-in: the new block's styles scaled by alpha, its output blended with the old path
      styles = styles + alpha * w1 + alpha * w2
      previous = rgb(first + 1, downscale2d(x))
      h = previous + alpha * (h - previous)
    for i in range(first + 1, n):
      h, w1, w2 = blocks[i](h)
      styles = styles + w1 + w2
    return styles


class MappingToLatent(nn.Module):
  """`mapping_tl`: 3 equalised dense layers (lrmul 0.1) with LReLU after each, the last to
  2 x latent; returns `(mu, logvar)`, both LeakyReLU outputs as in the reference."""
  latent: int = 512
  layers: int = 3
  precision: Optional[jax.lax.Precision] = None

  @nn.compact
  def __call__(self, x):
    for i in range(self.layers):
      out = 2 * self.latent if i == self.layers - 1 else self.latent
      x = lrelu(EqualDense(out, lrmul=0.1, precision=self.precision, name=f'map_blocks_{i}')(x))
    return x[:, :self.latent], x[:, self.latent:]


class MappingFromLatent(nn.Module):
  """`mapping_fl`: pixel-norm, then `layers` equalised dense layers (lrmul 0.1), LReLU after each:
  z -> w, [B, latent]."""
  latent: int = 512
  layers: int = 8
  precision: Optional[jax.lax.Precision] = None

  @nn.compact
  def __call__(self, z):
    x = pixel_norm(z)
    for i in range(self.layers):
      x = lrelu(EqualDense(self.latent, lrmul=0.1, precision=self.precision,
                           name=f'map_blocks_{i}')(x))
    return x
