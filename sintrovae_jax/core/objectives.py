"""The three Soft-IntroVAE objectives, each a pure function of parameters and explicit draws.

These are ALGORITHM.md's "Encoder update", "Decoder update" and "Vanilla-VAE warm-up" written out
call for call, in the reference's order (which matters: every training-mode call advances the
BatchNorm running averages). The random draws enter as a `Draws` tuple, so the objectives can be
checked against any other implementation; `train_step.py` draws them from one key.

Two training options enter here (README "Training options"): `augment`, a transform of every
encoder input, and `target_params`, the bootstrap variant's frozen target decoder, which makes the
re-reconstructions (VARIANTS.md 2.2).
"""

import dataclasses
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from sintrovae_jax.core import losses
from sintrovae_jax.core.vae import SoftIntroVAE

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
  """Hyper-parameters of the objectives; `scale` is ALGORITHM.md's `s`.

  `recon_reduction`: how the batch-mean reconstruction terms reduce for 'l1' and 'bce'
  (`losses.mean_reconstruction_error`; 'reference' is the authors' `reduction="mean"`).
  `prior_std`: the prior N(0, prior_std^2 I) of the KL terms and of the generated data's latents
  (1 in ALGORITHM.md, 0.2 for point clouds, VARIANTS.md 3.3).
  """
  beta_rec: float
  beta_kl: float
  beta_neg: float
  gamma_r: float = 1e-8
  scale: float = 1.0
  recon_loss: str = 'mse'
  recon_reduction: str = 'reference'
  prior_std: float = 1.0


Aux = Dict[str, Any]
Augment = Optional[Callable[[jax.Array], jax.Array]]


class _Networks:
  """The iteration's network calls in training mode, each threading its network's BatchNorm
  statistics in call order (every call advances the running averages, as in the reference).

  `E` sees its input through `augment` (differentiable augmentation; None = as is). `R` is the
  decoder of the re-reconstructions: `D` itself, or the frozen target decoder `T` of the
  bootstrap variant (VARIANTS.md 2.2) when `target_params` is given (statistics in
  `stats['target']`).
  """

  def __init__(self, model: SoftIntroVAE, stats, enc_params, dec_params, target_params=None,
               augment: Augment = None):
    self.model, self.stats = model, dict(stats)
    self.enc_params, self.dec_params, self.target_params = enc_params, dec_params, target_params
    self.augment = augment

  @property
  def bootstrap(self) -> bool:
    return self.target_params is not None

  def E(self, x):
    x = x if self.augment is None else self.augment(x)
    out, self.stats['encoder'] = self.model.encode(self.enc_params, self.stats['encoder'], x)
    return out

  def D(self, z):
    out, self.stats['decoder'] = self.model.decode(self.dec_params, self.stats['decoder'], z)
    return out

  def R(self, z):
    if not self.bootstrap:
      return self.D(z)
    out, self.stats['target'] = self.model.decode(self.target_params, self.stats['target'], z)
    return out


def _prior_sample(noise, w: LossWeights):
  return noise if w.prior_std == 1.0 else w.prior_std * noise


def _kl(mu, logvar, w: LossWeights):
  return losses.kl_divergence(mu, logvar, w.prior_std)


def encoder_objective(enc_params, dec_params, stats, x, draws: Draws, model: SoftIntroVAE,
                      w: LossWeights, target_params=None, augment: Augment = None,
                      points: bool = False) -> Tuple[jax.Array, Tuple[Any, Aux]]:
  """`loss_E`, differentiated w.r.t. `enc_params` only: the decoder's parameters are constants.

  Returns `(loss_E, (stats', aux))`; `aux` holds the metrics and `z`, which the decoder update uses.
  With `target_params` (bootstrap variant) the re-reconstructions come from the target decoder.
  `points`: the 3D variant's difference (VARIANTS.md 3.3 (a)): the target `rec` of r_i is stopped;
  `aux` then also holds `mu` and `logvar`, from which the decoder update redraws its z (3.3 (b)).
  """
  net = _Networks(model, stats, enc_params, dec_params, target_params, augment)
  to_data = lambda out: losses.decoded_to_data(out, w.recon_loss)
  rec_error = lambda target, out: losses.reconstruction_error(target, out, w.recon_loss)
  mean_error = lambda target, out: losses.mean_reconstruction_error(target, out, w.recon_loss,
                                                                    w.recon_reduction)

  fake = to_data(net.D(_prior_sample(draws.noise, w)))
  mu, logvar = net.E(x)
  z = losses.reparameterize(mu, logvar, draws.eps_real)
  rec_out = net.D(z)
  rec = to_data(rec_out)
  loss_rec = mean_error(x, rec_out)
  kl_real = jnp.mean(_kl(mu, logvar, w))

  # Generated data enters the encoder as a constant (ALGORITHM.md, encoder step 4) ...
  rec_mu, rec_logvar = net.E(sg(rec))
  rec_rec_out = net.R(losses.reparameterize(rec_mu, rec_logvar, draws.eps_rec))
  fake_mu, fake_logvar = net.E(sg(fake))
  rec_fake_out = net.R(losses.reparameterize(fake_mu, fake_logvar, draws.eps_fake))

  # ... but the target `rec` of r_i is NOT stopped: its gradient also reaches the encoder through
  # the real-data path (step 5), as in the reference (the 3D variant stops it).
  r = rec_error(sg(rec) if points else rec, rec_rec_out)
  f = rec_error(sg(fake), rec_fake_out)
  kl_rec = _kl(rec_mu, rec_logvar, w)
  kl_fake = _kl(fake_mu, fake_logvar, w)
  exp_elbo_rec = losses.exp_elbo(r, kl_rec, w.scale, w.beta_rec, w.beta_neg)
  exp_elbo_fake = losses.exp_elbo(f, kl_fake, w.scale, w.beta_rec, w.beta_neg)
  loss = losses.encoder_loss(loss_rec, kl_real, exp_elbo_rec, exp_elbo_fake, w.scale,
                             w.beta_rec, w.beta_kl)

  # Diagnostic only: reconstruction error with z = mu (batch statistics, running ones untouched).
  det_out, _ = model.decode(dec_params, net.stats['decoder'], sg(mu))
  aux = dict(z=z, loss_rec=loss_rec, kl_real=kl_real, exp_elbo_rec=exp_elbo_rec,
             exp_elbo_fake=exp_elbo_fake, loss_enc=loss,
             rec_error_deterministic=mean_error(x, sg(det_out)))
  if points:
    aux.update(mu=mu, logvar=logvar)
  return loss, (net.stats, aux)


