"""FID and KID from Inception pool3 features, computed on every local device and every host.

- `FeatureSet`: features [N, 2048] with their mean and covariance, computed in float64 on the host
  exactly as pytorch-fid does (`np.mean`, `np.cov(rowvar=False)`); saved and loaded as `.npz`.
- `frechet_distance`: pytorch-fid's `calculate_frechet_distance` (scipy's `sqrtm`; on a non-finite
  result, retry with 1e-6 added to both diagonals; imaginary parts up to 1e-3 on the diagonal are
  numerical error and dropped, larger ones are an error), or optionally the same trace from two
  symmetric eigendecompositions (`matrix_sqrt='eigh'`, faster on CPUs; `compare` computes it from
  the features themselves when the sets are smaller than the feature dimension).
- `kernel_inception_distance`: the unbiased MMD^2 with the polynomial kernel
  `(x.y / d + 1)^3`, mean and std over random subsets, as torch-fidelity computes it (same
  defaults: 100 subsets of 1,000, seed 2020, drawn with `np.random.RandomState`); the subset size
  is cut to the smaller set's size, as clean-fid does, so small sets still get a KID.
- `FeatureExtractor` and `extract`: images -> features under `jax.pmap` over the local devices,
  after any pmapped function that makes the images on the devices (generation, reconstruction);
  each host does its rows and the hosts' features are gathered in a fixed order.
"""

import dataclasses
import functools
import json
import logging
import time
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import linalg

from sintrovae_jax.core import parallel
from sintrovae_jax.evaluators import inception
from sintrovae_jax.io import fs, hosts

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_SEED = 2020


class FidError(ValueError):
  """Statistics that cannot be compared (wrong file, too few images, a failed square root)."""


@dataclasses.dataclass
class FeatureSet:
  """Pool3 features of one image set and their float64 mean and covariance."""
  mu: np.ndarray
  sigma: np.ndarray
  num: int
  features: Optional[np.ndarray] = None  # [N, 2048] float32; needed for KID

  @classmethod
  def from_features(cls, features: np.ndarray) -> 'FeatureSet':
    features = np.asarray(features, np.float32)
    if features.ndim != 2 or len(features) < 2:
      raise FidError(f'FID needs at least 2 images; got features of shape {features.shape}.')
    as64 = features.astype(np.float64)
    return cls(np.mean(as64, axis=0), np.cov(as64, rowvar=False), len(features), features)

  def save(self, path: str) -> None:
    arrays = dict(mu=self.mu, sigma=self.sigma, num=self.num)
    if self.features is not None:
      arrays['features'] = self.features
    fs.save_npz(path, **arrays)

  @classmethod
  def load(cls, path: str) -> 'FeatureSet':
    """A file written by `save` (or any .npz with `mu` and `sigma`, e.g. pytorch-fid's)."""
    f = fs.load_npz(path)
    if 'mu' not in f or 'sigma' not in f:
      raise FidError(f'{path!r} has no `mu` and `sigma` arrays: not a statistics file.')
    features = f.get('features')
    num = int(f['num']) if 'num' in f else (len(features) if features is not None else -1)
    return cls(np.asarray(f['mu'], np.float64), np.asarray(f['sigma'], np.float64), num,
               features)


MATRIX_SQRT = ('scipy', 'eigh')


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
  """Tr sqrt(S1 S2) = Tr sqrt(S1^1/2 S2 S1^1/2): two symmetric eigendecompositions."""
  w, v = np.linalg.eigh(sigma1)
  root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
  inner = np.linalg.eigvalsh(root @ sigma2 @ root)
  return float(np.sum(np.sqrt(np.clip(inner, 0.0, None))))


def _trace_sqrt_product_features(a: FeatureSet, b: FeatureSet) -> float:
  """Tr sqrt(S1 S2) from the features themselves, for sets smaller than the feature dimension.

  With S1 = A'A / (n1 - 1) and S2 = B'B / (n2 - 1) (A, B the centred features), the nonzero
  eigenvalues of S1 S2 are those of M'M / ((n1 - 1)(n2 - 1)), M = A B' (n1 x n2): the trace is the
  sum of M's singular values over sqrt((n1 - 1)(n2 - 1)). One small SVD instead of two 2048 x 2048
  eigendecompositions, and exact where those only approach the zero eigenvalues.
  """
  centred = [f.features.astype(np.float64) - f.mu for f in (a, b)]
  singular = np.linalg.svd(centred[0] @ centred[1].T, compute_uv=False)
  return float(np.sum(singular) / np.sqrt((a.num - 1) * (b.num - 1)))


