"""FID and KID arithmetic against closed forms and independent restatements; statistics files."""

import numpy as np
import pytest

from sintrovae_jax.evaluators import fid


def _spd(rng, d):
  a = rng.normal(size=(d, d))
  return a @ a.T / d + 0.1 * np.eye(d)


def test_identical_statistics_give_zero(rng):
  features = rng.normal(size=(300, 16))
  s = fid.FeatureSet.from_features(features)
  assert abs(fid.frechet_distance(s.mu, s.sigma, s.mu, s.sigma)) < 1e-8


def test_isotropic_gaussians_closed_form(rng):
  d = 32
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  a, b = 1.7, 0.4
  expected = np.sum((mu1 - mu2) ** 2) + d * (a - b) ** 2
  got = fid.frechet_distance(mu1, a * a * np.eye(d), mu2, b * b * np.eye(d))
  np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize('matrix_sqrt', fid.MATRIX_SQRT)
def test_general_covariances_match_the_definition(rng, matrix_sqrt):
  """Tr sqrt(S1 S2) from the eigenvalues of S1 S2 (real, >= 0: it is similar to a PSD matrix)."""
  d = 24
  mu1, mu2, s1, s2 = rng.normal(size=d), rng.normal(size=d), _spd(rng, d), _spd(rng, d)
  eigenvalues = np.linalg.eigvals(s1 @ s2)
  assert np.abs(eigenvalues.imag).max() < 1e-10
  expected = (np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
              - 2 * np.sum(np.sqrt(eigenvalues.real)))
  got = fid.frechet_distance(mu1, s1, mu2, s2, matrix_sqrt=matrix_sqrt)
  np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_shifted_samples_fid_equals_squared_shift(rng):
  features = rng.normal(size=(500, 8)).astype(np.float32)
  shift = np.linspace(-1, 1, 8).astype(np.float32)
  a = fid.FeatureSet.from_features(features)
  b = fid.FeatureSet.from_features(features + shift)
  np.testing.assert_allclose(fid.compare(a, b)['fid'], np.sum(shift.astype(np.float64) ** 2),
                             rtol=1e-5)


def test_few_images_get_the_trace_from_their_features_exactly(rng):
  """Fewer images than features: covariances of rank n - 1, whose zero eigenvalues the 2048-wide
  square roots only approach (to about 1e-7 here). Shifted copies of one set have FID = |shift|^2
  exactly (dyadic values, exact in float32); `compare` with 'eigh' gets it to rounding."""
  f = rng.integers(-8, 8, size=(20, 64)) / 4
  shift = rng.integers(-4, 4, size=64) / 4
  a, b = fid.FeatureSet.from_features(f), fid.FeatureSet.from_features(f + shift)
  np.testing.assert_allclose(fid.compare(a, b, matrix_sqrt='eigh')['fid'], np.sum(shift ** 2),
                             rtol=1e-12)
  # Random sets of other sizes: the same value as both square roots of the covariance product.
  a = fid.FeatureSet.from_features(rng.normal(size=(30, 64)))
  b = fid.FeatureSet.from_features(rng.normal(loc=0.2, scale=1.5, size=(40, 64)))
  for matrix_sqrt in fid.MATRIX_SQRT:
    for from_features in (fid.compare(a, b, matrix_sqrt='eigh')['fid'],
                          fid.distance(a, b, 'eigh')):  # (the FID of reconstructions: fid_rec)
      np.testing.assert_allclose(
          from_features,
          fid.frechet_distance(a.mu, a.sigma, b.mu, b.sigma, matrix_sqrt=matrix_sqrt), rtol=1e-7)
  # Sets of other feature widths: the same clear error as the covariance route.
  with pytest.raises(fid.FidError, match='different sizes'):
    fid.compare(a, fid.FeatureSet.from_features(rng.normal(size=(30, 32))), matrix_sqrt='eigh')


def test_statistics_are_numpy_mean_and_cov_in_float64(rng):
  features = rng.uniform(size=(50, 6)).astype(np.float32)
  s = fid.FeatureSet.from_features(features)
  assert s.mu.dtype == np.float64 and s.sigma.dtype == np.float64 and s.num == 50
  centred = features.astype(np.float64) - features.astype(np.float64).mean(0)
  np.testing.assert_allclose(s.sigma, centred.T @ centred / 49, rtol=1e-12)


