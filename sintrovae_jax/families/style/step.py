"""The style Soft-IntroVAE's train step (VARIANTS.md 1.8): a pure function per progressive phase.

ALGORITHM.md's iteration with the style variant's differences, all from the reference's model.py:
the encoder step and the decoder step each draw their own prior sample (and their own style
mixing); the decoder step reconstructs x re-encoded by the just-updated encoder with fresh noise;
every decoder call draws fresh noise inputs; `s`, `gamma_r` and `beta_neg` come from the phase and
config; the warm-up is `beta_rec REC + beta_kl KL` without `s`, both optimisers stepping.

Randomness is drawn per global example index (normals, noise maps) or per step (whether to mix
styles and the cutoff), from `fold_in(state.rng, state.step)`: the same seed and global batch train
the same model on any number of devices. With `axis_name` set, gradients, metrics and the running
average of w are averaged over that axis, so the state stays identical on every device.
"""

from typing import Any, Callable, Dict, Optional, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from sintrovae_jax.core import losses
from sintrovae_jax.core.objectives import LossWeights
from sintrovae_jax.core.train_step import (finite_fraction, global_example_index,
                                           per_example_normals)
from sintrovae_jax.families.style import (layers as style_layers, model as style_model,
                                          optim as style_optim, progressive)
from sintrovae_jax.families.style.progressive import Phase

sg = jax.lax.stop_gradient
Metrics = Dict[str, jax.Array]

METRIC_NAMES = ('loss_rec', 'kl_real', 'kl_fake', 'kl_rec', 'diff_kl', 'exp_elbo_fake',
                'exp_elbo_rec', 'loss_enc', 'loss_dec', 'loss_vae', 'learning_rate', 'soft_intro',
                'nonfinite', 'alpha', 'resolution')


class StyleTrainState(flax.struct.PyTreeNode):
  """Everything a style step reads and writes.

  `dlatent_avg` [num_styles, latent] is the running average of w (lerp 1 - beta toward each
  decoder call's batch mean, model.py L180-183), used only by truncation at sampling time.
  `ema`: {'encoder_params', 'decoder_params'}, the sampling model (VARIANTS.md 1.9), or None.
  """
  step: jax.Array
  encoder_params: Any
  decoder_params: Any
  encoder_opt_state: Any
  decoder_opt_state: Any
  dlatent_avg: jax.Array
  rng: jax.Array
  ema: Any = None


def make_optimizers(phase: Phase, coefficients) -> Tuple[optax.GradientTransformation,
                                                         optax.GradientTransformation]:
  """The phase's LREQAdam for the encoder half and for the decoder half."""
  return (style_optim.lreq_adam(phase.learning_rate, coefficients['encoder']),
          style_optim.lreq_adam(phase.learning_rate, coefficients['decoder']))


def create_style_state(model: style_model.StyleVAE, key: jax.Array, ema: bool = True):
  """`(state, lr_coefficients)`: initial networks, empty optimiser states (shapes of the first
  phase's; every phase's are the same), zero w average, and the EMA as a copy of the networks."""
  init_key, step_key = jax.random.split(key)
  enc, dec, coeffs = model.init(init_key)
  tx = style_optim.lreq_adam(0.0, coeffs['encoder'])
  state = StyleTrainState(step=jnp.zeros((), jnp.int32), encoder_params=enc, decoder_params=dec,
                          encoder_opt_state=tx.init(enc), decoder_opt_state=tx.init(dec),
                          dlatent_avg=jnp.zeros((model.num_styles, model.latent), jnp.float32),
                          rng=step_key)
  if ema:
    state = state.replace(ema={'encoder_params': enc, 'decoder_params': dec})
  return state, coeffs


def reset_optimizers(state: StyleTrainState, phase: Phase, coefficients) -> StyleTrainState:
  """Fresh optimiser states (v = 0, t = 0), as the reference wipes them at every lod switch."""
  tx_e, tx_d = make_optimizers(phase, coefficients)
  return state.replace(encoder_opt_state=tx_e.init(state.encoder_params),
                       decoder_opt_state=tx_d.init(state.decoder_params))


def ema_decay(batch: int, half_life_images: float) -> float:
  """The reference's EMA beta `0.5^(B / half_life)` (half-life 10k images, train L399)."""
  return 0.5 ** (batch / half_life_images) if half_life_images > 0 else 0.0


