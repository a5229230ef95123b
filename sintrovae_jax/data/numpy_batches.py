"""NumPy input streams: generated 2D sets, .npy point files and 3D point clouds, per host,
deterministic from the seed and step (a resumed run sees exactly the batches an uninterrupted one
would have). No TensorFlow here."""

import io
from typing import Iterator, Optional

import jax
import numpy as np

from sintrovae_jax.data import toy as toy_data
from sintrovae_jax.data.kinds import DataError, per_host_batch_size
from sintrovae_jax.io import fs


def load_points(path: str) -> np.ndarray:
  """An [N, D] float32 array from a .npy file (a local path or a URL), or a DataError saying
  what is wrong with it."""
  try:
    data = fs.read_bytes(path)
  except OSError as e:
    raise DataError(f'Cannot read {path!r} ({e}). Give an existing .npy file of points [N, D].') \
        from e
  if data[:6] != b'\x93NUMPY':
    raise DataError(f'{path!r} is not a NumPy .npy file (it lacks the .npy header; a text or '
                    'CSV file?). Save points with numpy.save(path, array), array [N, D].')
  try:
    points = np.load(io.BytesIO(data), allow_pickle=False)
  except (OSError, ValueError) as e:
    raise DataError(f'Cannot read {path!r} as a .npy array ({e}). Save points with '
                    f'numpy.save(path, array) where array has shape [N, D].') from e
  if points.ndim != 2 or points.shape[0] < 2 or not np.issubdtype(points.dtype, np.number):
    raise DataError(f'{path!r} holds an array of shape {points.shape} and dtype {points.dtype}; '
                    'expected numbers of shape [N, D] with N >= 2.')
  if not np.isfinite(points).all():
    raise DataError(f'{path!r} contains NaN or infinite values; remove those rows first.')
  with np.errstate(over='ignore'):
    as32 = points.astype(np.float32)
  if not np.isfinite(as32).all():
    raise DataError(f'{path!r} has values beyond float32 range (up to {np.abs(points).max():.3g});'
                    ' training is in float32: rescale the data first.')
  if np.all(as32 == as32[0]):
    raise DataError(f'All {len(as32)} points in {path!r} are identical: there is nothing to learn '
                    'and no plot range. Check the file.')
  return as32


def point_batches(config, start_step: int = 0,
                  points: Optional[np.ndarray] = None) -> Iterator[np.ndarray]:
  """This host's slice of global batch t, for t = start_step, start_step + 1, ...

  Generated sets draw global batch t from `default_rng([seed, t])`; a point file (or the point
  clouds, `points` [S, N, 3]) is walked in epoch-wise permutations drawn from
  `default_rng([seed, epoch])`. Either way the global batch is independent of the number of hosts
  and devices, and a resumed run continues the same stream.
  """
  per_host = per_host_batch_size(config)
  lo = jax.process_index() * per_host
  if config.dataset in toy_data.DATASETS:
    for batch in toy_data.batches(config.dataset, config.batch_size, config.seed, start_step):
      yield batch[lo:lo + per_host]
  n = len(points)
  cache = {}

  def permutation(e):
    if e not in cache:
      if len(cache) > 1:  # a batch spans at most two epochs; keep no more
        cache.clear()
      cache[e] = np.random.default_rng([config.seed, e]).permutation(n)
    return cache[e]

  for t in range(start_step, 2**62):
    epochs, pos = np.divmod(t * config.batch_size + lo + np.arange(per_host), n)
    idx = np.empty(per_host, np.int64)
    for e in np.unique(epochs):
      idx[epochs == e] = permutation(int(e))[pos[epochs == e]]
    yield points[idx]
