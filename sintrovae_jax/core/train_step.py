"""`make_train_step`: one pure, jittable Soft-IntroVAE iteration, embeddable in any JAX program.

The step draws every random number from `fold_in(state.rng, state.step)`, per *global example
index* (device offset + position), so that the same seed and global batch train the same model on
any number of devices. With `axis_name` set (under `jax.pmap`, `shard_map` or an equivalent named
axis), gradients, metrics and BatchNorm statistics are averaged over that axis.

Training options, all off by default (the published step is then unchanged bit for bit):
weight EMA (`ema_decay`), differentiable augmentation of the encoder's inputs (`augment`,
`augment_p`; core/augment.py) and the bootstrap variant (`variant='bootstrap'`, a target
decoder refreshed from D every `bootstrap_refresh_steps`; VARIANTS.md section 2).
"""

import functools
from typing import Callable, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import optax

from sintrovae_jax.core import augment as augment_lib, losses, objectives
from sintrovae_jax.core.objectives import Draws, LossWeights
from sintrovae_jax.core.train_state import TrainState, averaged_part
from sintrovae_jax.core.vae import SoftIntroVAE

Metrics = Dict[str, jax.Array]
StepFn = Callable[[TrainState, jax.Array], Tuple[TrainState, Metrics]]

METRIC_NAMES = ('loss_rec', 'kl_real', 'kl_fake', 'kl_rec', 'diff_kl', 'exp_elbo_fake',
                'exp_elbo_rec', 'loss_enc', 'loss_dec', 'loss_vae', 'rec_error_deterministic',
                'learning_rate', 'soft_intro', 'nonfinite')


sg = jax.lax.stop_gradient


def global_example_index(batch_size: int, axis_name: Optional[str]) -> jax.Array:
  """Global positions of this device's examples: `axis_index * batch_size + arange(batch_size)`."""
  offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * batch_size
  return offset + jnp.arange(batch_size)


def per_example_normals(key: jax.Array, example_index: jax.Array, z_dim: int) -> jax.Array:
  """[B, z_dim] standard normals; example i's row depends on (key, i) alone."""
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (z_dim,)))(example_index)


def draw_normals(key: jax.Array, example_index: jax.Array, z_dim: int) -> Draws:
  """Every standard-normal draw of one iteration; example i's draws depend on (key, i) alone."""
  keys = jax.random.split(key, len(Draws._fields))
  return Draws(*[per_example_normals(k, example_index, z_dim) for k in keys])


def _mean(tree, axis_name):
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def finite_fraction(*losses) -> jax.Array:
  """1.0 if every loss is finite, else 0.0: averaged over devices, 1.0 means all devices agree."""
  return jnp.all(jnp.isfinite(jnp.stack(losses))).astype(jnp.float32)


def _all_finite(*trees) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for t in trees for x in jax.tree.leaves(t)]
  return jnp.all(jnp.stack(leaves))


PHASES = ('auto', 'vae', 'soft_intro')
VARIANTS = ('standard', 'bootstrap', 'points')
# The augmentation's draws and the 3D variant's redrawn decoder latents come from their own
# streams of the step's key (the normals' stream, `draw_normals`, is left exactly as it was).
_AUGMENT_STREAM = 0x617567
_POINTS_STREAM = 0x707473


