"""The residual convolutional blocks and the image encoder (ALGORITHM.md), shared by the families
whose encoders read images: the image family (its encoder) and the translation family (its class
and content encoders are two of these).

Pure Flax linen modules; `dtype` is the compute dtype, parameters stay float32 and `(mu, logvar)`
is returned in float32. `precision` is the matmul/convolution precision (None: the backend's).
"""

import functools
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from sintrovae_jax.families.layers import (Dtype, Precision, lrelu, torch_dense,
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


def block_class(remat: bool):
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


def avg_pool2(x):
  # A pooling window. Tried on a TPU compile (docs/benchmarks.md, "Where the bytes go"): a reshape
  # and jnp.mean converts bfloat16 to float32 first, and a reshape and a sum in x's dtype (one
  # broadcast for the gradient, fewer bytes in the pooling) moves more bytes elsewhere: both
  # cost the CelebA-HQ step more than they save.
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


def upsample2(x):
  """Nearest-neighbour 2x upsampling as one broadcast (two jnp.repeat calls write a 2x
  intermediate and, in the gradient, sum in two passes)."""
  b, h, w, c = x.shape
  return jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c)).reshape(
      b, 2 * h, 2 * w, c)


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
    block = functools.partial(block_class(self.remat), dtype=self.dtype,
                              precision=self.precision, axis_name=self.axis_name)
    x = x.astype(self.dtype)
    x = nn.Conv(self.channels[0], (5, 5), use_bias=False, dtype=self.dtype,
                precision=self.precision, kernel_init=torch_kernel_init, name='conv_in')(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     dtype=self.dtype, axis_name=self.axis_name, name='bn_in')(x)
    x = avg_pool2(lrelu(x))
    for i, c in enumerate(self.channels[1:]):
      x = avg_pool2(block(c, name=f'ResidualBlock_{i}')(x, train))
    x = block(self.channels[-1], name=f'ResidualBlock_{len(self.channels) - 1}')(x, train)
    x = x.reshape((x.shape[0], -1))
    out = torch_dense(2 * self.z_dim, x.shape[-1], self.dtype, self.precision, name='fc')(x)
    mu, logvar = jnp.split(out.astype(jnp.float32), 2, axis=-1)
    return mu, logvar
