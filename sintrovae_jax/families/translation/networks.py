"""The two-encoder networks of unsupervised image translation (LORD's design; docs/translation.md).

The code is one vector `z = [z_class, z_content]`: a class encoder and a content encoder (two
residual image encoders, families/residual.py) each give half of its posterior, so that the
Soft-IntroVAE step treats them as one encoder `E(x) -> (mu, logvar)` over the joint code. The
generator takes the content code as its input and the class code as the modulation of every
layer (adaptive instance normalisation), so that class sets each feature map's statistics and
content its spatial layout: swapping codes between images translates them.
"""

import functools
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from sintrovae_jax.core.vae import SoftIntroVAE
from sintrovae_jax.families.layers import (Dtype, Precision, lrelu, torch_bias_init, torch_dense,
                                           torch_kernel_init)
from sintrovae_jax.families.residual import ImageEncoder, check_image_geometry, upsample2

ADAIN_EPS = 1e-5


def adain(x: jax.Array, gamma: jax.Array, beta: jax.Array, eps: float = ADAIN_EPS) -> jax.Array:
  """Adaptive instance normalisation: each example's channels [B, H, W, C] normalised over H and
  W (mean 0, biased variance 1, as PyTorch's InstanceNorm), then scaled by gamma [B, C] and
  shifted by beta [B, C]. The statistics are computed in float32 whatever x's dtype."""
  h = x.astype(jnp.float32)
  mean = jnp.mean(h, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(h - mean), axis=(1, 2), keepdims=True)
  out = (h - mean) * jax.lax.rsqrt(var + eps)
  return (gamma[:, None, None, :] * out + beta[:, None, None, :]).astype(x.dtype)


class TranslationEncoder(nn.Module):
  """x [B, H, W, C] -> (mu, logvar), each [B, class_dim + content_dim] float32: the class
  encoder's posterior first, the content encoder's second (one joint posterior)."""
  channels: Sequence[int]
  class_dim: int
  content_dim: int
  dtype: Dtype = jnp.float32
  precision: Precision = None
  axis_name: Optional[str] = None
  remat: bool = False

  @property
  def z_dim(self) -> int:
    return self.class_dim + self.content_dim

  @nn.compact
  def __call__(self, x, train: bool = True) -> Tuple[jax.Array, jax.Array]:
    encoder = functools.partial(ImageEncoder, self.channels, dtype=self.dtype,
                                precision=self.precision, axis_name=self.axis_name,
                                remat=self.remat)
    mu_c, logvar_c = encoder(self.class_dim, name='class_encoder')(x, train)
    mu_n, logvar_n = encoder(self.content_dim, name='content_encoder')(x, train)
    return jnp.concatenate([mu_c, mu_n], -1), jnp.concatenate([logvar_c, logvar_n], -1)


class AdaINGenerator(nn.Module):
  """z = [z_class, z_content] [B, class_dim + content_dim] -> x_hat [B, H, W, C] float32.

  The content code starts the image: Dense -> lrelu -> [h0, h0, channels[0]] with
  h0 = image_size / 2**len(channels). Then per entry c of `channels`: upsample x2, conv3x3 to c
  (no bias: AdaIN removes it), AdaIN with (1 + gamma, beta) = Dense(2c)(m), lrelu; m is the class
  code through `modulation_layers` Dense(modulation_width)+lrelu layers. Last, a 5x5 convolution
  to the image's channels, linear (the library's decoders do not squash; 'bce' adds the sigmoid
  in the loss). No BatchNorm: `axis_name` is accepted so every network clones alike.
  """
  class_dim: int
  channels: Sequence[int]
  image_size: int
  out_channels: int
  modulation_layers: int = 2
  modulation_width: int = 256
  dtype: Dtype = jnp.float32
  precision: Precision = None
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, z, train: bool = True) -> jax.Array:
    h0 = check_image_geometry(self.image_size, self.channels)
    dense = functools.partial(torch_dense, dtype=self.dtype, precision=self.precision)
    z = z.astype(self.dtype)
    m, content = z[:, :self.class_dim], z[:, self.class_dim:]
    for i in range(self.modulation_layers):
      m = lrelu(dense(self.modulation_width, m.shape[-1], name=f'modulation_{i}')(m))
    c0 = self.channels[0]
    x = lrelu(dense(h0 * h0 * c0, content.shape[-1], name='fc')(content))
    x = x.reshape((z.shape[0], h0, h0, c0))
    for i, c in enumerate(self.channels):
      x = nn.Conv(c, (3, 3), use_bias=False, dtype=self.dtype, precision=self.precision,
                  kernel_init=torch_kernel_init, name=f'conv_{i}')(upsample2(x))
      gamma, beta = jnp.split(dense(2 * c, m.shape[-1], name=f'adain_{i}')(m), 2, axis=-1)
      x = lrelu(adain(x, 1.0 + gamma, beta))
    x = nn.Conv(self.out_channels, (5, 5), dtype=self.dtype, precision=self.precision,
                kernel_init=torch_kernel_init, bias_init=torch_bias_init(25 * self.channels[-1]),
                name='conv_out')(x)
    return x.astype(jnp.float32)


def translation_vae(channels: Sequence[int], class_dim: int, content_dim: int,
                    generator_channels: Sequence[int], image_size: int, image_channels: int,
                    modulation_layers: int = 2, modulation_width: int = 256, remat: bool = False,
                    **kw) -> SoftIntroVAE:
  """The family's SoftIntroVAE: TranslationEncoder and AdaINGenerator (`kw`: dtype, precision)."""
  return SoftIntroVAE(
      TranslationEncoder(tuple(channels), class_dim, content_dim, remat=remat, **kw),
      AdaINGenerator(class_dim, tuple(generator_channels), image_size, image_channels,
                     modulation_layers, modulation_width, **kw))