class _Draws:
  """One half-step's random numbers: per-example normals and noise-map keys, per-batch mixing."""

  def __init__(self, key, index, latent: int, lod: int, mixing_prob: float):
    normals = lambda i: per_example_normals(jax.random.fold_in(key, i), index, latent)
    self.z_fake, self.z_mix, self.eps_real, self.eps_rec, self.eps_fake = map(normals, range(5))
    self._key, self._index = key, index
    # Mixing: with probability mixing_prob per batch, slots < cutoff ~ U{1..2(lod+1)} take w1.
    self.mix = jax.random.uniform(jax.random.fold_in(key, 100)) < mixing_prob
    self.cutoff = jax.random.randint(jax.random.fold_in(key, 101), (), 1, 2 * (lod + 1) + 1)

  def noise_keys(self, call: int):
    """[B] keys of decoder call `call`'s noise maps, one per global example."""
    base = jax.random.fold_in(self._key, 1000 + call)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(self._index)


def _fade_input(x, alpha, fading: bool):
  """During a fade-in the real images blend with their 2x-downsampled, re-upsampled selves."""
  if not fading:
    return x
  return alpha * x + (1.0 - alpha) * style_layers.upscale2d(style_layers.downscale2d(x))


class _Calls:
  """The step's network calls at one (lod, alpha). Every layer of these networks works per
  example, so calls that do not depend on each other run as one call on the concatenated batch
  (fewer, larger convolutions; the same numbers). Each logical decoder call's batch-mean w is
  recorded, in the reference's call order, for the running average of w."""

  def __init__(self, model: style_model.StyleVAE, enc_params, dec_params, lod: int, alpha):
    self.model, self.enc_params, self.dec_params = model, enc_params, dec_params
    self.lod, self.alpha = lod, alpha
    self.w_means = []

  def E(self, *xs):
    """(mu, logvar) of each input batch, from one encoder call."""
    mu, logvar = self.model.encode(self.enc_params, jnp.concatenate(xs), self.lod, self.alpha)
    return list(zip(_split(mu, len(xs)), _split(logvar, len(xs))))

  def D(self, styles_and_ws, noise_keys):
    """Decodes each (styles [B, S, latent], w [B, latent]) pair in one decoder call."""
    styles, ws = zip(*styles_and_ws)
    self.w_means.extend(jnp.mean(sg(w), axis=0) for w in ws)
    out = self.model.synthesize(self.dec_params, jnp.concatenate(styles), self.lod, self.alpha,
                                jnp.concatenate(noise_keys))
    return _split(out, len(ws))

  def mapped(self, z):
    """(styles, w) of latents z without mixing."""
    w = self.model.mapping(self.dec_params, z)
    return self.model.repeat(w), w

  def prior(self, draws: _Draws):
    """(styles, w) of the prior sample, style-mixed with probability mixing_prob (model.py
    L185-194); w is the first latent's, which the reference averages."""
    w, w2 = _split(self.model.mapping(self.dec_params,
                                      jnp.concatenate([draws.z_fake, draws.z_mix])), 2)
    cutoff = jnp.where(draws.mix, draws.cutoff, self.model.num_styles)
    return style_model.mix_styles(w, w2, cutoff, self.model.num_styles), w


def _split(x, n: int):
  return jnp.split(x, n) if n > 1 else [x]


def _rec(target, out):
  return losses.reconstruction_error(target, out, 'mse')


def _mean_rec(target, out):
  return losses.mean_reconstruction_error(target, out, 'mse')