def _mmd2_by_loops(x, y):
  """The unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written out term by term."""
  m, d = len(x), x.shape[1]
  k = lambda a, b: (np.dot(a, b) / d + 1.0) ** 3
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
  return xx + yy - 2 * xy


def test_kid_equals_a_restatement_with_the_same_subsets(rng):
  f1, f2 = rng.normal(size=(30, 5)), rng.normal(loc=0.3, size=(40, 5))
  subsets, size, seed = 4, 7, 11
  draw = np.random.RandomState(seed)
  values = []
  for _ in range(subsets):
    x = f1[draw.choice(len(f1), size, replace=False)]
    y = f2[draw.choice(len(f2), size, replace=False)]
    values.append(_mmd2_by_loops(x, y))
  mean, std = fid.kernel_inception_distance(f1, f2, subsets, size, seed)
  np.testing.assert_allclose([mean, std], [np.mean(values), np.std(values)], rtol=1e-10)


def test_kid_separates_distributions_and_cuts_the_subset_size(rng):
  same = fid.kernel_inception_distance(rng.normal(size=(1000, 4)), rng.normal(size=(1000, 4)),
                                       subset_size=100)
  apart = fid.kernel_inception_distance(rng.normal(size=(1000, 4)),
                                        rng.normal(loc=1.0, size=(1000, 4)), subset_size=100)
  assert apart[0] > 20 * abs(same[0]) and apart[0] > 5 * apart[1]
  # Sets smaller than the subset size: every subset is the whole set, so the spread is zero.
  x, y = rng.normal(size=(50, 4)), rng.normal(size=(60, 4))
  mean, std = fid.kernel_inception_distance(x, y[:50])
  assert std < 1e-12
  np.testing.assert_allclose(mean, _mmd2_by_loops(x, y[:50]), rtol=1e-10)
  with pytest.raises(fid.FidError, match='at least 2'):
    fid.kernel_inception_distance(np.ones((1, 4)), np.ones((5, 4)))


def test_statistics_file_round_trip_and_stats_only_files(tmp_path, rng):
  s = fid.FeatureSet.from_features(rng.normal(size=(20, 4)))
  path = str(tmp_path / 'stats.npz')
  s.save(path)
  back = fid.FeatureSet.load(path)
  np.testing.assert_array_equal(back.sigma, s.sigma)
  np.testing.assert_array_equal(back.features, s.features)
  np.savez(tmp_path / 'pytorch_fid_style.npz', mu=s.mu, sigma=s.sigma)  # no features: no KID
  only = fid.FeatureSet.load(str(tmp_path / 'pytorch_fid_style.npz'))
  result = fid.compare(only, s)
  assert result['kid'] is None and abs(result['fid']) < 1e-8
  np.savez(tmp_path / 'other.npz', x=np.ones(3))
  with pytest.raises(fid.FidError, match='mu'):
    fid.FeatureSet.load(str(tmp_path / 'other.npz'))


def test_quantize_8bit_rounds_like_a_saved_png():
  x = np.array([-0.2, 0.0, 0.5 / 255, 0.49 / 255, 0.5, 1.0, 1.3], np.float32)
  np.testing.assert_allclose(np.asarray(fid.quantize_8bit(x)) * 255, [0, 0, 1, 0, 128, 255, 255],
                             atol=1e-4)


def test_extractors_share_one_traced_network(monkeypatch):
  """Every FeatureExtractor of a precision uses one pmapped network: a second extractor (another
  FID evaluation, --mode=fid after training) does not trace Inception again."""
  traces = []

  def fake_features(variables, images, precision):  # a stand-in network: one feature per image
    traces.append(precision)
    return images.reshape(images.shape[0], -1).mean(axis=1, keepdims=True) * variables['w']

  monkeypatch.setattr(fid.inception, 'features', fake_features)
  fid._pmapped_features.cache_clear()  # pylint: disable=protected-access
  try:
    rows = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    outs = [fid.FeatureExtractor({'w': np.float32(2.0)}, rows_per_call=2)(rows) for _ in range(2)]
    assert len(traces) == 1
    np.testing.assert_allclose(outs[1], outs[0])
    np.testing.assert_allclose(outs[0][:, 0], 2.0 * rows.reshape(2, -1).mean(axis=1), rtol=1e-6)
    fid.FeatureExtractor({'w': np.float32(2.0)}, 2, precision=None)(rows)
    assert len(traces) == 2  # another precision is another program
  finally:  # the real network for the tests that follow
    fid._pmapped_features.cache_clear()  # pylint: disable=protected-access
