"""Likelihood regret (Xiao, Yan & Amit, NeurIPS 2020): how much an input's -log p(x) falls when the
encoder is fitted to that input alone. In-distribution inputs are already fitted well and gain
little; out-of-distribution inputs gain much, even where their raw likelihood is high (the
likelihood paradox of Nalisnick et al. 2019).

The authors' choices (XavierXiao/Likelihood-Regret, compute_LR.py), kept as the defaults: a copy of
the whole encoder per input, trained for 100 steps by Adam (learning rate 2e-4, betas (0.9, 0.999),
L2 weight decay 5e-5 added to the gradient as torch.optim.Adam does) on that input's negative ELBO
with one posterior draw per step (the encoder in evaluation mode: BatchNorm keeps its running
averages; the decoder is fixed). The regret is -log p(x) before minus after, both by importance
weighting. They draw 1,000 fresh samples for each; we draw the run's `likelihood_samples`, the
same draws before and after, so that the difference is the fit's and not the estimate's noise.
"""

import dataclasses

import jax
import jax.numpy as jnp
import optax

from sintrovae_jax.core import losses
from sintrovae_jax.core.train_state import TrainState
from sintrovae_jax.core.vae import SoftIntroVAE
from sintrovae_jax.evaluators import likelihood


@dataclasses.dataclass(frozen=True)
class RegretOptions:
  """How each input's encoder is refitted (the authors' values: module docstring)."""
  steps: int = 100
  learning_rate: float = 2e-4
  weight_decay: float = 5e-5


def regret(model: SoftIntroVAE, state: TrainState, x: jax.Array, key: jax.Array,
           num_samples: int, recon_loss: str, sigma: float,
           options: RegretOptions = RegretOptions()) -> jax.Array:
  """Per-example likelihood regret `-log p(x) - (-log p'(x))` in nats, p' with the refitted
  encoder: [B]. Each example is refitted on its own (its own encoder copy, its own draws from
  `fold_in(key, i)`), so an example's regret does not depend on the batch it came in."""
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(x.shape[0]))
  return jax.vmap(lambda xi, k: _one(model, state, xi[None], k, num_samples, recon_loss, sigma,
                                     options))(x, keys)


def _one(model, state, x, key, num_samples, recon_loss, sigma, options):
  key_iwae, key_fit = jax.random.split(key)

  def neg_log_px(encoder_params):
    fitted = state.replace(encoder_params=encoder_params)
    return -likelihood.log_likelihood(model, fitted, x, key_iwae, num_samples, recon_loss,
                                      sigma)[0]

  def neg_elbo(encoder_params, k):  # one posterior draw, the analytic KL (as the authors)
    mu, logvar = model.encode(encoder_params, state.batch_stats['encoder'], x, train=False)[0]
    z = losses.reparameterize(mu, logvar, jax.random.normal(k, mu.shape))
    out, _ = model.decode(state.decoder_params, state.batch_stats['decoder'], z, train=False)
    return (losses.kl_divergence(mu, logvar)
            - likelihood.decoder_log_likelihood(x, out, recon_loss, sigma))[0]

  tx = optax.chain(optax.add_decayed_weights(options.weight_decay),
                   optax.adam(options.learning_rate, b1=0.9, b2=0.999))

  def step(i, carry):
    params, opt_state = carry
    grads = jax.grad(neg_elbo)(params, jax.random.fold_in(key_fit, i))
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  params = state.encoder_params
  fitted, _ = jax.lax.fori_loop(0, options.steps, step, (params, tx.init(params)))
  return neg_log_px(params) - neg_log_px(fitted)
