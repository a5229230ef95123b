"""The loss terms of Soft-IntroVAE, as pure functions of arrays (ALGORITHM.md, "Notation").

Per-sample functions return shape [B]; "mean" terms average those over the batch. Everything is
computed in float32. Conventions for reconstruction errors: `reconstruction_error(target, output)`
takes the *data-domain* target first and the raw decoder output second. For `'bce'` the decoder
output is read as logits, and a decoder output that serves as data (a target or an encoder input)
is first mapped to [0, 1] by `decoded_to_data`; for `'mse'` and `'l1'` that mapping is the identity.

Batch means of reconstruction errors (`mean_reconstruction_error`) follow the reference's
`calc_reconstruction_loss(..., reduction="mean")`: for 'mse' the mean over the batch of per-example
sums, for 'l1' and 'bce' PyTorch's `l1_loss` / `binary_cross_entropy` mean over *every element*,
i.e. the per-example sum divided by the elements per example (`recon_reduction='reference'`).
`recon_reduction='sum'` uses per-example sums for all three. The exp-ELBO terms use per-example
sums in both (the reference's `reduction='none'` followed by a sum).
"""

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from sintrovae_jax.core import chamfer

RECON_LOSSES = ('mse', 'l1', 'bce')  # images and vectors
POINT_LOSSES = ('chamfer',)           # point clouds [B, N, 3] (VARIANTS.md 3.3)
RECON_REDUCTIONS = ('reference', 'sum')


def reparameterize(mu: jax.Array, logvar: jax.Array, eps: jax.Array) -> jax.Array:
  """`mu + eps * exp(logvar / 2)` with the standard-normal draw `eps` passed in explicitly."""
  return mu + eps * jnp.exp(0.5 * logvar)


def kl_divergence(mu: jax.Array, logvar: jax.Array, prior_std: float = 1.0) -> jax.Array:
  """Per-sample KL(N(mu, exp(logvar)) || N(0, prior_std^2 I)), summed over latent dims: [B].

  `prior_std` is 1 in ALGORITHM.md and 0.2 in the 3D variant (VARIANTS.md 3.3).
  """
  mu, logvar = mu.astype(jnp.float32), logvar.astype(jnp.float32)
  if prior_std == 1.0:
    return -0.5 * jnp.sum(1.0 + logvar - jnp.exp(logvar) - mu ** 2, axis=-1)
  var_p = prior_std ** 2
  return -0.5 * jnp.sum(1.0 + logvar - math.log(var_p) - jnp.exp(logvar) / var_p - mu ** 2 / var_p,
                        axis=-1)


def reconstruction_error(target: jax.Array, output: jax.Array, kind: str = 'mse') -> jax.Array:
  """Per-sample error summed over every non-batch element (not averaged): [B].

  'chamfer' (point clouds [B, N, 3]): the squared Chamfer distance, summed over the points in each
  direction (`chamfer.chamfer_distance`).
  """
  target, output = target.astype(jnp.float32), output.astype(jnp.float32)
  if kind == 'chamfer':
    return chamfer.chamfer_distance(target, output)
  if kind == 'mse':
    err = (target - output) ** 2
  elif kind == 'l1':
    err = jnp.abs(target - output)
  elif kind == 'bce':
    err = optax.sigmoid_binary_cross_entropy(output, target)
  else:
    raise ValueError(f'recon_loss={kind!r} is not one of {RECON_LOSSES + POINT_LOSSES}.')
  return jnp.sum(err.reshape((err.shape[0], -1)), axis=-1)


def mean_reconstruction_error(target: jax.Array, output: jax.Array, kind: str = 'mse',
                              reduction: str = 'reference') -> jax.Array:
  """The batch-mean reconstruction term (`loss_rec`, `loss_rr`, `loss_rf`): a scalar.

  `reduction='reference'`: as the reference's `reduction="mean"`, per-example sums for 'mse', the
  mean over every element for 'l1' and 'bce'; `'sum'`: per-example sums for every kind.
  """
  if reduction not in RECON_REDUCTIONS:
    raise ValueError(f'recon_reduction={reduction!r} is not one of {RECON_REDUCTIONS}.')
  per_example = reconstruction_error(target, output, kind)
  if reduction == 'reference' and kind in ('l1', 'bce'):
    per_example = per_example / math.prod(target.shape[1:])
  return jnp.mean(per_example)


def decoded_to_data(output: jax.Array, kind: str = 'mse') -> jax.Array:
  """Maps a raw decoder output into data space: sigmoid for 'bce' logits, identity otherwise."""
  return jax.nn.sigmoid(output) if kind == 'bce' else output


def default_scale(data_shape: Sequence[int]) -> float:
  """ALGORITHM.md's scale `s`: 1/(C*H*W) for images ([H, W, C]), 0.5 for vectors ([D]);
  1/(3 N) for point clouds ([N, 3], VARIANTS.md 3.3)."""
  if len(data_shape) >= 2:
    return 1.0 / math.prod(data_shape)
  return 0.5


def exp_elbo(rec_error: jax.Array, kl: jax.Array, scale: float, beta_rec: float,
             beta_neg: float) -> jax.Array:
  """`mean_i exp(-2 s (beta_rec REC_i + beta_neg KL_i))`: the soft exponential ELBO term."""
  return jnp.mean(jnp.exp(-2.0 * scale * (beta_rec * rec_error + beta_neg * kl)))


def encoder_loss(loss_rec, kl_real, exp_elbo_rec, exp_elbo_fake, scale: float, beta_rec: float,
                 beta_kl: float) -> jax.Array:
  """`s (beta_rec loss_rec + beta_kl kl_real) + 0.25 (exp_elbo_rec + exp_elbo_fake)`."""
  return scale * (beta_rec * loss_rec + beta_kl * kl_real) + 0.25 * (exp_elbo_rec + exp_elbo_fake)


def decoder_loss(loss_rec, kl_rec, kl_fake, loss_rr, loss_rf, scale: float, beta_rec: float,
                 beta_kl: float, gamma_r: float) -> jax.Array:
  """`s (beta_rec loss_rec + beta_kl (kl_rec + kl_fake)/2 + gamma_r beta_rec (loss_rr + loss_rf)/2)`."""
  return scale * (beta_rec * loss_rec + 0.5 * beta_kl * (kl_rec + kl_fake)
                  + 0.5 * gamma_r * beta_rec * (loss_rr + loss_rf))


def vae_loss(loss_rec, kl_real, beta_rec: float, beta_kl: float) -> jax.Array:
  """The vanilla-VAE warm-up objective, without the scale: `beta_rec loss_rec + beta_kl kl_real`."""
  return beta_rec * loss_rec + beta_kl * kl_real
