"""Generation metrics for point clouds, as the field computes them (VARIANTS.md 3.5), in JAX.

- JSD: every point of every cloud of a set is counted in its nearest cell centre of a 28^3 grid
  spanning [-0.5, 0.5]^3 (centres inside the radius-0.5 ball only); the Jensen-Shannon divergence
  (base 2) between the two sets' normalised counts (latent_3d_points, the reference's metric).
- Per pair of clouds, CD = the mean over points of the squared nearest-neighbour distance in each
  direction, the two means summed (latent_3d_points' evaluation_metrics.py).
- MMD-CD: the mean over reference clouds of the smallest CD to any generated cloud.
- COV-CD: the fraction of reference clouds that are the nearest reference of some generated cloud.
- 1-NNA (PointFlow): the leave-one-out 1-nearest-neighbour accuracy of telling generated from
  reference clouds in their union, by CD; 0.5 is ideal, 1.0 means every cloud's nearest neighbour
  is from its own set.

Edge conventions: point distances are computed from coordinate differences, so a cloud against
itself has CD exactly 0 (`|a|^2 + |b|^2 - 2 a.b` in float32 leaves about +-1e-9) and equal CDs
tie exactly. A tie for the nearest cloud goes to the lowest index in [references, samples]
order, as PointFlow's knn takes its nearest (the first minimum): references first.
"""

import functools
from typing import Dict, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sintrovae_jax.core.chamfer import chamfer_terms

GRID_RESOLUTION = 28


def grid_centres(resolution: int = GRID_RESOLUTION) -> np.ndarray:
  """Cell centres of a resolution^3 grid over [-0.5, 0.5]^3 that lie in the radius-0.5 ball."""
  axis = np.linspace(-0.5, 0.5, resolution)
  centres = np.stack(np.meshgrid(axis, axis, axis, indexing='ij'), axis=-1).reshape(-1, 3)
  return centres[np.linalg.norm(centres, axis=1) <= 0.5].astype(np.float32)


@jax.jit  # one program per shape (an eager scan would compile its new body on every call)
def occupancy(clouds: jax.Array, centres: jax.Array) -> jax.Array:
  """How many points of all `clouds` [S, N, 3] fall nearest to each centre [C, 3]: [C]."""
  c_sq = jnp.sum(centres ** 2, axis=-1)

  def one_cloud(counts, cloud):
    d = c_sq[None, :] - 2.0 * jnp.dot(cloud, centres.T, precision=jax.lax.Precision.HIGHEST)
    nearest = jnp.argmin(d, axis=1)  # |p|^2 is the same for every centre
    return counts + jnp.bincount(nearest, length=centres.shape[0]), None

  counts, _ = jax.lax.scan(one_cloud, jnp.zeros((centres.shape[0],), jnp.int32),
                           clouds.astype(jnp.float32))
  return counts


def jensen_shannon(p: jax.Array, q: jax.Array) -> jax.Array:
  """JSD in bits between two count (or probability) vectors."""
  p, q = p / jnp.sum(p), q / jnp.sum(q)
  m = 0.5 * (p + q)

  def entropy(v):
    return -jnp.sum(jnp.where(v > 0, v * jnp.log2(jnp.where(v > 0, v, 1.0)), 0.0))

  return entropy(m) - 0.5 * (entropy(p) + entropy(q))


def jsd(generated: jax.Array, reference: jax.Array,
        resolution: int = GRID_RESOLUTION) -> jax.Array:
  """The grid JSD between two sets of clouds [S, N, 3] and [R, M, 3]."""
  centres = jnp.asarray(grid_centres(resolution))
  return jensen_shannon(occupancy(generated, centres).astype(jnp.float32),
                        occupancy(reference, centres).astype(jnp.float32))


@functools.partial(jax.jit, static_argnames='chunk')  # as occupancy
def pairwise_cd(x: jax.Array, y: jax.Array, chunk: int = 256) -> jax.Array:
  """CD (means over points, summed over both directions) between every pair: [|x|, |y|]; from
  coordinate differences (`chamfer_terms(direct=True)`), so exactly 0 for identical clouds."""
  n, m = x.shape[1], y.shape[1]

  def row(cloud):
    a_to_b, b_to_a = chamfer_terms(jnp.broadcast_to(cloud, (y.shape[0],) + cloud.shape), y, chunk,
                                   direct=True)
    return a_to_b / n + b_to_a / m

  return jax.lax.map(row, x)


class Distances(NamedTuple):
  generated_reference: jax.Array  # [S, R]
  generated_generated: jax.Array  # [S, S]
  reference_reference: jax.Array  # [R, R]


def distances(generated: jax.Array, reference: jax.Array) -> Distances:
  return Distances(pairwise_cd(generated, reference), pairwise_cd(generated, generated),
                   pairwise_cd(reference, reference))


def mmd_cov_1nna(d: Distances) -> Dict[str, jax.Array]:
  """MMD-CD, COV-CD and 1-NNA from the three CD matrices.

  Ties (exact equality): a generated cloud covers its lowest-index nearest reference (argmin's
  first minimum, as torch.min returns it in PointFlow's COV). 1-NNA follows PointFlow's knn: in
  the matrix of the union, ordered [references, samples], cloud j's neighbour is the first
  minimum of column j, the diagonal excluded. So a tie between a reference and a sample goes to
  the reference: a reference cloud is then classified right, a sample wrong.
  """
  s, r = d.generated_reference.shape
  mmd = jnp.mean(jnp.min(d.generated_reference, axis=0))
  nearest_reference = jnp.argmin(d.generated_reference, axis=1)
  covered = jnp.zeros((r,), bool).at[nearest_reference].set(True)
  # 1-NNA: every cloud of the union, its nearest other cloud; correct if from the same set.
  # Column j's first minimum lies among the references iff their minimum is <= the samples'.
  inf_s, inf_r = jnp.full((s,), jnp.inf), jnp.full((r,), jnp.inf)
  gg = d.generated_generated + jnp.diag(inf_s)
  rr = d.reference_reference + jnp.diag(inf_r)
  generated_right = jnp.min(gg, axis=0) < jnp.min(d.generated_reference, axis=1)
  reference_right = jnp.min(rr, axis=0) <= jnp.min(d.generated_reference, axis=0)
  accuracy = (jnp.sum(generated_right) + jnp.sum(reference_right)) / (s + r)
  return {'mmd_cd': mmd, 'cov_cd': jnp.mean(covered), '1nna_cd': accuracy}
