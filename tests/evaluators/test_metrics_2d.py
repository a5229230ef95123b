"""The 2D data sets and the paper's 2D metrics, against hand-computed values."""

import numpy as np
import pytest

from sintrovae_jax.data import toy as toy_data
from sintrovae_jax.evaluators import metrics_2d


def test_kl_and_jsd_hand_computed():
  # r = 2: 100 bins of width 0.04, bin area 0.0016. All real points in bin A: density 625 there.
  # Half of the generated points in A, half in bin B: density 312.5 in each.
  real = np.full((1000, 2), 0.01)
  fake = np.concatenate([np.full((500, 2), 0.01), np.full((500, 2), 1.01)])
  got = metrics_2d.kl_and_jsd(real, fake, 2.0)
  np.testing.assert_allclose(got['kl'], 625 * np.log(625 / 312.5) / 100, rtol=1e-9)
  m_a, m_b = (625 + 312.5) / 2, 312.5 / 2
  jsd = 0.5 * ((m_a * np.log(m_a / 625) + m_b * np.log(m_b / 1e-14))
               + (m_a * np.log(m_a / 312.5) + m_b * np.log(m_b / 312.5))) / 100
  np.testing.assert_allclose(got['jsd'], jsd, rtol=1e-9)
  same = metrics_2d.kl_and_jsd(real, real, 2.0)
  assert abs(same['kl']) < 1e-9 and abs(same['jsd']) < 1e-9


def test_histogram_is_a_density_over_the_range():
  pts = toy_data.sample('rings', 5000, np.random.default_rng(0))
  h = metrics_2d.histogram(pts, 4.0)
  assert h.shape == (100, 100)
  np.testing.assert_allclose(h.sum() * (8 / 100) ** 2, 1.0, rtol=1e-9)


def test_grid_normalised_elbo_hand_computed():
  f = lambda x: np.sum(x ** 2, axis=1) + 1.0
  data = np.array([[0.0, 0.0], [1.0, 1.0]])
  # A 2 x 2 grid over [-1, 1]^2 is the four corners, each with value 3.
  want = np.mean([1.0, 3.0]) / (4 * 3.0 + 1.0 + 3.0)
  np.testing.assert_allclose(metrics_2d.grid_normalised_elbo(f, data, 1.0, grid_size=2), want)
  assert metrics_2d.grid(1.0, 3).shape == (9, 2)


def test_eight_gaussians_match_the_reference_definition():
  x = toy_data.sample('8gaussians', 4000, np.random.default_rng(0))
  d = np.linalg.norm(x[:, None] - toy_data.EIGHT_GAUSSIAN_CENTRES[None], axis=-1)
  nearest = d.argmin(1)
  assert set(nearest) == set(range(8))
  np.testing.assert_allclose(np.linalg.norm(toy_data.EIGHT_GAUSSIAN_CENTRES, axis=1), 2 / 1.414)
  spread = (x - toy_data.EIGHT_GAUSSIAN_CENTRES[nearest]).std()
  np.testing.assert_allclose(spread, 0.02 / 1.414, rtol=0.05)


def test_other_sets_have_their_shapes():
  rng = np.random.default_rng(0)
  board = toy_data.sample('checkerboard', 4000, rng)
  assert np.abs(board).max() <= 4.0
  squares = np.floor(board[:, 0] / 2) + np.floor(board[:, 1] / 2)
  assert len(set(np.mod(squares, 2))) == 1  # only one colour of the board is populated
  rings = toy_data.sample('rings', 4000, rng)
  radius = np.linalg.norm(rings, axis=1)
  nearest = np.abs(radius[:, None] - np.array([3.0, 2.25, 1.5, 0.75])[None]).min(1)
  assert np.mean(nearest < 0.3) > 0.98
  spirals = toy_data.sample('2spirals', 4001, rng)
  assert spirals.shape == (4001, 2) and np.mean(np.abs(spirals) < 4) > 0.99
  with pytest.raises(ValueError, match='Unknown 2D data set'):
    toy_data.sample('moons', 10, rng)


def test_modes_covered_counts_reached_centres_only():
  centres = toy_data.EIGHT_GAUSSIAN_CENTRES
  rng = np.random.default_rng(1)
  x = toy_data.sample('8gaussians', 8000, rng)
  assert metrics_2d.modes_covered(x, centres) == 8
  nearest = np.linalg.norm(x[:, None] - centres[None], axis=-1).argmin(1)
  kept = x[nearest < 5]  # a generator that dropped modes 5, 6 and 7 ...
  stray = centres[5] + 0.01 * rng.standard_normal((10, 2))  # ... but for 10 points (< 1%) at one
  assert metrics_2d.modes_covered(np.concatenate([kept, stray]), centres) == 5
  assert metrics_2d.modes_covered(np.concatenate([kept, stray[:1].repeat(200, 0)]), centres) == 6
  assert metrics_2d.modes_covered(np.zeros((100, 2)), centres) == 0