def _from_features(s: FeatureSet) -> bool:
  """Whether `s.sigma` is the covariance of `s.features` (as `FeatureSet.from_features` makes)."""
  return s.features is not None and len(s.features) == s.num


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6, matrix_sqrt: str = 'scipy') -> float:
  """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2)).

  `matrix_sqrt='scipy'` is pytorch-fid's computation exactly; 'eigh' computes the same trace from
  the symmetric form, about 6x faster for 2048 features on a CPU (equal to 1e-12 relative for
  full-rank covariances; within 1e-4 of 'scipy' on rank-deficient ones, where sqrtm is itself
  inexact).
  """
  mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
  sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise FidError(f'Statistics of different sizes: {mu1.shape} vs {mu2.shape}.')
  if matrix_sqrt not in MATRIX_SQRT:
    raise ValueError(f'matrix_sqrt={matrix_sqrt!r} is not one of {MATRIX_SQRT}.')
  if matrix_sqrt == 'eigh':
    tr_covmean = _trace_sqrt_product_eigh(sigma1, sigma2)
  else:
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
      logging.warning('FID: singular covariance product; adding %g to the diagonals.', eps)
      offset = np.eye(sigma1.shape[0]) * eps
      covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
      if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
        raise FidError(f'FID: the matrix square root has an imaginary component of '
                       f'{np.max(np.abs(covmean.imag)):.3g}; use more images.')
      covmean = covmean.real
    tr_covmean = float(np.trace(covmean))
  return _distance(mu1, sigma1, mu2, sigma2, tr_covmean)


