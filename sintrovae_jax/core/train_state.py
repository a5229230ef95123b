"""The train state (two networks, their Adam states, BatchNorm statistics, step, key) and its optimiser.

Two optional parts, None unless their option is on: `ema`, the exponential moving average of both
networks (config `ema_decay`), and `target`, the bootstrap variant's target decoder.
"""

import functools
from typing import Any, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import optax

from sintrovae_jax.core.vae import SoftIntroVAE


class TrainState(flax.struct.PyTreeNode):
  """Everything one Soft-IntroVAE iteration reads and writes. `tx` is static (not a pytree leaf)."""
  step: jax.Array
  encoder_params: Any
  decoder_params: Any
  batch_stats: Any  # {'encoder': ..., 'decoder': ...}
  encoder_opt_state: Any
  decoder_opt_state: Any
  rng: jax.Array  # base key; the draws of step t come from fold_in(rng, t)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  # {'encoder_params', 'decoder_params', 'batch_stats'}: weight EMA, or None.
  ema: Any = None
  # {'params', 'batch_stats'}: the bootstrap variant's target decoder, or None.
  target: Any = None


def learning_rate_schedule(learning_rate: float, decay_steps: Sequence[int] = (),
                           decay_factor: float = 0.1) -> optax.Schedule:
  """`learning_rate`, multiplied by `decay_factor` from each step in `decay_steps` on.

  Same as the reference's MultiStepLR stepped once per iteration: update number t (0-based)
  uses `lr * factor**#{m in decay_steps: m <= t}`. Equal arguments give the same schedule object
  (below, `make_optimizer`: why).
  """
  return _cached(_piecewise, learning_rate, tuple(int(m) for m in decay_steps), decay_factor)


def make_optimizer(schedule: optax.Schedule) -> optax.GradientTransformation:
  """Adam(0.9, 0.999, eps 1e-8), PyTorch's defaults; the current rate is kept in its state.

  One optimiser object per schedule (and one schedule object per arguments, above): the state
  carries its optimiser as static data, so two states built alike (a run resumed in the same
  process, a notebook cell run again) have the same tree structure, and the programs compiled
  for one are found in JAX's in-memory caches for the other, not traced, lowered and loaded again.
  """
  return _cached(_adam, schedule)


def _adam(schedule) -> optax.GradientTransformation:
  return optax.inject_hyperparams(optax.adam)(learning_rate=schedule, b1=0.9, b2=0.999, eps=1e-8)


def _piecewise(learning_rate, decay_steps: tuple, decay_factor) -> optax.Schedule:
  return optax.piecewise_constant_schedule(learning_rate, {m: decay_factor for m in decay_steps})


_memo = functools.lru_cache(maxsize=64, typed=True)(lambda build, *args: build(*args))


def _cached(build, *args):
  """`build(*args)`, the same object for equal arguments; unhashable ones (arrays) build anew."""
  try:
    hash(args)
  except TypeError:  # an unhashable argument (only this: an error of `build` itself propagates)
    return build(*args)
  return _memo(build, *args)


def create_train_state(model: SoftIntroVAE, key: jax.Array, data_shape: Sequence[int],
                       tx: optax.GradientTransformation, ema: bool = False,
                       target: bool = False) -> TrainState:
  """Initialises both networks (PyTorch-style init), their optimiser states and the step key.

  `ema`: also keep a weight EMA, starting as a copy of the initial networks. `target`: also a
  target decoder for the bootstrap variant, with its own random initialisation (as the
  reference's, VARIANTS.md 2.1: it is not a copy of D until the first refresh).
  Compiled, in two programs instead of a hundred small eager ones (seconds at start-up): the
  networks' initialisation, the costly one (a random draw per parameter), depends on the model and
  the data's shape only, so that states with other optimisers or options share it (and the target
  decoder is the same program under another key); the optimiser's state is the other.
  """
  data_shape = tuple(data_shape)
  init_key, step_key = jax.random.split(key)
  enc_params, dec_params, stats = _init_networks(model, init_key, data_shape)
  state = _with_optimizer(tx, ema, enc_params, dec_params, stats, step_key)
  if target:
    _, target_params, target_stats = _init_networks(model, jax.random.fold_in(key, 1), data_shape)
    state = state.replace(target={'params': target_params,
                                  'batch_stats': target_stats['decoder']})
  return state


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_networks(model, key, data_shape):
  return model.init(key, data_shape)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _with_optimizer(tx, ema, enc_params, dec_params, stats, step_key) -> TrainState:
  """The state around freshly initialised networks: step 0, `tx`'s state, the EMA's copy."""
  state = TrainState(step=jnp.zeros((), jnp.int32), encoder_params=enc_params,
                     decoder_params=dec_params, batch_stats=stats,
                     encoder_opt_state=tx.init(enc_params), decoder_opt_state=tx.init(dec_params),
                     rng=step_key, tx=tx)
  if ema:  # (the program's outputs: buffers of their own, as the train step donates the state's)
    state = state.replace(ema=averaged_part(state))
  return state


def averaged_part(state: TrainState):
  """What the weight EMA averages: both networks' parameters and their BatchNorm statistics."""
  return {'encoder_params': state.encoder_params, 'decoder_params': state.decoder_params,
          'batch_stats': state.batch_stats}


def ema_view(state: TrainState) -> TrainState:
  """`state` with its EMA networks in place of the trained ones (itself if it keeps no EMA), for
  sampling and evaluation with the functions that take a state."""
  if state.ema is None:
    return state
  return state.replace(**state.ema)
