"""Final evaluations of a trained model, TensorFlow-free (the 2D reproduction script uses them).

Points: ALGORITHM.md's 2D metrics (kl, jsd, gnelbo) plus the deterministic reconstruction error.
Images: deterministic reconstruction error, KL and negative ELBO (z = mu, unit betas).
"""

from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sintrovae_jax import inference, losses, metrics_2d
from sintrovae_jax.train_state import TrainState
from sintrovae_jax.vae import SoftIntroVAE


def batched(fn: Callable, x: np.ndarray, size: int = 65_536) -> np.ndarray:
  """`fn` over `x` in chunks of `size` rows (bounded memory for a 1024 x 1024 grid)."""
  return np.concatenate([np.asarray(fn(x[i:i + size])) for i in range(0, len(x), size)])


def density_on_grid(model: SoftIntroVAE, state: TrainState, grid_range: float,
                    size: int = 200) -> np.ndarray:
  """`exp(-(KL + REC))` on a size x size grid over [-r, r]^2 (row-major, y outer)."""
  nelbo = batched(jax.jit(lambda x: inference.negative_elbo(model, state, x)),
                  metrics_2d.grid(grid_range, size))
  return np.exp(-nelbo).reshape(size, size)


def evaluate_points(model: SoftIntroVAE, state: TrainState, real: np.ndarray,
                    gnelbo_data: np.ndarray, grid_range: float, seed: int,
                    mode_centres: Optional[np.ndarray] = None) -> Dict[str, float]:
  """`real`: held-out points, as many as are generated; `gnelbo_data`: the 12,800 data points.

  With `mode_centres` (8Gaussians), also `modes_covered`: how many the generated samples reach.
  """
  rec_error = jax.jit(lambda x: losses.reconstruction_error(
      x, inference.reconstruct(model, state, x)))
  results = {'rec_error_deterministic': float(np.mean(batched(rec_error, real)))}
  if real.shape[1] == 2:
    fake = np.asarray(inference.sample(model, state, jax.random.PRNGKey(seed), len(real)))
    results.update(metrics_2d.kl_and_jsd(real, fake, grid_range))
    if mode_centres is not None:
      results['modes_covered'] = metrics_2d.modes_covered(fake, mode_centres)
    nelbo = jax.jit(lambda x: inference.negative_elbo(model, state, x))
    results['gnelbo'] = metrics_2d.grid_normalised_elbo(lambda x: batched(nelbo, x), gnelbo_data,
                                                        grid_range)
  return results


def evaluate_images(model: SoftIntroVAE, state: TrainState, images: np.ndarray,
                    recon_loss: str = 'mse') -> Dict[str, float]:
  """Means over `images` of the squared error of D(mu), the KL, and their sum."""

  def per_image(x):
    mu, logvar = inference.encode(model, state, x)
    rec = inference.decode(model, state, mu, recon_loss)
    return jnp.stack([losses.reconstruction_error(x, rec), losses.kl_divergence(mu, logvar)], -1)

  values = batched(jax.jit(per_image), images, size=64)
  return {'rec_error_deterministic': float(values[:, 0].mean()), 'kl': float(values[:, 1].mean()),
          'neg_elbo': float(values.sum(1).mean()), 'num_examples': int(len(images))}
