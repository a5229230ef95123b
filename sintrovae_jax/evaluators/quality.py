"""Final evaluations of a trained model, TensorFlow-free (the 2D reproduction script uses them).

Points: ALGORITHM.md's 2D metrics (kl, jsd, gnelbo) plus the deterministic reconstruction error.
Images: deterministic reconstruction error, KL and negative ELBO (z = mu, unit betas).
"""

import functools
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sintrovae_jax.core import inference, losses
from sintrovae_jax.core.train_state import TrainState
from sintrovae_jax.core.vae import SoftIntroVAE
from sintrovae_jax.evaluators import metrics_2d, metrics_3d


def batched(fn: Callable, x: np.ndarray, size: int = 65_536) -> np.ndarray:
  """`fn` over `x` in chunks of `size` rows (bounded memory for a 1024 x 1024 grid)."""
  return np.concatenate([np.asarray(fn(x[i:i + size])) for i in range(0, len(x), size)])


# Compiled once per model (and size): the state is an argument, not a constant folded into the
# program, so evaluating another state, or the same one again, reuses the compiled program.
_negative_elbo = jax.jit(inference.negative_elbo, static_argnums=0)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _reconstruction_errors(model, state, x, recon_loss='mse'):
  return losses.reconstruction_error(x, inference.reconstruct(model, state, x), recon_loss)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _image_errors(model, state, x, recon_loss):
  """Per image: the squared error of D(mu) and the KL."""
  mu, logvar = inference.encode(model, state, x)
  rec = inference.decode(model, state, mu, recon_loss)
  return jnp.stack([losses.reconstruction_error(x, rec), losses.kl_divergence(mu, logvar)], -1)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _cloud_samples(model, state, key, num, prior_std):
  return inference.sample(model, state, key, num, prior_std=prior_std)


def density_on_grid(model: SoftIntroVAE, state: TrainState, grid_range: float,
                    size: int = 200) -> np.ndarray:
  """`exp(-(KL + REC))` on a size x size grid over [-r, r]^2 (row-major, y outer)."""
  nelbo = batched(functools.partial(_negative_elbo, model, state),
                  metrics_2d.grid(grid_range, size))
  return np.exp(-nelbo).reshape(size, size)


def evaluate_points(model: SoftIntroVAE, state: TrainState, real: np.ndarray,
                    gnelbo_data: np.ndarray, grid_range: float, seed: int,
                    mode_centres: Optional[np.ndarray] = None) -> Dict[str, float]:
  """`real`: held-out points, as many as are generated; `gnelbo_data`: the 12,800 data points.

  With `mode_centres` (8Gaussians), also `modes_covered`: how many the generated samples reach.
  """
  rec_error = functools.partial(_reconstruction_errors, model, state)
  results = {'rec_error_deterministic': float(np.mean(batched(rec_error, real)))}
  if real.shape[1] == 2:
    fake = np.asarray(inference.sample(model, state, jax.random.PRNGKey(seed), len(real)))
    results.update(metrics_2d.kl_and_jsd(real, fake, grid_range))
    if mode_centres is not None:
      results['modes_covered'] = metrics_2d.modes_covered(fake, mode_centres)
    nelbo = functools.partial(_negative_elbo, model, state)
    results['gnelbo'] = metrics_2d.grid_normalised_elbo(lambda x: batched(nelbo, x), gnelbo_data,
                                                        grid_range)
  return results


def evaluate_images(model: SoftIntroVAE, state: TrainState, images: np.ndarray,
                    recon_loss: str = 'mse') -> Dict[str, float]:
  """Means over `images` of the squared error of D(mu), the KL, and their sum."""

  values = batched(lambda x: _image_errors(model, state, x, recon_loss), images, size=64)
  return {'rec_error_deterministic': float(values[:, 0].mean()), 'kl': float(values[:, 1].mean()),
          'neg_elbo': float(values.sum(1).mean()), 'num_examples': int(len(images))}


def evaluate_clouds(model: SoftIntroVAE, state: TrainState, reference: np.ndarray,
                    key: jax.Array, prior_std: float, batch: int = 64) -> Dict[str, float]:
  """JSD, MMD-CD, COV-CD and 1-NNA of as many generated clouds as `reference` clouds (sampled
  from N(0, prior_std^2 I), the trained prior: not the reference's N(0, I) or reused noise,
  VARIANTS.md 3.5), and the mean Chamfer distance of the deterministic reconstructions."""
  keys = jax.random.split(key, -(-len(reference) // batch))
  generated = np.concatenate([np.asarray(_cloud_samples(model, state, k, batch, prior_std))
                              for k in keys])[:len(reference)]
  chamfer = batched(lambda x: _reconstruction_errors(model, state, x, 'chamfer'), reference,
                    batch)
  results = metrics_3d.mmd_cov_1nna(metrics_3d.distances(jnp.asarray(generated),
                                                         jnp.asarray(reference)))
  results['jsd'] = metrics_3d.jsd(jnp.asarray(generated), jnp.asarray(reference))
  out = {k: float(v) for k, v in results.items()}
  out.update(rec_chamfer=float(np.mean(chamfer)), num_clouds=int(len(reference)))
  return out
