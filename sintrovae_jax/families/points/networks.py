"""The 3D point-cloud Soft-IntroVAE's networks (VARIANTS.md section 3).

Clouds are [B, N, 3] float arrays (N = 2,048 in the ShapeNet release). The encoder is the
reference's PointNet-like network, the decoder its MLP; the reconstruction error is the squared
Chamfer distance summed over the points in each direction, and the prior is N(0, sigma_p^2 I)
(sigma_p = 0.2 in the reference; `losses.kl_divergence(..., prior_std)`).
"""

from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from sintrovae_jax.families.layers import Dtype, Precision, torch_dense, torch_kernel_init

ENCODER_WIDTHS = (64, 128, 256, 256, 512)  # pointwise convolutions (models/vae.py L96-145)
DECODER_WIDTHS = (64, 128, 512, 1024)      # MLP (models/vae.py L21-47)


class PointEncoder(nn.Module):
  """x [B, N, 3] -> (mu, logvar): pointwise layers (no bias), each ReLU *then* BatchNorm, max over
  the points, Dense(256) + ReLU, and two Dense heads."""
  z_dim: int = 128
  widths: Sequence[int] = ENCODER_WIDTHS
  hidden: int = 256
  dtype: Dtype = jnp.float32
  precision: Precision = None
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x, train: bool = True) -> Tuple[jax.Array, jax.Array]:
    h = x.astype(self.dtype)
    for i, width in enumerate(self.widths):
      # A kernel-1 Conv1d is a Dense on the channel axis, applied to every point.
      h = nn.Dense(width, use_bias=False, dtype=self.dtype, precision=self.precision,
                   kernel_init=torch_kernel_init, name=f'conv_{i}')(h)
      h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                       dtype=self.dtype, axis_name=self.axis_name, name=f'bn_{i}')(nn.relu(h))
    h = jnp.max(h, axis=1)
    h = nn.relu(torch_dense(self.hidden, h.shape[-1], self.dtype, self.precision, name='fc')(h))
    mu = torch_dense(self.z_dim, self.hidden, self.dtype, self.precision, name='mu')(h)
    logvar = torch_dense(self.z_dim, self.hidden, self.dtype, self.precision, name='logvar')(h)
    return mu.astype(jnp.float32), logvar.astype(jnp.float32)


class PointDecoder(nn.Module):
  """z [B, z_dim] -> cloud [B, N, 3]: Dense + ReLU per width, a linear Dense(3 N). The reference
  reads its 3 N outputs as [3, N] (all x, then all y, then all z); so do we, then transpose."""
  num_points: int = 2048
  widths: Sequence[int] = DECODER_WIDTHS
  dtype: Dtype = jnp.float32
  precision: Precision = None
  axis_name: Optional[str] = None  # unused (no BatchNorm); kept so every network clones alike

  @nn.compact
  def __call__(self, z, train: bool = True) -> jax.Array:
    h = z.astype(self.dtype)
    for i, width in enumerate(self.widths):
      h = nn.relu(torch_dense(width, h.shape[-1], self.dtype, self.precision, name=f'fc_{i}')(h))
    out = torch_dense(3 * self.num_points, h.shape[-1], self.dtype, self.precision,
                      name='fc_out')(h)
    return out.reshape((z.shape[0], 3, self.num_points)).transpose(0, 2, 1).astype(jnp.float32)
