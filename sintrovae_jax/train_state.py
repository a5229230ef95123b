"""The train state (two networks, their Adam states, BatchNorm statistics, step, key) and its optimiser."""

from typing import Any, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import optax

from sintrovae_jax.vae import SoftIntroVAE


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


def learning_rate_schedule(learning_rate: float, decay_steps: Sequence[int] = (),
                           decay_factor: float = 0.1) -> optax.Schedule:
  """`learning_rate`, multiplied by `decay_factor` from each step in `decay_steps` on.

  Same as the reference's MultiStepLR stepped once per iteration: update number t (0-based)
  uses `lr * factor**#{m in decay_steps: m <= t}`.
  """
  return optax.piecewise_constant_schedule(learning_rate,
                                           {int(m): decay_factor for m in decay_steps})


def make_optimizer(schedule: optax.Schedule) -> optax.GradientTransformation:
  """Adam(0.9, 0.999, eps 1e-8), PyTorch's defaults; the current rate is kept in its state."""
  return optax.inject_hyperparams(optax.adam)(learning_rate=schedule, b1=0.9, b2=0.999, eps=1e-8)


def create_train_state(model: SoftIntroVAE, key: jax.Array, data_shape: Sequence[int],
                       tx: optax.GradientTransformation) -> TrainState:
  """Initialises both networks (PyTorch-style init), their optimiser states and the step key."""
  init_key, step_key = jax.random.split(key)
  enc_params, dec_params, stats = model.init(init_key, data_shape)
  return TrainState(step=jnp.zeros((), jnp.int32), encoder_params=enc_params,
                    decoder_params=dec_params, batch_stats=stats,
                    encoder_opt_state=tx.init(enc_params), decoder_opt_state=tx.init(dec_params),
                    rng=step_key, tx=tx)