def make_train_step(model: SoftIntroVAE, weights: LossWeights, num_vae_steps: int = 0,
                    axis_name: Optional[str] = None, phase: str = 'auto', *,
                    ema_decay: float = 0.0, augment: Sequence[str] = (), augment_p: float = 0.5,
                    variant: str = 'standard',
                    bootstrap_refresh_steps: Optional[int] = None) -> StepFn:
  """Returns `step(state, batch) -> (state, metrics)`, a pure function to jit or pmap.

  Steps `t < num_vae_steps` are vanilla-VAE steps (one Adam step on both networks); later steps are
  one Soft-IntroVAE iteration: an encoder update, then a decoder update with the updated encoder.
  A step whose loss, gradients or new state (parameters, optimiser states, BatchNorm statistics)
  are not finite leaves the state unchanged but for `state.step`, which advances, and reports
  `metrics['nonfinite'] = 1`.

  Args:
    model: the networks; their BatchNorm layers are re-targeted to `axis_name` here.
    weights: betas, gamma_r, scale and the reconstruction loss.
    num_vae_steps: length of the vanilla-VAE warm-up, in steps.
    axis_name: the named device axis to average over, or None on one device.
    phase: 'auto' picks the step kind from `state.step` on the device (a `lax.cond`); 'vae' or
      'soft_intro' fix it when the caller knows the phase, which spares accelerators the
      predicate's round trip to the host and keeps `vmap` from running both branches.
    ema_decay: 0 = off; else `ema <- decay * ema + (1 - decay) * new` after every step (warm-up
      included) over both networks' parameters and BatchNorm statistics (`optax.incremental_update`;
      the state needs `create_train_state(..., ema=True)`).
    augment: kinds of differentiable augmentation of every encoder input ('translation',
      'cutout'; empty = off), each applied per example with probability `augment_p`.
    variant: 'standard' (ALGORITHM.md) or 'bootstrap' (VARIANTS.md 2: the re-reconstructions come
      from a frozen target decoder, copied from D, parameters and statistics, after every
      `bootstrap_refresh_steps`-th step (`optax.periodic_update`; the reference refreshes once
      per epoch); the state needs `create_train_state(..., target=True)`); or 'points' (the 3D
      variant's differences, VARIANTS.md 3.3: the encoder's r_i target is stopped, and the decoder
      update reconstructs from a z redrawn from the stopped posterior with fresh noise; with
      `recon_loss='chamfer'` and `prior_std` in the weights).
  """
  if phase not in PHASES:
    raise ValueError(f'phase={phase!r} is not one of {PHASES}.')
  if variant not in VARIANTS:
    raise ValueError(f'variant={variant!r} is not one of {VARIANTS}.')
  if not 0.0 <= ema_decay < 1.0:
    raise ValueError(f'ema_decay={ema_decay!r}: expected 0 (off) or a decay in (0, 1).')
  augment = tuple(augment)
  augment_lib.parse(','.join(augment))  # raises on unknown kinds
  bootstrap, points = variant == 'bootstrap', variant == 'points'
  if bootstrap and not (isinstance(bootstrap_refresh_steps, int) and bootstrap_refresh_steps > 0):
    raise ValueError(f"variant='bootstrap' needs bootstrap_refresh_steps, a positive number of "
                     f'steps (the reference: one epoch); got {bootstrap_refresh_steps!r}.')
  model = model.with_axis_name(axis_name)

  def optimizer_step(tx, grads, opt_state, params):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  def soft_intro(state: TrainState, batch, draws, per_step):
    stats, extra = state.batch_stats, dict(augment=per_step['augment'])
    if bootstrap:
      stats = dict(stats, target=state.target['batch_stats'])
      extra['target_params'] = state.target['params']
    grad_e = jax.value_and_grad(
        functools.partial(objectives.encoder_objective, points=points, **extra), has_aux=True)
    (loss_e, (stats, aux_e)), g_enc = grad_e(state.encoder_params, state.decoder_params,
                                             stats, batch, draws, model, weights)
    g_enc = _mean(g_enc, axis_name)
    enc_params, enc_opt = optimizer_step(state.tx, g_enc, state.encoder_opt_state,
                                         state.encoder_params)

    grad_d = jax.value_and_grad(functools.partial(objectives.decoder_objective, **extra),
                                has_aux=True)
    z = aux_e.pop('z')
    if points:  # VARIANTS.md 3.3 (b): z redrawn from the (pre-update) encoder's posterior
      z = losses.reparameterize(sg(aux_e.pop('mu')), sg(aux_e.pop('logvar')),
                                per_step['eps_z_decoder'])
    (loss_d, (stats, aux_d)), g_dec = grad_d(state.decoder_params, enc_params, stats, batch, z,
                                             draws, model, weights)
    metrics = dict(aux_e, **aux_d, diff_kl=aux_d['kl_fake'] - aux_e['kl_real'],
                   soft_intro=jnp.ones(()))
    # One reduction for the decoder's gradients, the metrics and the losses' finiteness.
    g_dec, metrics, losses_finite = _mean((g_dec, metrics, finite_fraction(loss_e, loss_d)),
                                          axis_name)
    dec_params, dec_opt = optimizer_step(state.tx, g_dec, state.decoder_opt_state,
                                         state.decoder_params)

    if bootstrap:  # the target's statistics advanced in its training-mode calls
      stats = dict(stats)
      target = dict(state.target, batch_stats=stats.pop('target'))
    else:
      target = state.target
    new = state.replace(encoder_params=enc_params, decoder_params=dec_params, batch_stats=stats,
                        encoder_opt_state=enc_opt, decoder_opt_state=dec_opt, target=target)
    return new, metrics, (losses_finite == 1.0) & _all_finite(g_enc, g_dec)

  def vanilla_vae(state: TrainState, batch, draws, per_step):
    grad_fn = jax.value_and_grad(
        functools.partial(objectives.vae_objective, augment=per_step['augment']), has_aux=True)
    (loss, (stats, aux)), (g_enc, g_dec) = grad_fn(
        (state.encoder_params, state.decoder_params), state.batch_stats, batch, draws, model,
        weights)
    g_enc, g_dec, aux, loss_finite = _mean((g_enc, g_dec, aux, finite_fraction(loss)),
                                           axis_name)
    enc_params, enc_opt = optimizer_step(state.tx, g_enc, state.encoder_opt_state,
                                         state.encoder_params)
    dec_params, dec_opt = optimizer_step(state.tx, g_dec, state.decoder_opt_state,
                                         state.decoder_params)
    new = state.replace(encoder_params=enc_params, decoder_params=dec_params, batch_stats=stats,
                        encoder_opt_state=enc_opt, decoder_opt_state=dec_opt)
    return (new, dict(aux, soft_intro=jnp.zeros(())),
            (loss_finite == 1.0) & _all_finite(g_enc, g_dec))

  def with_all_metrics(branch):
    """Same metric keys from both branches (lax.cond needs one output structure)."""
    def run(state, batch, draws, per_step):
      new, metrics, finite = branch(state, batch, draws, per_step)
      metrics = {k: jnp.asarray(metrics.get(k, 0.0), jnp.float32) for k in METRIC_NAMES
                 if k not in ('learning_rate', 'nonfinite')}
      return new, metrics, finite
    return run

  def encoder_augmentation(key, index, batch):
    """The encoder's input transform for this step (None: augmentation off)."""
    if not augment:
      return None
    if batch.ndim != 4:
      raise ValueError(f'augment={augment} needs image batches [B, H, W, C]; got shape '
                       f'{batch.shape}.')
    aug = augment_lib.draw(jax.random.fold_in(key, _AUGMENT_STREAM), index, batch.shape[1:3],
                           augment, augment_p)
    return functools.partial(augment_lib.apply, aug=aug)

  def step(state: TrainState, batch: jax.Array) -> Tuple[TrainState, Metrics]:
    if ema_decay and state.ema is None:
      raise ValueError('ema_decay > 0 needs a state with an EMA: '
                       'create_train_state(..., ema=True).')
    if bootstrap and state.target is None:
      raise ValueError("variant='bootstrap' needs a state with a target decoder: "
                       'create_train_state(..., target=True).')
    key = jax.random.fold_in(state.rng, state.step)
    index = global_example_index(batch.shape[0], axis_name)
    draws = draw_normals(key, index, model.z_dim)
    # Per-step inputs beyond the normals: the encoder's input transform, the redrawn latents' noise.
    per_step = {'augment': encoder_augmentation(key, index, batch), 'eps_z_decoder': None}
    if points:
      per_step['eps_z_decoder'] = per_example_normals(jax.random.fold_in(key, _POINTS_STREAM),
                                                      index, model.z_dim)
    soft, vae = with_all_metrics(soft_intro), with_all_metrics(vanilla_vae)
    if phase == 'vae':
      new, metrics, finite = vae(state, batch, draws, per_step)
    elif phase == 'soft_intro' or num_vae_steps == 0:
      new, metrics, finite = soft(state, batch, draws, per_step)
    else:
      new, metrics, finite = jax.lax.cond(state.step < num_vae_steps,
                                          functools.partial(vae, per_step=per_step),
                                          functools.partial(soft, per_step=per_step), state, batch,
                                          draws)
    # Skip a non-finite update wholesale: never write NaN into the state (ALGORITHM.md, D step 7).
    # The new state itself is checked too: finite gradients can still overflow the parameters
    # (an infinite learning rate) or Adam's second moments (huge betas). Every device reaches the
    # same verdict: the losses' finiteness was averaged with the gradients, and gradients,
    # BatchNorm statistics and hence the new state are the same (all-reduced) values on every
    # device. With several devices the verdict still goes through one scalar all-reduce: computed
    # locally, its AND over ~150 tensors' flags is copied by XLA into each of the ~150 selects
    # below (one fusion each), which doubled the step's compile time (the translation step on 2
    # CPU devices: 11-12 s against 4.5 s on one; 5.4 s with the all-reduce). A step made without
    # an axis_name is unchanged.
    finite = finite & _all_finite(new.encoder_params, new.decoder_params, new.batch_stats,
                                  new.encoder_opt_state, new.decoder_opt_state, new.target)
    if axis_name is not None:
      finite = jax.lax.pmin(finite.astype(jnp.int32), axis_name) == 1
    new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
    metrics['nonfinite'] = 1.0 - finite.astype(jnp.float32)
    metrics['learning_rate'] = _learning_rate(new)
    new = new.replace(step=state.step + 1)
    if ema_decay:  # after every step, from the kept networks (a skipped step's are the old ones)
      new = new.replace(ema=optax.incremental_update(averaged_part(new), state.ema,
                                                     1.0 - ema_decay))
    if bootstrap:  # T <- D after every bootstrap_refresh_steps-th step (the reference: each epoch)
      fresh = {'params': new.decoder_params, 'batch_stats': new.batch_stats['decoder']}
      new = new.replace(target=optax.periodic_update(fresh, new.target, new.step,
                                                     bootstrap_refresh_steps))
    return new, metrics

  return step


