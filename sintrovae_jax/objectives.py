"""The three Soft-IntroVAE objectives, each a pure function of parameters and explicit draws.

These are ALGORITHM.md's "Encoder update", "Decoder update" and "Vanilla-VAE warm-up" written out
call for call, in the reference's order (which matters: every training-mode call advances the
BatchNorm running averages). The random draws enter as a `Draws` tuple, so the objectives can be
checked against any other implementation; `train_step.py` draws them from one key.
"""

import dataclasses
from typing import Any, Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp

from sintrovae_jax import losses
from sintrovae_jax.vae import SoftIntroVAE

sg = jax.lax.stop_gradient


class Draws(NamedTuple):
  """Every standard-normal draw of one iteration, each [B, z_dim]."""
  noise: jax.Array         # prior sample, used by both halves
  eps_real: jax.Array      # encoder step, z = reparam(E(x))
  eps_rec: jax.Array       # encoder step, re-encoded reconstruction
  eps_fake: jax.Array      # encoder step, re-encoded generated data
  eps_rec_dec: jax.Array   # decoder step, re-encoded reconstruction
  eps_fake_dec: jax.Array  # decoder step, re-encoded generated data


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """Hyper-parameters of the objectives; `scale` is ALGORITHM.md's `s`."""
  beta_rec: float
  beta_kl: float
  beta_neg: float
  gamma_r: float = 1e-8
  scale: float = 1.0
  recon_loss: str = 'mse'


Aux = Dict[str, Any]


def encoder_objective(enc_params, dec_params, stats, x, draws: Draws, model: SoftIntroVAE,
                      w: LossWeights) -> Tuple[jax.Array, Tuple[Any, Aux]]:
  """`loss_E`, differentiated w.r.t. `enc_params` only: the decoder's parameters are constants.

  Returns `(loss_E, (stats', aux))`; `aux` holds the metrics and `z`, which the decoder update uses.
  """
  enc_stats, dec_stats = stats['encoder'], stats['decoder']
  to_data = lambda out: losses.decoded_to_data(out, w.recon_loss)
  rec_error = lambda target, out: losses.reconstruction_error(target, out, w.recon_loss)

  fake_out, dec_stats = model.decode(dec_params, dec_stats, draws.noise)
  fake = to_data(fake_out)
  (mu, logvar), enc_stats = model.encode(enc_params, enc_stats, x)
  z = losses.reparameterize(mu, logvar, draws.eps_real)
  rec_out, dec_stats = model.decode(dec_params, dec_stats, z)
  rec = to_data(rec_out)
  loss_rec = jnp.mean(rec_error(x, rec_out))
  kl_real = jnp.mean(losses.kl_divergence(mu, logvar))

  # Generated data enters the encoder as a constant (ALGORITHM.md, encoder step 4) ...
  (rec_mu, rec_logvar), enc_stats = model.encode(enc_params, enc_stats, sg(rec))
  rec_rec_out, dec_stats = model.decode(
      dec_params, dec_stats, losses.reparameterize(rec_mu, rec_logvar, draws.eps_rec))
  (fake_mu, fake_logvar), enc_stats = model.encode(enc_params, enc_stats, sg(fake))
  rec_fake_out, dec_stats = model.decode(
      dec_params, dec_stats, losses.reparameterize(fake_mu, fake_logvar, draws.eps_fake))

  # ... but the target `rec` of r_i is NOT stopped: its gradient also reaches the encoder through
  # the real-data path (step 5), as in the reference.
  r = rec_error(rec, rec_rec_out)
  f = rec_error(sg(fake), rec_fake_out)
  kl_rec = losses.kl_divergence(rec_mu, rec_logvar)
  kl_fake = losses.kl_divergence(fake_mu, fake_logvar)
  exp_elbo_rec = losses.exp_elbo(r, kl_rec, w.scale, w.beta_rec, w.beta_neg)
  exp_elbo_fake = losses.exp_elbo(f, kl_fake, w.scale, w.beta_rec, w.beta_neg)
  loss = losses.encoder_loss(loss_rec, kl_real, exp_elbo_rec, exp_elbo_fake, w.scale,
                             w.beta_rec, w.beta_kl)

  # Diagnostic only: reconstruction error with z = mu (batch statistics, running ones untouched).
  det_out, _ = model.decode(dec_params, dec_stats, sg(mu))
  aux = dict(z=z, loss_rec=loss_rec, kl_real=kl_real, exp_elbo_rec=exp_elbo_rec,
             exp_elbo_fake=exp_elbo_fake, loss_enc=loss,
             rec_error_deterministic=jnp.mean(rec_error(x, sg(det_out))))
  return loss, ({'encoder': enc_stats, 'decoder': dec_stats}, aux)


