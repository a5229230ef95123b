"""How likely a trained model finds its inputs: the importance-weighted log p(x), and OOD scores.

`log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K`, z_k ~ q(z|x)
(Burda et al., IWAE): a lower bound on log p(x) in expectation that tightens as K grows; K = 1 is
the single-sample ELBO. Both networks run in evaluation mode (running BatchNorm averages).

The decoder's likelihood is the one its `recon_loss` implies: 'mse' a Gaussian N(D(z), sigma^2 I),
'l1' a Laplace with scale sigma, 'bce' a Bernoulli on logits (a density only for binary data; for
grey levels in [0, 1] it scores, it does not normalise). `default_sigma` picks the sigma for which
the negative ELBO is the training objective on real data, `beta_rec REC + beta_kl KL`, divided by
beta_kl (plus a constant): sqrt(beta_kl / (2 beta_rec)) for 'mse', beta_kl / beta_rec for 'l1'.

Bits per dimension follow the usual convention for 8-bit images scaled to [0, 1]: the density of
the scaled pixels turned into one of 0..255 levels by the change of variables (-log 256 per
dimension), `bpd = (-log p(x) + D log 256) / (D log 2)`; for vector data, `-log p(x) / (D log 2)`.
"""

import math
from typing import Dict, Optional, Sequence

import jax
import jax.numpy as jnp

from sintrovae_jax.core import inference, losses
from sintrovae_jax.core.train_state import TrainState
from sintrovae_jax.core.vae import SoftIntroVAE

LOG_2PI = math.log(2.0 * math.pi)


def default_sigma(recon_loss: str, beta_rec: float, beta_kl: float,
                  recon_reduction: str = 'sum', data_shape: Sequence[int] = ()) -> float:
  """The decoder noise scale that makes the negative ELBO the objective's real-data part.

  Under `recon_reduction='reference'` the 'l1' term is a mean over the `prod(data_shape)` elements
  of an example, which scales the Laplace's b by that count.
  """
  if recon_loss == 'mse':
    return math.sqrt(beta_kl / (2.0 * beta_rec))
  if recon_loss == 'l1':
    elements = math.prod(data_shape) if recon_reduction == 'reference' else 1
    return elements * beta_kl / beta_rec
  return 1.0  # 'bce' has no scale


def decoder_log_likelihood(x: jax.Array, output: jax.Array, recon_loss: str,
                           sigma: float) -> jax.Array:
  """log p(x | z) per example, from the raw decoder output (logits for 'bce'): [B]."""
  dims = math.prod(x.shape[1:])
  err = losses.reconstruction_error(x, output, recon_loss)
  if recon_loss == 'mse':
    return -0.5 * err / sigma ** 2 - 0.5 * dims * (LOG_2PI + 2.0 * math.log(sigma))
  if recon_loss == 'l1':
    return -err / sigma - dims * math.log(2.0 * sigma)
  return -err  # Bernoulli: the summed binary cross-entropy with logits is -log p


def log_standard_normal(z: jax.Array) -> jax.Array:
  return -0.5 * jnp.sum(z ** 2 + LOG_2PI, axis=-1)


def log_normal(z: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
  return -0.5 * jnp.sum((z - mu) ** 2 * jnp.exp(-logvar) + logvar + LOG_2PI, axis=-1)


def log_weights(model: SoftIntroVAE, state: TrainState, x: jax.Array, key: jax.Array,
                num_samples: int, recon_loss: str, sigma: float) -> jax.Array:
  """The K importance log-weights `log p(x|z_k) + log p(z_k) - log q(z_k|x)`: [K, B].

  Sample k's noise is `normal(fold_in(key, k))`, one decoder pass per sample (`lax.map`), so
  memory does not grow with K.
  """
  mu, logvar = inference.encode(model, state, x)
  return _log_weights(model, state, x, mu, logvar, key, num_samples, recon_loss, sigma)


def _log_weights(model, state, x, mu, logvar, key, num_samples, recon_loss, sigma):
  """`log_weights` for an already encoded posterior `(mu, logvar)` of `x`."""
  std = jnp.exp(0.5 * logvar)

  def one(k):
    z = mu + std * jax.random.normal(jax.random.fold_in(key, k), mu.shape)
    out, _ = model.decode(state.decoder_params, state.batch_stats['decoder'], z, train=False)
    return (decoder_log_likelihood(x, out, recon_loss, sigma) + log_standard_normal(z)
            - log_normal(z, mu, logvar))

  return jax.lax.map(one, jnp.arange(num_samples))


def log_likelihood(model: SoftIntroVAE, state: TrainState, x: jax.Array, key: jax.Array,
                   num_samples: int, recon_loss: str = 'mse',
                   sigma: Optional[float] = None) -> jax.Array:
  """The IWAE estimate of log p(x) with `num_samples` draws from q(z|x), in nats: [B]."""
  sigma = 1.0 if sigma is None else sigma
  return _iwae(log_weights(model, state, x, key, num_samples, recon_loss, sigma))


def _iwae(log_w: jax.Array) -> jax.Array:
  """logsumexp over the K samples minus log K: [K, B] -> [B]."""
  return jax.nn.logsumexp(log_w, axis=0) - math.log(log_w.shape[0])


def bits_per_dim(log_px: jax.Array, data_shape, images: bool) -> jax.Array:
  """Bits per dimension of `log_px` (nats), with the 8-bit convention for images (docstring)."""
  dims = math.prod(data_shape)
  nll = -log_px + (dims * math.log(256.0) if images else 0.0)
  return nll / (dims * math.log(2.0))


def scores(model: SoftIntroVAE, state: TrainState, x: jax.Array, key: jax.Array,
           num_samples: int, recon_loss: str = 'mse',
           sigma: Optional[float] = None) -> Dict[str, jax.Array]:
  """Per-example out-of-distribution scores, each larger for less likely inputs: [B] each.

  `neg_log_px`: -log p(x) by IWAE; `neg_elbo`: reconstruction term at z = mu plus the analytic
  KL, as the decoder likelihood defines them; `kl`: KL(q(z|x) || p(z)); `rec_error`: the summed
  reconstruction error of D(mu(x)) in the run's `recon_loss`.
  """
  sigma = 1.0 if sigma is None else sigma
  mu, logvar = inference.encode(model, state, x)
  out, _ = model.decode(state.decoder_params, state.batch_stats['decoder'], mu, train=False)
  kl = losses.kl_divergence(mu, logvar)
  log_w = _log_weights(model, state, x, mu, logvar, key, num_samples, recon_loss, sigma)
  return {'neg_log_px': -_iwae(log_w),
          'neg_elbo': kl - decoder_log_likelihood(x, out, recon_loss, sigma),
          'kl': kl, 'rec_error': losses.reconstruction_error(x, out, recon_loss)}
