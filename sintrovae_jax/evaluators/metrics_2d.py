"""The paper's 2D metrics (Table 1), as ALGORITHM.md defines them: KL, JSD and gnELBO.

Also `modes_covered`, the count of mixture modes that generated samples reach (mode collapse check).

JSD follows the reference's definition, 0.5 (KL(M || real) + KL(M || fake)) with M the mixture,
not the textbook 0.5 (KL(real || M) + KL(fake || M)); we keep it so that our numbers compare with
the paper's and with ANCHORS.md.
"""

from typing import Callable, Dict

import numpy as np

BINS = 100
EPS = 1e-14


def histogram(points: np.ndarray, grid_range: float, bins: int = BINS) -> np.ndarray:
  """Density-normalised 2D histogram of `points` over [-r, r]^2."""
  r = grid_range
  hist, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=bins, range=[[-r, r], [-r, r]],
                              density=True)
  return hist


def _xlogy_ratio(p: np.ndarray, q_plus_eps: np.ndarray) -> float:
  """sum p (log p - log q); bins where p == 0 contribute nothing."""
  mask = p > 0
  return float(np.sum(p[mask] * (np.log(p[mask]) - np.log(q_plus_eps[mask]))))


def kl_and_jsd(real: np.ndarray, fake: np.ndarray, grid_range: float) -> Dict[str, float]:
  """`{'kl': ..., 'jsd': ...}` between real and generated points, on 100 x 100 histograms."""
  p, q = histogram(real, grid_range), histogram(fake, grid_range)
  m = 0.5 * (p + q)
  kl = _xlogy_ratio(p, q + EPS) / BINS
  jsd = 0.5 * (_xlogy_ratio(m, p + EPS) + _xlogy_ratio(m, q + EPS)) / BINS
  return {'kl': kl, 'jsd': jsd}


def grid(grid_range: float, size: int) -> np.ndarray:
  """The [size*size, 2] points of a regular grid over [-r, r]^2 (row-major, y outer)."""
  axis = np.linspace(-grid_range, grid_range, size, dtype=np.float32)
  xx, yy = np.meshgrid(axis, axis)
  return np.stack([xx.ravel(), yy.ravel()], axis=1)


def grid_normalised_elbo(negative_elbo: Callable[[np.ndarray], np.ndarray], data: np.ndarray,
                         grid_range: float, grid_size: int = 1024) -> float:
  """gnELBO: mean over `data` of its negative ELBO, divided by the sum over grid and data.

  `negative_elbo` maps [N, 2] points to their per-point `KL + REC` (z = mu, unit betas).
  """
  on_data = np.asarray(negative_elbo(data), np.float64)
  on_grid = np.asarray(negative_elbo(grid(grid_range, grid_size)), np.float64)
  return float(on_data.mean() / (on_grid.sum() + on_data.sum()))


def modes_covered(fake: np.ndarray, centres: np.ndarray, radius: float = 0.1,
                  min_share: float = 0.01) -> int:
  """How many `centres` have at least `min_share` of the `fake` points within `radius` of them.

  For 8Gaussians (sigma 0.014, neighbouring centres 1.08 apart) a covered mode holds ~1/8 of the
  samples and a dropped one next to none, so the count is insensitive to the exact thresholds.
  """
  d = np.linalg.norm(fake[:, None, :] - centres[None], axis=-1)
  return int(np.sum(np.mean(d < radius, axis=0) >= min_share))
