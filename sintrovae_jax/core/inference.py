"""Sampling, encoding and deterministic reconstruction with the running BatchNorm averages."""

import jax
import jax.numpy as jnp

from sintrovae_jax.core import losses
from sintrovae_jax.core.train_state import TrainState
from sintrovae_jax.core.vae import SoftIntroVAE


def to_unit_range(batch: jax.Array) -> jax.Array:
  """uint8 image batches -> float32 in [0, 1], on the device; float batches pass unchanged."""
  if batch.dtype == jnp.uint8:
    return batch.astype(jnp.float32) / jnp.float32(255.0)
  return batch


def encode(model: SoftIntroVAE, state: TrainState, x: jax.Array):
  """`(mu, logvar)` of `x`, evaluation mode."""
  (mu, logvar), _ = model.encode(state.encoder_params, state.batch_stats['encoder'], x, train=False)
  return mu, logvar


def decode(model: SoftIntroVAE, state: TrainState, z: jax.Array, recon_loss: str = 'mse'):
  """`D(z)` in data space (sigmoid applied for 'bce'), evaluation mode."""
  out, _ = model.decode(state.decoder_params, state.batch_stats['decoder'], z, train=False)
  return losses.decoded_to_data(out, recon_loss)


def sample(model: SoftIntroVAE, state: TrainState, key: jax.Array, num: int,
           recon_loss: str = 'mse', prior_std: float = 1.0) -> jax.Array:
  """`num` generated examples: the decoder applied to prior noise, N(0, prior_std^2 I)."""
  z = jax.random.normal(key, (num, model.z_dim))
  return decode(model, state, z if prior_std == 1.0 else prior_std * z, recon_loss)


def reconstruct(model: SoftIntroVAE, state: TrainState, x: jax.Array, recon_loss: str = 'mse'):
  """Deterministic reconstruction `D(mu(x))`."""
  mu, _ = encode(model, state, x)
  return decode(model, state, mu, recon_loss)


def negative_elbo(model: SoftIntroVAE, state: TrainState, x: jax.Array) -> jax.Array:
  """Per-example `KL + REC` with z = mu and unit betas (mse): the 2D density's exponent."""
  mu, logvar = encode(model, state, x)
  out, _ = model.decode(state.decoder_params, state.batch_stats['decoder'], mu, train=False)
  return losses.kl_divergence(mu, logvar) + losses.reconstruction_error(x, out, 'mse')
