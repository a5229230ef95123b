"""The 2D data sets of the paper's Table 1, as NumPy samplers (ALGORITHM.md, "2D variant").

`8gaussians` is the Soft-IntroVAE reference's own (radius 2, sigma 0.02, divided by 1.414); the
others are the usual normalising-flow toy sets (FFJORD's definitions).
"""

from typing import Iterator

import numpy as np

DATASETS = ('8gaussians', '2spirals', 'checkerboard', 'rings')
GRID_RANGE = {'8gaussians': 2.0, '2spirals': 4.0, 'checkerboard': 4.0, 'rings': 4.0}
EIGHT_GAUSSIAN_CENTRES = 2.0 * np.array(
    [(1, 0), (-1, 0), (0, 1), (0, -1)]
    + [(sx / np.sqrt(2), sy / np.sqrt(2)) for sx in (1, -1) for sy in (1, -1)]) / 1.414
# The sets made of discrete modes, with their centres (for the `modes_covered` metric).
MODE_CENTRES = {'8gaussians': EIGHT_GAUSSIAN_CENTRES}


def sample(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
  """`n` points of data set `name`, float32 [n, 2], drawn from `rng`."""
  if name == '8gaussians':
    centres = EIGHT_GAUSSIAN_CENTRES[rng.integers(0, 8, n)]
    x = centres + rng.normal(size=(n, 2)) * 0.02 / 1.414
  elif name == '2spirals':
    half = n // 2
    m = np.sqrt(rng.uniform(size=(n - half, 1))) * 540 * (2 * np.pi) / 360
    d1 = np.hstack([-np.cos(m) * m + rng.uniform(size=(n - half, 1)) * 0.5,
                    np.sin(m) * m + rng.uniform(size=(n - half, 1)) * 0.5])
    x = np.vstack([d1, -d1[:half]]) / 3
    x = x + rng.normal(size=x.shape) * 0.1
  elif name == 'checkerboard':
    x1 = rng.uniform(size=n) * 4 - 2
    x2 = rng.uniform(size=n) - rng.integers(0, 2, n) * 2 + np.floor(x1) % 2
    x = np.stack([x1, x2], axis=1) * 2
  elif name == 'rings':
    counts = [n // 4] * 3 + [n - 3 * (n // 4)]
    radii = (1.0, 0.75, 0.5, 0.25)
    circles = [r * np.stack([np.cos(t), np.sin(t)], 1) for r, c in zip(radii, counts)
               for t in [np.linspace(0, 2 * np.pi, c, endpoint=False)]]
    x = np.concatenate(circles) * 3.0
    x = x[rng.permutation(n)] + rng.normal(scale=0.08, size=(n, 2))
  else:
    raise ValueError(f'Unknown 2D data set {name!r}; choose one of {DATASETS}.')
  return x.astype(np.float32)


def batches(name: str, batch_size: int, seed: int, start_step: int = 0) -> Iterator[np.ndarray]:
  """Global batches t = start_step, start_step + 1, ... of data set `name`, batch t drawn from
  `default_rng([seed, t])`: the stream main.py trains on (each host keeps its slice), so a loop of
  your own fed by it sees the same data as `main.py --config=configs/toy2d.py:NAME`."""
  for t in range(start_step, 2**62):
    yield sample(name, batch_size, np.random.default_rng([seed, t]))
