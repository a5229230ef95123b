"""The style variant's layers (VARIANTS.md 1.2-1.5): equalised dense and convolution layers, and
the fixed operations its blocks use (LeakyReLU, pixel and instance norm, per-channel statistics,
style modulation, 2x up/down-sampling, blur, noise maps), in NHWC.

Equalised learning rate, "implicit" as in the reference (lreq.py): weights are stored at their
effective scale and used as they are; each layer records its learning-rate coefficient `c` in the
'lr_coeff' collection at initialisation, which the optimiser (style/optim.py) multiplies into
every update. Kernels are stored as the reference stores them, transposed to HWIO / [in, out]
(the fused stride-2 kernels are built from the stored 3x3 at run time), so importing its
checkpoints is a transposition (interop/style_checkpoint.py).

`dtype` (EqualConv) is the compute dtype of the convolutions (float32 or bfloat16): kernels stay
float32 and are cast where used; statistics are computed in float32. In float32 every cast is the
identity (the same program).
"""

import math
from typing import Any, Optional

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
  """Per example and channel over H, W; no affine, biased variance (PyTorch InstanceNorm2d).
  Computed in float32, returned in x's dtype."""
  dtype, x = x.dtype, x.astype(jnp.float32)
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
  return ((x - mean) * jax.lax.rsqrt(var + eps)).astype(dtype)


def _sqrt_or_zero(v):
  """sqrt(v), with a zero (not infinite) gradient where v == 0: the encoder's per-channel std has
  no eps in the reference, so a constant channel would otherwise give NaN gradients."""
  positive = v > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, v, 1.0)), 0.0)


def channel_stats(x):
  """[B, 2C] float32: per-channel spatial mean and std (biased, no eps), as the encoder's styles
  read."""
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axis=(1, 2))
  std = _sqrt_or_zero(jnp.mean(jnp.square(x - mean[:, None, None]), axis=(1, 2)))
  return jnp.concatenate([mean, std], axis=-1)


def style_mod(x, style):
  """`x * (1 + style[:, :C]) + style[:, C:]` per channel, in x's dtype."""
  c, style = x.shape[-1], style.astype(x.dtype)
  return x * (1.0 + style[:, None, None, :c]) + style[:, None, None, c:]


def upscale2d(x):
  """Nearest 2x upsampling as one broadcast (not two jnp.repeat: no 2x intermediate)."""
  b, h, w, c = x.shape
  return jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c)).reshape(
      b, 2 * h, 2 * w, c)


def downscale2d(x):
  """2x2 mean (in float32, as jnp.mean of bfloat16 does), returned in x's dtype."""
  b, h, w, c = x.shape
  return jnp.mean(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4)).astype(x.dtype)


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
  dtype: Any = jnp.float32  # compute dtype; the kernel is stored in float32

  @nn.compact
  def __call__(self, x):
    x = x.astype(self.dtype)
    k, fan_in = self.kernel_size, self.kernel_size ** 2 * x.shape[-1]
    std = self.gain / math.sqrt(fan_in)
    kernel = self.param('kernel', _normal(std), (k, k, x.shape[-1], self.features))
    if self.is_initializing():
      self.variable(LR_COEFF, 'kernel', lambda: jnp.float32(std))
    cast = lambda w: w.astype(self.dtype)  # after the fused kernel's sums, which stay float32
    if self.mode == 'same':
      y = _conv(x, cast(kernel), 1, k // 2, self.precision)
    elif self.mode == 'down':
      y = _conv(x, cast(fused_kernel(kernel) * 0.25), 2, 1, self.precision)
    elif self.mode == 'up':
      # PyTorch's conv_transpose2d(stride 2, padding 1) = a convolution of the 2x-dilated input
      # with the spatially flipped kernel, padded by 4 - 1 - 1 = 2.
      y = _conv(x, cast(fused_kernel(kernel)[::-1, ::-1]), 1, 2, self.precision,
                lhs_dilation=2)
    else:
      raise ValueError(f'mode={self.mode!r}')
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,)).astype(self.dtype)
      if self.is_initializing():
        self.variable(LR_COEFF, 'bias', lambda: jnp.float32(1.0))
    return y


def plain_param(module: nn.Module, name: str, shape, init=nn.initializers.zeros):
  """A parameter with learning-rate coefficient 1 (const, biases, noise weights)."""
  value = module.param(name, init, shape)
  if module.is_initializing():
    module.variable(LR_COEFF, name, lambda: jnp.float32(1.0))
  return value


def noise_maps(noise_keys, which: int, shape, dtype):
  """[B, H, W, 1] standard normals, example i's from its own key (folded with `which`), drawn in
  float32 (the same draws in any compute dtype) and cast to `dtype`."""
  return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, which), shape + (1,)))(
      noise_keys).astype(dtype)