def decoder_objective(dec_params, enc_params, stats, x, z, draws: Draws, model: SoftIntroVAE,
                      w: LossWeights, target_params=None,
                      augment: Augment = None) -> Tuple[jax.Array, Tuple[Any, Aux]]:
  """`loss_D`, differentiated w.r.t. `dec_params` only; `enc_params` are the updated encoder's.

  With `target_params` (bootstrap variant, VARIANTS.md 2.2) the re-reconstructions come from the
  frozen target decoder, with neither their latents nor their targets stopped.
  """
  net = _Networks(model, stats, enc_params, dec_params, target_params, augment)
  to_data = lambda out: losses.decoded_to_data(out, w.recon_loss)
  mean_error = lambda target, out: losses.mean_reconstruction_error(target, out, w.recon_loss,
                                                                    w.recon_reduction)
  # Stop-gradients of steps 4-5 that the bootstrap variant drops.
  sg_main = (lambda v: v) if net.bootstrap else sg

  fake_out = net.D(_prior_sample(draws.noise, w))
  rec_out = net.D(sg(z))
  fake, rec = to_data(fake_out), to_data(rec_out)
  loss_rec = mean_error(x, rec_out)

  # The gradient reaches the decoder through `rec` and `fake` via the encoder (step 3) ...
  rec_mu, rec_logvar = net.E(rec)
  fake_mu, fake_logvar = net.E(fake)
  # ... but not through the re-encoded latents, nor the targets of the re-reconstructions (4-5).
  rec_rec_out = net.R(sg_main(losses.reparameterize(rec_mu, rec_logvar, draws.eps_rec_dec)))
  rec_fake_out = net.R(sg_main(losses.reparameterize(fake_mu, fake_logvar, draws.eps_fake_dec)))
  loss_rr = mean_error(sg_main(rec), rec_rec_out)
  loss_rf = mean_error(sg_main(fake), rec_fake_out)
  kl_rec = jnp.mean(_kl(rec_mu, rec_logvar, w))
  kl_fake = jnp.mean(_kl(fake_mu, fake_logvar, w))
  loss = losses.decoder_loss(loss_rec, kl_rec, kl_fake, loss_rr, loss_rf, w.scale, w.beta_rec,
                             w.beta_kl, w.gamma_r)
  aux = dict(kl_rec=kl_rec, kl_fake=kl_fake, loss_dec=loss)
  return loss, (net.stats, aux)


def vae_objective(params, stats, x, draws: Draws, model: SoftIntroVAE, w: LossWeights,
                  augment: Augment = None) -> Tuple[jax.Array, Tuple[Any, Aux]]:
  """The vanilla-VAE warm-up loss; `params = (enc_params, dec_params)`, both differentiated.

  It reconstructs through `D` in both variants (the bootstrap reference's warm-up goes through its
  frozen target, which leaves `D` untrained: VARIANTS.md 2.3; we do not follow it there).
  """
  enc_params, dec_params = params
  net = _Networks(model, stats, enc_params, dec_params, augment=augment)
  mean_error = lambda target, out: losses.mean_reconstruction_error(target, out, w.recon_loss,
                                                                    w.recon_reduction)
  mu, logvar = net.E(x)
  z = losses.reparameterize(mu, logvar, draws.eps_real)
  rec_out = net.D(z)
  loss_rec = mean_error(x, rec_out)
  kl_real = jnp.mean(_kl(mu, logvar, w))
  loss = losses.vae_loss(loss_rec, kl_real, w.beta_rec, w.beta_kl)
  det_out, _ = model.decode(dec_params, net.stats['decoder'], sg(mu))
  aux = dict(loss_rec=loss_rec, kl_real=kl_real, loss_vae=loss,
             rec_error_deterministic=mean_error(x, sg(det_out)))
  return loss, (net.stats, aux)