def encoder_objective(enc_params, dec_params, x, draws: _Draws, model, w: LossWeights, lod,
                      alpha):
  """`loss_E` w.r.t. the encoder half (model.py L217-262)."""
  net = _Calls(model, enc_params, dec_params, lod, alpha)
  [(mu, logvar)] = net.E(x)
  z = losses.reparameterize(mu, logvar, draws.eps_real)
  fake, rec = net.D([net.prior(draws), net.mapped(z)],
                    [draws.noise_keys(0), draws.noise_keys(1)])
  loss_rec = _mean_rec(x, rec)
  kl_real = jnp.mean(losses.kl_divergence(mu, logvar))
  # Generated data enters the encoder as a constant; r_i's target `rec` is not stopped (as in
  # ALGORITHM.md's encoder step).
  (rec_mu, rec_logvar), (fake_mu, fake_logvar) = net.E(sg(rec), sg(fake))
  rec_rec, rec_fake = net.D(
      [net.mapped(losses.reparameterize(rec_mu, rec_logvar, draws.eps_rec)),
       net.mapped(losses.reparameterize(fake_mu, fake_logvar, draws.eps_fake))],
      [draws.noise_keys(2), draws.noise_keys(3)])
  exp_elbo_rec = losses.exp_elbo(_rec(rec, rec_rec), losses.kl_divergence(rec_mu, rec_logvar),
                                 w.scale, w.beta_rec, w.beta_neg)
  exp_elbo_fake = losses.exp_elbo(_rec(sg(fake), rec_fake),
                                  losses.kl_divergence(fake_mu, fake_logvar), w.scale, w.beta_rec,
                                  w.beta_neg)
  loss = losses.encoder_loss(loss_rec, kl_real, exp_elbo_rec, exp_elbo_fake, w.scale, w.beta_rec,
                             w.beta_kl)
  aux = dict(loss_rec=loss_rec, kl_real=kl_real, exp_elbo_rec=exp_elbo_rec,
             exp_elbo_fake=exp_elbo_fake, loss_enc=loss)
  return loss, (aux, net.w_means)


def decoder_objective(dec_params, enc_params, x, draws: _Draws, model, w: LossWeights, lod, alpha):
  """`loss_D` w.r.t. the decoder half, with the updated encoder (model.py L264-298): x is
  re-encoded with fresh noise, the latents and the re-reconstructions' targets are stopped."""
  net = _Calls(model, enc_params, dec_params, lod, alpha)
  [(mu, logvar)] = net.E(x)
  z = sg(losses.reparameterize(mu, logvar, draws.eps_real))
  fake, rec = net.D([net.prior(draws), net.mapped(z)],
                    [draws.noise_keys(0), draws.noise_keys(1)])
  loss_rec = _mean_rec(x, rec)
  (rec_mu, rec_logvar), (fake_mu, fake_logvar) = net.E(rec, fake)
  rec_rec, rec_fake = net.D(
      [net.mapped(sg(losses.reparameterize(rec_mu, rec_logvar, draws.eps_rec))),
       net.mapped(sg(losses.reparameterize(fake_mu, fake_logvar, draws.eps_fake)))],
      [draws.noise_keys(2), draws.noise_keys(3)])
  kl_rec = jnp.mean(losses.kl_divergence(rec_mu, rec_logvar))
  kl_fake = jnp.mean(losses.kl_divergence(fake_mu, fake_logvar))
  loss = losses.decoder_loss(loss_rec, kl_rec, kl_fake, _mean_rec(sg(rec), rec_rec),
                             _mean_rec(sg(fake), rec_fake), w.scale, w.beta_rec, w.beta_kl,
                             w.gamma_r)
  return loss, (dict(kl_rec=kl_rec, kl_fake=kl_fake, loss_dec=loss), net.w_means)


def vae_objective(params, x, draws: _Draws, model, w: LossWeights, lod, alpha):
  """The warm-up: `beta_rec loss_rec + beta_kl KL`, no scale, both halves (model.py L299-318)."""
  enc_params, dec_params = params
  net = _Calls(model, enc_params, dec_params, lod, alpha)
  [(mu, logvar)] = net.E(x)
  [rec] = net.D([net.mapped(losses.reparameterize(mu, logvar, draws.eps_real))],
                [draws.noise_keys(1)])
  loss_rec = _mean_rec(x, rec)
  kl_real = jnp.mean(losses.kl_divergence(mu, logvar))
  loss = losses.vae_loss(loss_rec, kl_real, w.beta_rec, w.beta_kl)
  return loss, (dict(loss_rec=loss_rec, kl_real=kl_real, loss_vae=loss), net.w_means)