def _distance(mu1, sigma1, mu2, sigma2, tr_covmean: float) -> float:
  """||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr sqrt(sigma1 sigma2), the last given."""
  diff = mu1 - mu2
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  return (x @ y.T / x.shape[1] + 1.0) ** 3


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  m = len(x)
  k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
  off_diagonal = (k_xx.sum() - np.trace(k_xx)) + (k_yy.sum() - np.trace(k_yy))
  return float(off_diagonal / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(f1: np.ndarray, f2: np.ndarray, subsets: int = KID_SUBSETS,
                              subset_size: int = KID_SUBSET_SIZE,
                              seed: int = KID_SEED) -> Tuple[float, float]:
  """(mean, std) of the unbiased polynomial-kernel MMD^2 over `subsets` random subsets."""
  size = min(subset_size, len(f1), len(f2))
  if size < 2:
    raise FidError(f'KID needs at least 2 images per set; got {len(f1)} and {len(f2)}.')
  rng = np.random.RandomState(seed)
  f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
  mmds = [_mmd2_unbiased(f1[rng.choice(len(f1), size, replace=False)],
                         f2[rng.choice(len(f2), size, replace=False)]) for _ in range(subsets)]
  return float(np.mean(mmds)), float(np.std(mmds))


def distance(a: FeatureSet, b: FeatureSet, matrix_sqrt: str = 'scipy') -> float:
  """The FID of two sets. With `matrix_sqrt='eigh'` and both sets' features at hand, sets of at
  most as many images as features (e.g. a quick FID of a few hundred samples) get the trace from
  the features: the same value, without two 2048 x 2048 eigendecompositions."""
  if (matrix_sqrt == 'eigh' and _from_features(a) and _from_features(b)
      and a.sigma.shape == b.sigma.shape and max(a.num, b.num) <= a.sigma.shape[0]):
    return _distance(a.mu, a.sigma, b.mu, b.sigma, _trace_sqrt_product_features(a, b))
  return frechet_distance(a.mu, a.sigma, b.mu, b.sigma, matrix_sqrt=matrix_sqrt)


def compare(a: FeatureSet, b: FeatureSet, kid_subsets: int = KID_SUBSETS,
            kid_subset_size: int = KID_SUBSET_SIZE, matrix_sqrt: str = 'scipy') -> Dict[str, Any]:
  """{'fid', 'kid', 'kid_std', 'n_a', 'n_b'}: FID as `distance` computes it; KID is None when a
  set has no stored features."""
  out = {'fid': distance(a, b, matrix_sqrt), 'kid': None, 'kid_std': None, 'n_a': a.num,
         'n_b': b.num}
  if a.features is not None and b.features is not None:
    out['kid'], out['kid_std'] = kernel_inception_distance(a.features, b.features, kid_subsets,
                                                           kid_subset_size)
  return out


def quantize_8bit(images: jax.Array) -> jax.Array:
  """Model outputs as an 8-bit PNG would store them (clip to [0, 1], round as torchvision saves)."""
  return jnp.floor(jnp.clip(images, 0.0, 1.0) * 255.0 + 0.5) / 255.0


# ----------------------------------------------------------------------------------------------
# Features on all devices and hosts.


def gather_hosts(rows: np.ndarray) -> np.ndarray:
  """Every host's rows, concatenated in process order (one host: `rows` itself)."""
  if jax.process_count() == 1:
    return rows
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  counts = np.asarray(multihost_utils.process_allgather(np.int32(len(rows))))
  padded = np.zeros((int(counts.max()),) + rows.shape[1:], rows.dtype)
  padded[:len(rows)] = rows
  everything = np.asarray(multihost_utils.process_allgather(padded))
  return np.concatenate([everything[p, :c] for p, c in enumerate(counts)])


def host_share(num: int) -> np.ndarray:
  """This host's global indices of `num` items (contiguous, hosts in process order)."""
  return np.array_split(np.arange(num), jax.process_count())[jax.process_index()]


@functools.lru_cache(maxsize=None)
def _pmapped_features(precision: Any) -> Callable:
  """The pmapped network, one per precision for the whole process: every extractor (a run's FID
  evaluations, --mode=fid after training, a script's several sets) shares its traces and
  compiled programs, instead of tracing Inception again for each new extractor."""
  return jax.pmap(functools.partial(inception.features, precision=precision))


class FeatureExtractor:
  """Pool3 features of images on every local device (`jax.pmap`), one compiled program.

  Call with at most `rows_per_call` host rows: every call is padded to that many rows (rounded up
  to the local device count), so one program serves every batch, and the padding is dropped.
  With `make_images` (a pmapped `(context, rows) -> images in [0, 1]`, e.g. the decoder), the
  rows are its inputs and the images it makes on the devices go straight to the network.
  """

  def __init__(self, variables: inception.Variables, rows_per_call: int,
               precision: Any = jax.lax.Precision.HIGHEST):
    self.variables = parallel.replicate(variables)
    self.rows_per_call = rows_per_call
    self._features = _pmapped_features(precision)

  def __call__(self, rows: np.ndarray, context: Any = None,
               make_images: Optional[Callable[[Any, jax.Array], jax.Array]] = None) -> np.ndarray:
    """`context`: already replicated over local devices (e.g. the training loop's state)."""
    n, devices = len(rows), jax.local_device_count()
    per_device = -(-max(n, self.rows_per_call) // devices)
    padded = np.zeros((devices * per_device,) + rows.shape[1:], rows.dtype)
    padded[:n] = rows
    images = parallel.shard(padded)
    if make_images is not None:
      images = make_images(context, images)
    out = self._features(self.variables, images)
    return np.asarray(out).reshape(devices * per_device, -1)[:n]


def extract(extractor: FeatureExtractor, host_batches: Iterable[np.ndarray], context: Any = None,
            make_images: Optional[Callable[[Any, jax.Array], jax.Array]] = None,
            total: Optional[int] = None, what: str = 'images') -> np.ndarray:
  """Features of every host's batches, gathered over hosts; logs progress about every 10%.

  On several hosts every host calls the (pmapped) extractor equally often: a host whose batches
  end first goes on with empty ones until every host's have ended.
  """
  start, done, next_log, parts = time.time(), 0, 0.1, []
  for batch in equal_counts(host_batches):
    if not len(batch):  # this host's batches have ended; another host's have not
      extractor(batch, context, make_images)
      continue
    parts.append(extractor(batch, context, make_images))
    done += len(batch) * jax.process_count()
    if total and done / total >= next_log and jax.process_index() == 0:
      logging.info('FID features of %s: %d / %d (%.0f images/s)', what, min(done, total), total,
                   done / max(time.time() - start, 1e-9))
      next_log = done / total + 0.1
  rows = np.concatenate(parts) if parts else np.zeros((0, inception.FEATURE_DIM), np.float32)
  return gather_hosts(rows)


def equal_counts(host_batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
  """`host_batches`, then (on several hosts) empty batches of the same row shape until every
  host's batches have ended: each host then runs a pmapped program equally often."""
  if jax.process_count() == 1:
    yield from host_batches
    return
  iterator = iter(host_batches)
  while True:
    batch = next(iterator, None)
    mine = {} if batch is None else {'shape': batch.shape[1:], 'dtype': batch.dtype.str}
    others = [json.loads(t) for t in hosts.exchange(json.dumps(mine))]
    if not any(others):
      return
    if batch is None:
      template = next(o for o in others if o)
      batch = np.zeros((0,) + tuple(template['shape']), np.dtype(template['dtype']))
    yield batch


def index_batches(num: int, batch_per_host: int) -> Iterable[np.ndarray]:
  """This host's share of global indices 0..num-1, in batches (for generated samples)."""
  share = host_share(num)
  for i in range(0, len(share), batch_per_host):
    yield share[i:i + batch_per_host]
