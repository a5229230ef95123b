"""The encoder/decoder pair as pure functions of explicit parameters and BatchNorm statistics."""

import dataclasses
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Params = Any
Stats = Any  # a network's 'batch_stats' collection ({} for networks without BatchNorm)


@dataclasses.dataclass(frozen=True)
class SoftIntroVAE:
  """Wraps an encoder module `E(x) -> (mu, logvar)` and a decoder module `D(z) -> x_hat`.

  Every call takes the parameters and running statistics and returns the statistics updated (in
  training mode, as the reference's every network call does) or unchanged (`train=False`: running
  averages, for sampling and evaluation). Nothing is stored in the object but the architecture.
  """
  encoder: nn.Module
  decoder: nn.Module

  @property
  def z_dim(self) -> int:
    return self.encoder.z_dim

  def with_axis_name(self, axis_name: Optional[str]) -> 'SoftIntroVAE':
    """The same networks with BatchNorm statistics averaged over `axis_name` (None: local batch)."""
    return SoftIntroVAE(self.encoder.clone(axis_name=axis_name),
                        self.decoder.clone(axis_name=axis_name))

  def init(self, key: jax.Array, data_shape) -> Tuple[Params, Params, Stats]:
    """Returns `(encoder_params, decoder_params, {'encoder': stats, 'decoder': stats})`."""
    k_enc, k_dec = jax.random.split(key)
    x = jnp.zeros((1,) + tuple(data_shape), jnp.float32)
    z = jnp.zeros((1, self.z_dim), jnp.float32)
    # Initialise without a cross-device axis, so init works outside pmap too.
    enc_vars = self.encoder.clone(axis_name=None).init(k_enc, x, train=False)
    dec_vars = self.decoder.clone(axis_name=None).init(k_dec, z, train=False)
    stats = {'encoder': enc_vars.get('batch_stats', {}), 'decoder': dec_vars.get('batch_stats', {})}
    return enc_vars['params'], dec_vars['params'], stats

  def encode(self, params: Params, stats: Stats, x: jax.Array, train: bool = True):
    """`((mu, logvar), stats')`."""
    return _apply(self.encoder, params, stats, x, train)

  def decode(self, params: Params, stats: Stats, z: jax.Array, train: bool = True):
    """`(x_hat, stats')`."""
    return _apply(self.decoder, params, stats, z, train)


def _apply(module: nn.Module, params: Params, stats: Stats, inputs, train: bool):
  variables = {'params': params}
  if stats:
    variables['batch_stats'] = stats
  if not (train and stats):
    return module.apply(variables, inputs, train=train), stats
  out, updates = module.apply(variables, inputs, train=True, mutable=['batch_stats'])
  return out, updates['batch_stats']
