"""Soft-IntroVAE networks: the residual image decoder and the 2D MLPs (ALGORITHM.md); the image
encoder it pairs with is families/residual.py's `ImageEncoder`.

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

from sintrovae_jax.families.layers import (Dtype, Precision, torch_bias_init, torch_dense,
                                           torch_kernel_init)
# The residual blocks and the image encoder (families/residual.py) are shared with the
# translation family, whose class and content encoders are two such encoders.
from sintrovae_jax.families.residual import block_class, check_image_geometry, upsample2


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
    block = functools.partial(block_class(self.remat), dtype=self.dtype,
                              precision=self.precision, axis_name=self.axis_name)
    z = z.astype(self.dtype)
    x = nn.relu(torch_dense(self.channels[-1] * h0 * h0, z.shape[-1], self.dtype, self.precision,
                            name='fc')(z))
    x = x.reshape((z.shape[0], h0, h0, self.channels[-1]))
    for i, c in enumerate(reversed(self.channels)):
      x = upsample2(block(c, name=f'ResidualBlock_{i}')(x, train))
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
