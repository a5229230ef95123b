"""The 3D point-cloud Soft-IntroVAE's networks and loss terms (VARIANTS.md section 3).

Clouds are [B, N, 3] float arrays (N = 2,048 in the ShapeNet release). The encoder is the
reference's PointNet-like network, the decoder its MLP; the reconstruction error is the squared
Chamfer distance summed over the points in each direction, and the prior is N(0, sigma_p^2 I)
(sigma_p = 0.2 in the reference; `losses.kl_divergence(..., prior_std)`).
"""

from typing import Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sintrovae_jax import torch_archive
from sintrovae_jax.models import Dtype, Precision, torch_dense, torch_kernel_init

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


def chamfer_distance(a: jax.Array, b: jax.Array, chunk: int = 256) -> jax.Array:
  """Per-cloud squared Chamfer distance `sum_b min_a |a-b|^2 + sum_a min_b |a-b|^2`: [B].

  The reference's reconstruction error (VARIANTS.md 3.3): squared distances, summed over the
  points in each direction. `a` [B, N, 3], `b` [B, M, 3].
  """
  a_to_b, b_to_a = chamfer_terms(a, b, chunk)
  return a_to_b + b_to_a


def chamfer_terms(a: jax.Array, b: jax.Array, chunk: int = 256,
                  direct: bool = False) -> Tuple[jax.Array, jax.Array]:
  """`(sum_a min_b |a-b|^2, sum_b min_a |a-b|^2)`, each [B].

  Distances are `|a|^2 + |b|^2 - 2 a.b` (as the reference's loss computes them, rounding and
  all: up to ~1e-7 either side of 0 where points coincide), the dot product at full float32
  precision (a bf16 pass would swamp the small distances). `direct` computes
  `sum_d (a_d - b_d)^2` instead: exactly 0 where points coincide and exact for small integer
  coordinates, so a cloud against itself scores exactly 0 and equal distances tie exactly (the
  metrics' convention, metrics_3d). `a` is taken `chunk` points at a
  time, so memory is B x chunk x M rather than B x N x M.
  """
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  batch, n = a.shape[:2]
  chunk = min(chunk, n)
  pad = -n % chunk
  # Padded points lie infinitely far away: they are never anyone's nearest neighbour.
  a_padded = jnp.pad(a, ((0, 0), (0, pad), (0, 0)))
  valid = jnp.arange(n + pad) < n
  b_sq = jnp.sum(b ** 2, axis=-1)

  def distances(a_c):  # [B, chunk, M]
    if direct:
      return jnp.sum(jnp.square(a_c[:, :, None, :] - b[:, None, :, :]), axis=-1)
    return (jnp.sum(a_c ** 2, axis=-1)[:, :, None] + b_sq[:, None, :]
            - 2.0 * jnp.einsum('bnd,bmd->bnm', a_c, b, precision=jax.lax.Precision.HIGHEST))

  def one_chunk(carry, inputs):
    col_min, row_sum = carry
    a_c, valid_c = inputs  # [B, chunk, 3], [chunk]
    d = jnp.where(valid_c[None, :, None], distances(a_c), jnp.inf)
    row_sum = row_sum + jnp.sum(jnp.where(valid_c[None, :], jnp.min(d, axis=2), 0.0), axis=1)
    return (jnp.minimum(col_min, jnp.min(d, axis=1)), row_sum), None

  chunks = (a_padded.reshape(batch, -1, chunk, 3).transpose(1, 0, 2, 3),
            valid.reshape(-1, chunk))
  init = (jnp.full(b.shape[:2], jnp.inf, jnp.float32), jnp.zeros((batch,), jnp.float32))
  (col_min, row_sum), _ = jax.lax.scan(one_chunk, init, chunks)
  return row_sum, jnp.sum(col_min, axis=1)


# The reference's state dict (VARIANTS.md 3.2) -> our variables. PyTorch keeps Linear / Conv1d
# weights as [out, in(, 1)]; Flax kernels are [in, out].
_ENCODER_CONVS = (0, 3, 6, 9, 12)      # encoder.conv.{i}.weight, no bias
_ENCODER_NORMS = (2, 5, 8, 11, 14)     # encoder.conv.{i}: BatchNorm1d
_DECODER_LINEARS = (0, 2, 4, 6, 8)     # decoder.model.{i}


class StateDictError(ValueError):
  """A state dict that is not the reference's 3D Soft-IntroVAE (VARIANTS.md 3.2)."""


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
  """The flattened tensors of a `torch.save(model.state_dict(), path)` file, read with
  torch_archive (no torch, nothing from the file run). A pickled model object
  (`torch.save(model, path)`) comes back as an inert record, which is named in the error."""
  data = torch_archive.load(path)
  if isinstance(data, torch_archive.Foreign):
    raise StateDictError(f'{path!r} holds a pickled {data.module}.{data.name} object, not a state '
                         'dict: save one with torch.save(model.state_dict(), path).')
  return torch_archive.flatten(data)


def from_torch_state_dict(arrays: Dict[str, np.ndarray]):
  """`(encoder_params, decoder_params, encoder_batch_stats)` from the reference's
  `model.state_dict()` (flattened names -> arrays, as `read_state_dict` gives them).

  Names and shapes are checked: a missing or extra tensor raises StateDictError naming it. The
  running variance is PyTorch's (unbiased); Flax's BatchNorm would keep the biased one, which
  differs by n/(n-1) for n values per channel in a batch (here 2,048 x B): negligible.
  """
  arrays = {k[len('module.'):] if k.startswith('module.') else k: np.asarray(v)
            for k, v in arrays.items() if not k.endswith('num_batches_tracked')}
  used = set()

  def take(name, ndim):
    if name not in arrays:
      raise StateDictError(f'the state dict has no {name!r}: is it a soft_intro_vae_3d model?')
    used.add(name)
    value = arrays[name].astype(np.float32)
    if value.ndim != ndim:
      raise StateDictError(f'{name!r} has shape {value.shape}; expected {ndim} dimensions.')
    return value

  def dense(prefix):
    return {'kernel': take(f'{prefix}.weight', 2).T, 'bias': take(f'{prefix}.bias', 1)}

  enc, stats = {}, {}
  for i, (conv, norm) in enumerate(zip(_ENCODER_CONVS, _ENCODER_NORMS)):
    enc[f'conv_{i}'] = {'kernel': take(f'encoder.conv.{conv}.weight', 3)[:, :, 0].T}
    enc[f'bn_{i}'] = {'scale': take(f'encoder.conv.{norm}.weight', 1),
                      'bias': take(f'encoder.conv.{norm}.bias', 1)}
    stats[f'bn_{i}'] = {'mean': take(f'encoder.conv.{norm}.running_mean', 1),
                        'var': take(f'encoder.conv.{norm}.running_var', 1)}
  enc.update(fc=dense('encoder.fc.0'), mu=dense('encoder.mu_layer'),
             logvar=dense('encoder.std_layer'))
  names = [f'fc_{i}' for i in range(len(_DECODER_LINEARS) - 1)] + ['fc_out']
  dec = {name: dense(f'decoder.model.{i}') for name, i in zip(names, _DECODER_LINEARS)}
  extra = sorted(set(arrays) - used)
  if extra:
    raise StateDictError(f'the state dict holds tensors this model does not have: {extra[:5]}')
  return enc, dec, stats
