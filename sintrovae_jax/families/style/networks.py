"""The style-based (ALAE) networks of the style Soft-IntroVAE (VARIANTS.md 1.1-1.5), in NHWC.

Four Flax modules: `StyleEncoder` (image -> one latent-size vector, the sum of per-block styles),
`MappingToLatent` (-> mu, logvar), `MappingFromLatent` (z -> w) and `StyleDecoder` (styles ->
image), built from the equalised layers of style/layers.py. Every network holds all its
resolutions; a call takes the level of detail `lod` (0 = 4 px, static) and, while a new resolution
fades in, the blend factor `alpha` (None = no fade).

Noise inputs are drawn per example from `noise_keys` ([B] keys, one per global example, so a
batch's noise does not depend on how it is split over devices); `noise_keys=None` replaces the
noise by the reference's deterministic `noise=False` term. All of them, block 0's first too: the
reference draws that one with the shape of its input, the learned constant [1, C, 4, 4], so one
[1, 1, 4, 4] map is shared by the whole batch. Each image's noise has the same distribution
either way (per-image quality and FID are unaffected); ours stays a function of each example's
own key, so a batch's noise is the same on N devices as on 1.

`dtype` is the compute dtype of the convolutional blocks (float32 or bfloat16, as the image
family's): parameters stay float32 and are cast where a convolution uses them; statistics
(instance norm, the encoder's per-channel styles), the style and mapping MLPs, the style sums and
the networks' outputs stay float32. In float32 every cast is the identity (the same program).
"""

import functools
import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from sintrovae_jax.families.style.layers import (EqualConv, EqualDense, blur, channel_stats,
                                                 downscale2d, instance_norm, lrelu, noise_maps,
                                                 pixel_norm, plain_param, style_mod, upscale2d)


class DecodeBlock(nn.Module):
  """VARIANTS.md 1.4: (up-sample, conv_1, blur,) noise, bias, LReLU, IN, style; conv_2, noise,
  bias, LReLU, IN, style."""
  features: int
  layer: int
  first: bool
  fused: bool
  precision: Optional[jax.lax.Precision] = None
  dtype: Any = jnp.float32

  def _noise(self, x, weight, noise_keys, which: int):
    if noise_keys is None:  # the reference's noise=False
      s = math.sqrt(self.layer + 1)
      return x + s * jnp.exp(-x * x / (2.0 * s * s)) / math.sqrt(2.0 * math.pi) * 0.8
    return x + weight.astype(x.dtype) * noise_maps(noise_keys, 2 * self.layer + which,
                                                    x.shape[1:3], x.dtype)

  @nn.compact
  def __call__(self, x, s1, s2, noise_keys):
    c = self.features
    conv = functools.partial(EqualConv, use_bias=False, precision=self.precision,
                             dtype=self.dtype)
    if not self.first:
      if self.fused:
        x = conv(c, mode='up', name='conv_1')(x)
      else:
        x = conv(c, name='conv_1')(upscale2d(x))
      x = blur(x)
    x = x.astype(self.dtype)  # block 0's input is the float32 constant
    x = self._noise(x, plain_param(self, 'noise_weight_1', (c,)), noise_keys, 0)
    x = lrelu(x + plain_param(self, 'bias_1', (c,)).astype(x.dtype))
    x = instance_norm(x, 1e-8)
    x = style_mod(x, EqualDense(2 * c, gain=1.0, precision=self.precision, name='style_1')(s1))
    x = conv(c, name='conv_2')(x)
    x = self._noise(x, plain_param(self, 'noise_weight_2', (c,)), noise_keys, 1)
    x = lrelu(x + plain_param(self, 'bias_2', (c,)).astype(x.dtype))
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
  dtype: Any = jnp.float32  # compute dtype of the blocks; the images come out in float32

  @nn.compact
  def __call__(self, styles, lod: int, alpha=None, noise_keys=None):
    chans = decoder_channels(self.layer_count, self.start_channels, self.max_channels)
    block = nn.remat(DecodeBlock) if self.remat else DecodeBlock  # same parameters either way
    blocks = [block(chans[i], i, i == 0, decoder_block_fused(i, self.fused_from),
                    self.precision, self.dtype, name=f'decode_block_{i}')
              for i in range(self.layer_count)]
    rgb = [EqualConv(self.image_channels, 1, gain=0.03, precision=self.precision,
                     dtype=self.dtype, name=f'to_rgb_{i}') for i in range(self.layer_count)]
    to_rgb = [lambda h, layer=layer: layer(h).astype(jnp.float32) for layer in rgb]
    const = plain_param(self, 'const', (1, 4, 4, chans[0]), nn.initializers.ones)
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
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c_in = x.shape[-1]
    conv = functools.partial(EqualConv, use_bias=False, precision=self.precision,
                             dtype=self.dtype)
    x = conv(c_in, name='conv_1')(x)
    x = lrelu(x + plain_param(self, 'bias_1', (c_in,)).astype(x.dtype))
    stats1 = channel_stats(x)
    x = blur(instance_norm(x, 1e-5))
    if self.fused:
      x = conv(self.features, mode='down', name='conv_2')(x)
    else:
      x = downscale2d(conv(self.features, name='conv_2')(x))
    x = lrelu(x + plain_param(self, 'bias_2', (self.features,)).astype(x.dtype))
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
  dtype: Any = jnp.float32  # compute dtype of the blocks; the styles are summed in float32

  @nn.compact
  def __call__(self, x, lod: int, alpha=None):
    n = self.layer_count
    chans = encoder_channels(n, self.start_channels, self.max_channels)
    block = nn.remat(EncodeBlock) if self.remat else EncodeBlock  # same parameters either way
    blocks = [block(chans[i][1], self.latent, encoder_block_fused(i, n, self.fused_from),
                    self.precision, self.dtype, name=f'encode_block_{i}') for i in range(n)]
    from_rgb = [EqualConv(chans[i][0], 1, precision=self.precision, dtype=self.dtype,
                          name=f'from_rgb_{i}') for i in range(n)]
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
      h = (previous + alpha * (h - previous)).astype(h.dtype)
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