def make_style_train_step(model: style_model.StyleVAE, weights: LossWeights, phase: Phase,
                          coefficients, axis_name: Optional[str] = None, *,
                          mixing_prob: float = 0.9, ema_decay: float = 0.0,
                          dlatent_avg_beta: float = 0.995) -> Callable:
  """Returns `step(state, batch) -> (state, metrics)` for one progressive phase.

  `batch`: images in [0, 1], [B, R, R, C] at the phase's resolution R (mapped to [-1, 1] here, as
  the reference's `x / 127.5 - 1`). `weights.beta_neg` is replaced by the phase's. A non-finite
  step leaves the state unchanged but for `step` and reports `nonfinite = 1`, as the main step.
  `ema_decay`: 0 = off; else the EMA networks move toward the new ones after every step.
  """
  weights = LossWeights(beta_rec=weights.beta_rec, beta_kl=weights.beta_kl,
                        beta_neg=phase.beta_neg, gamma_r=weights.gamma_r, scale=weights.scale)
  tx_e, tx_d = make_optimizers(phase, coefficients)
  lod, fading = phase.lod, phase.fading

  def mean(tree):
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)

  def apply(tx, grads, opt_state, params):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  def soft_intro(state, x, key, index, alpha):
    draws_e = _Draws(jax.random.fold_in(key, 0), index, model.latent, lod, mixing_prob)
    (loss_e, (aux_e, w_e)), g_enc = jax.value_and_grad(encoder_objective, has_aux=True)(
        state.encoder_params, state.decoder_params, x, draws_e, model, weights, lod, alpha)
    g_enc = mean(g_enc)
    enc, enc_opt = apply(tx_e, g_enc, state.encoder_opt_state, state.encoder_params)
    draws_d = _Draws(jax.random.fold_in(key, 1), index, model.latent, lod, mixing_prob)
    (loss_d, (aux_d, w_d)), g_dec = jax.value_and_grad(decoder_objective, has_aux=True)(
        state.decoder_params, enc, x, draws_d, model, weights, lod, alpha)
    metrics = dict(aux_e, **aux_d, diff_kl=aux_d['kl_fake'] - aux_e['kl_real'])
    g_dec, metrics, w_means, finite = mean((g_dec, metrics, jnp.stack(w_e + w_d),
                                            finite_fraction(loss_e, loss_d)))
    dec, dec_opt = apply(tx_d, g_dec, state.decoder_opt_state, state.decoder_params)
    new = state.replace(encoder_params=enc, decoder_params=dec, encoder_opt_state=enc_opt,
                        decoder_opt_state=dec_opt)
    return new, dict(metrics, soft_intro=1.0), w_means, (finite == 1.0) & _all_finite(g_enc,
                                                                                      g_dec)

  def vanilla_vae(state, x, key, index, alpha):
    draws = _Draws(jax.random.fold_in(key, 0), index, model.latent, lod, mixing_prob)
    (loss, (aux, w_means)), (g_enc, g_dec) = jax.value_and_grad(vae_objective, has_aux=True)(
        (state.encoder_params, state.decoder_params), x, draws, model, weights, lod, alpha)
    g_enc, g_dec, aux, w_means, finite = mean((g_enc, g_dec, aux, jnp.stack(w_means),
                                               finite_fraction(loss)))
    enc, enc_opt = apply(tx_e, g_enc, state.encoder_opt_state, state.encoder_params)
    dec, dec_opt = apply(tx_d, g_dec, state.decoder_opt_state, state.decoder_params)
    new = state.replace(encoder_params=enc, decoder_params=dec, encoder_opt_state=enc_opt,
                        decoder_opt_state=dec_opt)
    return new, dict(aux, soft_intro=0.0), w_means, (finite == 1.0) & _all_finite(g_enc, g_dec)

  branch = vanilla_vae if phase.kind == 'vae' else soft_intro

  def step(state: StyleTrainState, batch: jax.Array):
    if batch.shape[1] != phase.resolution:
      raise ValueError(f'Phase {phase.name} needs {phase.resolution}x{phase.resolution} images; '
                       f'got {batch.shape}.')
    key = jax.random.fold_in(state.rng, state.step)
    index = global_example_index(batch.shape[0], axis_name)
    alpha = jnp.asarray(progressive.alpha(phase, state.step), jnp.float32)
    x = _fade_input(2.0 * batch.astype(jnp.float32) - 1.0, alpha, fading)
    new, metrics, w_means, finite = branch(state, x, key, index, alpha if fading else None)
    finite = finite & _all_finite(_networks(new), new.encoder_opt_state, new.decoder_opt_state)
    new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
    avg = state.dlatent_avg
    for w_mean in w_means:  # every decoder call moves the running w average, in call order
      avg = avg + (1.0 - dlatent_avg_beta) * (w_mean[None] - avg)
    new = new.replace(step=state.step + 1, dlatent_avg=jnp.where(finite, avg, state.dlatent_avg))
    if ema_decay:
      new = new.replace(ema=optax.incremental_update(_networks(new), state.ema,
                                                     1.0 - ema_decay))
    metrics = {k: jnp.asarray(metrics.get(k, 0.0), jnp.float32) for k in METRIC_NAMES}
    metrics.update(nonfinite=1.0 - finite.astype(jnp.float32), alpha=alpha,
                   learning_rate=jnp.float32(phase.learning_rate),
                   resolution=jnp.float32(phase.resolution))
    return new, metrics

  return step