def decoder_objective(dec_params, enc_params, stats, x, z, draws: Draws, model: SoftIntroVAE,
                      w: LossWeights) -> Tuple[jax.Array, Tuple[Any, Aux]]:
  """`loss_D`, differentiated w.r.t. `dec_params` only; `enc_params` are the updated encoder's."""
  enc_stats, dec_stats = stats['encoder'], stats['decoder']
  to_data = lambda out: losses.decoded_to_data(out, w.recon_loss)
  rec_error = lambda target, out: losses.reconstruction_error(target, out, w.recon_loss)

  fake_out, dec_stats = model.decode(dec_params, dec_stats, draws.noise)
  rec_out, dec_stats = model.decode(dec_params, dec_stats, sg(z))
  fake, rec = to_data(fake_out), to_data(rec_out)
  loss_rec = jnp.mean(rec_error(x, rec_out))

  # The gradient reaches the decoder through `rec` and `fake` via the encoder (step 3) ...
  (rec_mu, rec_logvar), enc_stats = model.encode(enc_params, enc_stats, rec)
  (fake_mu, fake_logvar), enc_stats = model.encode(enc_params, enc_stats, fake)
  # ... but not through the re-encoded latents, nor the targets of the re-reconstructions (4-5).
  rec_rec_out, dec_stats = model.decode(
      dec_params, dec_stats, sg(losses.reparameterize(rec_mu, rec_logvar, draws.eps_rec_dec)))
  rec_fake_out, dec_stats = model.decode(
      dec_params, dec_stats, sg(losses.reparameterize(fake_mu, fake_logvar, draws.eps_fake_dec)))
  loss_rr = jnp.mean(rec_error(sg(rec), rec_rec_out))
  loss_rf = jnp.mean(rec_error(sg(fake), rec_fake_out))
  kl_rec = jnp.mean(losses.kl_divergence(rec_mu, rec_logvar))
  kl_fake = jnp.mean(losses.kl_divergence(fake_mu, fake_logvar))
  loss = losses.decoder_loss(loss_rec, kl_rec, kl_fake, loss_rr, loss_rf, w.scale, w.beta_rec,
                             w.beta_kl, w.gamma_r)
  aux = dict(kl_rec=kl_rec, kl_fake=kl_fake, loss_dec=loss)
  return loss, ({'encoder': enc_stats, 'decoder': dec_stats}, aux)


def vae_objective(params, stats, x, draws: Draws, model: SoftIntroVAE,
                  w: LossWeights) -> Tuple[jax.Array, Tuple[Any, Aux]]:
  """The vanilla-VAE warm-up loss; `params = (enc_params, dec_params)`, both differentiated."""
  enc_params, dec_params = params
  (mu, logvar), enc_stats = model.encode(enc_params, stats['encoder'], x)
  z = losses.reparameterize(mu, logvar, draws.eps_real)
  rec_out, dec_stats = model.decode(dec_params, stats['decoder'], z)
  loss_rec = jnp.mean(losses.reconstruction_error(x, rec_out, w.recon_loss))
  kl_real = jnp.mean(losses.kl_divergence(mu, logvar))
  loss = losses.vae_loss(loss_rec, kl_real, w.beta_rec, w.beta_kl)
  det_out, _ = model.decode(dec_params, dec_stats, sg(mu))
  aux = dict(loss_rec=loss_rec, kl_real=kl_real, loss_vae=loss,
             rec_error_deterministic=jnp.mean(
                 losses.reconstruction_error(x, sg(det_out), w.recon_loss)))
  return loss, ({'encoder': enc_stats, 'decoder': dec_stats}, aux)
