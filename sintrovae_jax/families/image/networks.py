"""Soft-IntroVAE networks: the residual image encoder/decoder and the 2D MLPs (ALGORITHM.md).

Pure Flax linen modules: parameters and BatchNorm statistics live in the variables passed to
`apply`, never in the module. `dtype` is the compute dtype (float32 or bfloat16); parameters are
always float32, and the encoder's `(mu, logvar)` and the decoder's output are returned in float32
so that every loss term is computed in float32. `precision` is the matmul/convolution precision
(`jax.lax.Precision` or None for the backend's default, which is TF32 for float32 on recent NVIDIA
GPUs and one bf16 pass on TPUs; HIGHEST is full float32 everywhere).
"""

import functools
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from sintrovae_jax.families.layers import (Dtype, Precision, lrelu, torch_bias_init, torch_dense,
                                           torch_kernel_init)


class ResidualBlock(nn.Module):
  """`lrelu(BN(conv3x3(lrelu(BN(conv3x3(x))))) + skip)`, skip a 1x1 conv when channels change."""
  features: int
  dtype: Dtype = jnp.float32
  precision: Precision = None
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                             precision=self.precision, kernel_init=torch_kernel_init)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype, axis_name=self.axis_name)
    skip = x
    if x.shape[-1] != self.features:
      skip = conv(self.features, (1, 1), name='conv_expand')(x)
    h = lrelu(norm(name='bn1')(conv(self.features, (3, 3), name='conv1')(x)))
    h = norm(name='bn2')(conv(self.features, (3, 3), name='conv2')(h))
    return lrelu(h + skip)


def _block_class(remat: bool):
  """ResidualBlock, or its rematerialised form (activations recomputed for the gradient).

  Callers name the blocks explicitly, so that both forms hold the same variable tree and a
  checkpoint loads into either.
  """
  # static_argnums counts the module as 0: `train` (argument 2) is a Python bool.
  return nn.remat(ResidualBlock, static_argnums=(2,)) if remat else ResidualBlock


def check_image_geometry(image_size: int, channels: Sequence[int]) -> int:
  """Returns the decoder's start size `image_size / 2**len(channels)`, or raises if not whole."""
  factor = 2 ** len(channels)
  if image_size % factor:
    raise ValueError(
        f'image_size={image_size} cannot be halved {len(channels)} times (once per entry of '
        f'channels={tuple(channels)}) down to a whole number: it must be a multiple of {factor}. '
        f'Use fewer channel entries or an image_size that is a multiple of {factor}.')
  return image_size // factor


def _avg_pool2(x):
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


def _upsample2(x):
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class ImageEncoder(nn.Module):
  """x [B, H, W, C] in [0, 1] -> (mu, logvar), each [B, z_dim] float32."""
  channels: Sequence[int]
  z_dim: int
  dtype: Dtype = jnp.float32
  precision: Precision = None
  axis_name: Optional[str] = None
  remat: bool = False  # recompute residual blocks in the backward pass: less memory, more FLOPs

  @nn.compact
  def __call__(self, x, train: bool = True) -> Tuple[jax.Array, jax.Array]:
    check_image_geometry(x.shape[1], self.channels)
    block = functools.partial(_block_class(self.remat), dtype=self.dtype,
                              precision=self.precision, axis_name=self.axis_name)
    x = x.astype(self.dtype)
    x = nn.Conv(self.channels[0], (5, 5), use_bias=False, dtype=self.dtype,
                precision=self.precision, kernel_init=torch_kernel_init, name='conv_in')(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     dtype=self.dtype, axis_name=self.axis_name, name='bn_in')(x)
    x = _avg_pool2(lrelu(x))
    for i, c in enumerate(self.channels[1:]):
      x = _avg_pool2(block(c, name=f'ResidualBlock_{i}')(x, train))
    x = block(self.channels[-1], name=f'ResidualBlock_{len(self.channels) - 1}')(x, train)
    x = x.reshape((x.shape[0], -1))
    out = torch_dense(2 * self.z_dim, x.shape[-1], self.dtype, self.precision, name='fc')(x)
    mu, logvar = jnp.split(out.astype(jnp.float32), 2, axis=-1)
    return mu, logvar


class ImageDecoder(nn.Module):
  """z [B, z_dim] -> x_hat [B, H, W, C] float32, linear output (no squashing)."""
  channels: Sequence[int]
  image_size: int
  out_channels: int
  dtype: Dtype = jnp.float32
  precision: Precision = None
  axis_name: Optional[str] = None
  remat: bool = False  # recompute residual blocks in the backward pass: less memory, more FLOPs

  @nn.compact
  def __call__(self, z, train: bool = True) -> jax.Array:
    h0 = check_image_geometry(self.image_size, self.channels)
    block = functools.partial(_block_class(self.remat), dtype=self.dtype,
                              precision=self.precision, axis_name=self.axis_name)
    z = z.astype(self.dtype)
    x = nn.relu(torch_dense(self.channels[-1] * h0 * h0, z.shape[-1], self.dtype, self.precision,
                            name='fc')(z))
    x = x.reshape((z.shape[0], h0, h0, self.channels[-1]))
    for i, c in enumerate(reversed(self.channels)):
      x = _upsample2(block(c, name=f'ResidualBlock_{i}')(x, train))
    x = block(self.channels[0], name=f'ResidualBlock_{len(self.channels)}')(x, train)
    x = nn.Conv(self.out_channels, (5, 5), dtype=self.dtype, precision=self.precision,
                kernel_init=torch_kernel_init, bias_init=torch_bias_init(25 * self.channels[0]),
                name='conv_out')(x)
    return x.astype(jnp.float32)


class MLPEncoder(nn.Module):
  """x [B, D] -> (mu, logvar): Dense+ReLU per hidden width, then Dense(2 z_dim). No BatchNorm."""
  hidden: Sequence[int]
  z_dim: int
  dtype: Dtype = jnp.float32
  precision: Precision = None
  axis_name: Optional[str] = None  # unused (no BatchNorm); kept so every network clones alike

  @nn.compact
  def __call__(self, x, train: bool = True) -> Tuple[jax.Array, jax.Array]:
    x = x.astype(self.dtype)
    for width in self.hidden:
      x = nn.relu(torch_dense(width, x.shape[-1], self.dtype, self.precision)(x))
    out = torch_dense(2 * self.z_dim, x.shape[-1], self.dtype, self.precision)(x)
    mu, logvar = jnp.split(out.astype(jnp.float32), 2, axis=-1)
    return mu, logvar


class MLPDecoder(nn.Module):
  """z [B, z_dim] -> x_hat [B, D]: Dense+ReLU per hidden width, then a linear Dense(D)."""
  hidden: Sequence[int]
  out_dim: int
  dtype: Dtype = jnp.float32
  precision: Precision = None
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, z, train: bool = True) -> jax.Array:
    x = z.astype(self.dtype)
    for width in self.hidden:
      x = nn.relu(torch_dense(width, x.shape[-1], self.dtype, self.precision)(x))
    return torch_dense(self.out_dim, x.shape[-1], self.dtype,
                       self.precision)(x).astype(jnp.float32)