def steps_in_one_call(step_fn: Callable) -> Callable:
  """`step_fn` run n times in one compiled call: `(state, batches [K, ...], n) -> (state,
  metrics [K, ...])`, on the first n <= K batches; metrics past n are zeros.

  n is an argument, not a constant, so one program serves every n and XLA cannot specialise the
  loop: a run with k steps per call equals one with any other k bit for bit (within one
  program's loop body). A lone `step_fn` call is compiled with other fusions than the loop body
  and equals it to float32 rounding only.
  """

  def run(state, batches, n):
    _, shapes = jax.eval_shape(step_fn, state, batches[0])
    metrics = jax.tree.map(lambda v: jnp.zeros((batches.shape[0],) + v.shape, v.dtype), shapes)

    def body(i, carry):
      state, metrics = carry
      state, m = step_fn(state, jax.lax.dynamic_index_in_dim(batches, i, keepdims=False))
      return state, jax.tree.map(lambda a, v: jax.lax.dynamic_update_index_in_dim(a, v, i, 0),
                                 metrics, m)

    return jax.lax.fori_loop(0, n, body, (state, metrics))

  return run


def _learning_rate(state: TrainState) -> jax.Array:
  """The learning rate of the encoder's last Adam update (from its injected hyper-parameters)."""
  hp = getattr(state.encoder_opt_state, 'hyperparams', None)
  if hp is not None and 'learning_rate' in hp:
    return jnp.asarray(hp['learning_rate'], jnp.float32)
  return jnp.asarray(jnp.nan, jnp.float32)