def _all_finite(*trees) -> jax.Array:
  """Whether every float in `trees` is finite: one reduction over their concatenation (one
  fused loop, not one per tensor: a check per tensor of ~300 costs seconds of compile time)."""
  leaves = [jnp.ravel(x) for x in jax.tree.leaves(trees) if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.all(jnp.isfinite(jnp.concatenate(leaves)))


def _networks(state: StyleTrainState):
  return {'encoder_params': state.encoder_params, 'decoder_params': state.decoder_params}


def sample(model: style_model.StyleVAE, dec_params, dlatent_avg, key: jax.Array, num: int,
           lod: Optional[int] = None, psi: float = 1.0, cutoff: int = 8,
           mix_key: Optional[jax.Array] = None, noise: bool = True, alpha=None) -> jax.Array:
  """`num` images in [0, 1] from the prior, at `lod` (default: full size).

  `psi < 1`: truncation toward `dlatent_avg` on style slots < `cutoff`. `mix_key`: style mixing,
  each image with a second latent from slot c ~ U{1..num_styles-1} on (None: no mixing).
  `alpha`: the fade-in blend at `lod` (None: none).
  """
  lod = model.layer_count - 1 if lod is None else lod
  k_z, k_noise = jax.random.split(key)
  z = jax.random.normal(k_z, (num, model.latent))
  w = model.mapping(dec_params, z)
  styles = model.repeat(w)
  if mix_key is not None:
    k_z2, k_c = jax.random.split(mix_key)
    w2 = model.mapping(dec_params, jax.random.normal(k_z2, (num, model.latent)))
    mix_at = jax.random.randint(k_c, (num, 1, 1), 1, model.num_styles)  # one per image
    styles = style_model.mix_styles(w, w2, mix_at, model.num_styles)
  if psi != 1.0:
    styles = style_model.truncate(styles, dlatent_avg, psi, cutoff)
  noise_keys = jax.random.split(k_noise, num) if noise else None
  return to_unit(model.synthesize(dec_params, styles, lod, alpha, noise_keys))


def to_unit(images: jax.Array) -> jax.Array:
  """[-1, 1] network outputs -> [0, 1], clipped (the reference's `0.5 y + 0.5`, clipped)."""
  return jnp.clip(0.5 * images + 0.5, 0.0, 1.0)


def reconstruct(model: style_model.StyleVAE, enc_params, dec_params, images: jax.Array,
                lod: Optional[int] = None, key: Optional[jax.Array] = None,
                alpha=None) -> jax.Array:
  """D(mu(x)) in [0, 1] for images in [0, 1] at lod's resolution (noise from `key`, or off;
  `alpha`: the fade-in blend at `lod`, None: none)."""
  lod = model.layer_count - 1 if lod is None else lod
  mu, _ = model.encode(enc_params, 2.0 * images - 1.0, lod, alpha)
  noise_keys = None if key is None else jax.random.split(key, images.shape[0])
  return to_unit(model.decode(dec_params, mu, lod, alpha, noise_keys))


def interpolate(model: style_model.StyleVAE, dec_params, z0, z1, steps: int,
                lod: Optional[int] = None) -> jax.Array:
  """A strip of `steps` images decoded along the line z0 -> z1 (noise off, for a smooth strip)."""
  lod = model.layer_count - 1 if lod is None else lod
  t = jnp.linspace(0.0, 1.0, steps)[:, None]
  return to_unit(model.decode(dec_params, (1 - t) * z0 + t * z1, lod))

