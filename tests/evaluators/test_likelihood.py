"""log p(x) by importance weighting, against a linear-Gaussian VAE's closed form; OOD metrics."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import sintrovae_jax as sv
from sintrovae_jax.evaluators import likelihood, ood

from linear_gaussian import (SIGMA, Z_DIM, inputs,  # pylint: disable=g-bad-import-order
                             linear_gaussian)


@pytest.mark.parametrize('k', [1, 7])
def test_exact_posterior_gives_log_px_for_any_k(k):
  """With q = the true posterior every importance weight is p(x): no variance, no bias."""
  model, state, true = linear_gaussian()
  x = inputs()
  est = likelihood.log_likelihood(model, state, jnp.asarray(x), jax.random.PRNGKey(3), k, 'mse',
                                  SIGMA)
  np.testing.assert_allclose(est, true.logpdf(x), rtol=1e-5, atol=1e-5)


def test_estimate_converges_to_log_px_from_below_as_k_grows():
  model, state, true = linear_gaussian(shift=0.6, inflate=0.8)  # a poor q
  x = jnp.asarray(inputs(32))
  exact = true.logpdf(np.asarray(x))
  means, errors = [], []
  for k in (1, 10, 100, 1000):
    gaps = np.stack([exact - np.asarray(likelihood.log_likelihood(
        model, state, x, jax.random.PRNGKey(s), k, 'mse', SIGMA)) for s in range(8)]).ravel()
    means.append(gaps.mean())
    errors.append(gaps.std() / np.sqrt(gaps.size))
  # Never above log p(x) in expectation (up to 3 standard errors of the mean)...
  assert all(m > -3 * e for m, e in zip(means, errors)), (means, errors)
  # ...clearly below it for small K, and the gap closes as K grows.
  assert means[0] > 1.0 and means[1] > 3 * errors[1], (means, errors)
  assert abs(means[0]) > abs(means[1]) > abs(means[3]), means
  assert abs(means[2]) < 0.05 and abs(means[3]) < 0.02, means


def test_one_sample_is_the_single_sample_elbo():
  model, state, _ = linear_gaussian(shift=0.3, inflate=0.5)
  x = inputs()
  key = jax.random.PRNGKey(5)
  est = np.asarray(likelihood.log_likelihood(model, state, jnp.asarray(x), key, 1, 'mse', SIGMA))
  # The same draw, restated in NumPy: log p(x|z) + log p(z) - log q(z|x).
  enc, dec = state.encoder_params['Dense_0'], state.decoder_params['Dense_0']
  out = x.astype(np.float64) @ np.asarray(enc['kernel'], np.float64) + np.asarray(enc['bias'])
  mu, logvar = out[:, :Z_DIM], out[:, Z_DIM:]
  eps = np.asarray(jax.random.normal(jax.random.fold_in(key, 0), mu.shape), np.float64)
  z = mu + np.exp(0.5 * logvar) * eps
  mean = z @ np.asarray(dec['kernel'], np.float64) + np.asarray(dec['bias'])
  elbo = (stats.norm(mean, SIGMA).logpdf(x).sum(1) + stats.norm(0, 1).logpdf(z).sum(1)
          - stats.norm(mu, np.exp(0.5 * logvar)).logpdf(z).sum(1))
  np.testing.assert_allclose(est, elbo, rtol=1e-5, atol=1e-5)


def test_decoder_likelihoods_match_their_distributions():
  rng = np.random.default_rng(2)
  x, out = rng.uniform(size=(4, 5)), rng.normal(size=(4, 5))
  got = lambda kind, s: np.asarray(likelihood.decoder_log_likelihood(
      jnp.asarray(x, jnp.float32), jnp.asarray(out, jnp.float32), kind, s))
  np.testing.assert_allclose(got('mse', 0.3), stats.norm(out, 0.3).logpdf(x).sum(1), rtol=1e-5)
  np.testing.assert_allclose(got('l1', 0.7), stats.laplace(out, 0.7).logpdf(x).sum(1), rtol=1e-5)
  binary = (x > 0.5).astype(np.float64)
  p = 1 / (1 + np.exp(-out))
  bern = np.sum(binary * np.log(p) + (1 - binary) * np.log(1 - p), 1)
  got_bce = np.asarray(likelihood.decoder_log_likelihood(
      jnp.asarray(binary, jnp.float32), jnp.asarray(out, jnp.float32), 'bce', 1.0))
  np.testing.assert_allclose(got_bce, bern, rtol=1e-5)


@pytest.mark.parametrize('reduction', ['sum', 'reference'])
def test_default_sigma_makes_the_elbo_the_training_objective(reduction):
  """-ELBO - (beta_rec REC + beta_kl KL) / beta_kl is the same constant for every input, with REC
  the objective's reconstruction term (a mean over the 6 elements for l1 under 'reference')."""
  rng = np.random.default_rng(3)
  beta_rec, beta_kl = 0.5, 2.0
  for kind in ('mse', 'l1'):
    sigma = likelihood.default_sigma(kind, beta_rec, beta_kl, reduction, (6,))
    diffs = []
    for _ in range(3):
      x, out = (jnp.asarray(rng.uniform(size=(2, 6)), jnp.float32) for _ in range(2))
      rec = np.asarray(sv.reconstruction_error(x, out, kind))
      if kind == 'l1' and reduction == 'reference':
        rec = rec / 6
      nll = -np.asarray(likelihood.decoder_log_likelihood(x, out, kind, sigma))
      diffs.append(nll - beta_rec * rec / beta_kl)
    np.testing.assert_allclose(np.ravel(diffs), np.ravel(diffs)[0], rtol=1e-5)


def test_bits_per_dim_conventions():
  # A uniform density on [0, 1]^D (log p = 0) is 8 bits per 8-bit pixel; vectors have no offset.
  assert float(likelihood.bits_per_dim(jnp.zeros(()), (4, 4, 3), images=True)) == pytest.approx(8)
  assert float(likelihood.bits_per_dim(jnp.asarray(-2 * math.log(2)), (2,), images=False)) == (
      pytest.approx(1.0))


def _pairwise_auroc(a, b):
  """P(OOD score > in score) + 0.5 P(tie), by counting every pair."""
  a, b = np.asarray(a)[:, None], np.asarray(b)[None, :]
  return float(np.mean((b > a) + 0.5 * (b == a)))


def test_detection_metrics_known_answers():
  perfect = ood.detection_metrics(np.arange(100.0), np.arange(100.0) + 1000)
  assert perfect['auroc'] == 1.0 and perfect['fpr_at_95_tpr'] == 0.0
  assert perfect['aupr_out'] == 1.0 and perfect['aupr_in'] == 1.0
  same = ood.detection_metrics(np.arange(100.0), np.arange(100.0))
  assert same['auroc'] == 0.5
  # Accepting 95% of in-distribution scores 0..99 accepts scores <= 94: 45 of OOD 50..149.
  overlap = ood.detection_metrics(np.arange(100.0), np.arange(50.0, 150.0))
  assert overlap['fpr_at_95_tpr'] == pytest.approx(0.45)
  assert overlap['auroc'] == pytest.approx(_pairwise_auroc(np.arange(100.0),
                                                           np.arange(50.0, 150.0)))
  rng = np.random.default_rng(4)
  a, b = rng.normal(size=300), rng.normal(0.7, 1.2, size=200)
  assert ood.detection_metrics(a, b)['auroc'] == pytest.approx(_pairwise_auroc(a, b))
