"""Translation with a trained two-encoder model: x_class's identity in x_content's pose.

Codes are the posterior means in evaluation mode (BatchNorm's running averages), as for
reconstructions (core/inference.py).
"""

import jax
import jax.numpy as jnp
import numpy as np

from sintrovae_jax.core import inference
from sintrovae_jax.core.train_state import TrainState
from sintrovae_jax.core.vae import SoftIntroVAE


def codes(model: SoftIntroVAE, state: TrainState, x: jax.Array):
  """(class codes [B, class_dim], content codes [B, content_dim]): the posterior means of x."""
  mu, _ = inference.encode(model, state, x)
  k = model.encoder.class_dim
  return mu[:, :k], mu[:, k:]


def decode_codes(model: SoftIntroVAE, state: TrainState, class_codes, content_codes,
                 recon_loss: str = 'mse') -> jax.Array:
  """The generator's images of `[class_codes, content_codes]` (row by row), in data space."""
  return inference.decode(model, state, jnp.concatenate([class_codes, content_codes], -1),
                          recon_loss)


def translate(model: SoftIntroVAE, state: TrainState, x_class: jax.Array, x_content: jax.Array,
              recon_loss: str = 'mse') -> jax.Array:
  """Decodes `[z_class(x_class[b]), z_content(x_content[b])]` for each b: the identity (class)
  of x_class in the pose (content) of x_content. Both [B, H, W, C] in [0, 1]."""
  class_codes, _ = codes(model, state, x_class)
  _, content_codes = codes(model, state, x_content)
  return decode_codes(model, state, class_codes, content_codes, recon_loss)


def translation_grid(model: SoftIntroVAE, state: TrainState, identities: np.ndarray,
                     poses: np.ndarray, recon_loss: str = 'mse') -> np.ndarray:
  """The paper's grid, [(n + 1) * (m + 1), H, W, C] row by row for `m + 1` columns: an empty
  (white) corner, the m pose images along the top row, the n identity images down the left column,
  and at (i, j) identity i translated into pose j."""
  identities, poses = np.asarray(identities, np.float32), np.asarray(poses, np.float32)
  n, m = len(identities), len(poses)
  class_codes, _ = codes(model, state, identities)
  _, content_codes = codes(model, state, poses)
  cells = decode_codes(model, state, jnp.repeat(class_codes, m, axis=0),
                       jnp.tile(content_codes, (n, 1)), recon_loss)
  cells = np.clip(np.asarray(cells), 0.0, 1.0).reshape((n, m) + poses.shape[1:])
  rows = [np.concatenate([np.ones_like(poses[:1]), poses])]  # a blank (white) corner
  rows += [np.concatenate([identities[i:i + 1], cells[i]]) for i in range(n)]
  return np.concatenate(rows)
