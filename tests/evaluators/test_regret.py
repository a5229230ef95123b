"""Likelihood regret and the input-complexity score, against closed forms and the compressor."""

import jax
import jax.numpy as jnp
import numpy as np

from sintrovae_jax.evaluators import complexity, likelihood, regret
from linear_gaussian import SIGMA, inputs, linear_gaussian  # pylint: disable=g-bad-import-order

K = 16


def test_regret_is_the_gap_between_the_estimate_and_log_px_when_the_fit_reaches_the_posterior():
  """A linear encoder fitted to one input can reach that input's exact posterior, where every
  importance weight is p(x): the regret is then log p(x) (closed form) minus the estimate before
  the fit (the same draws), however poor the encoder was."""
  model, state, true = linear_gaussian(shift=1.5, inflate=1.5)
  x, key = jnp.asarray(inputs(4)), jax.random.PRNGKey(7)
  got = np.asarray(regret.regret(model, state, x, key, K, 'mse', SIGMA,
                                 regret.RegretOptions(steps=20000, learning_rate=5e-4,
                                                      weight_decay=0.0)))
  keys = [jax.random.split(jax.random.fold_in(key, i))[0] for i in range(len(x))]
  before = np.array([float(likelihood.log_likelihood(model, state, x[i:i + 1], k, K, 'mse',
                                                     SIGMA)[0]) for i, k in enumerate(keys)])
  expected = true.logpdf(np.asarray(x, np.float64)) - before
  assert np.all(expected > 0.3), expected  # (a poor encoder: there is something to regain)
  # The fit's last steps are noisy (one draw per step, as the authors'): it ends within a few
  # hundredths of a nat of the posterior (measured: at most 0.04 here, 0.02 after 3x the steps).
  np.testing.assert_allclose(got, expected, atol=0.05)
  # No steps: the same draws before and after, so exactly no regret.
  none = regret.regret(model, state, x, key, K, 'mse', SIGMA, regret.RegretOptions(steps=0))
  assert np.all(np.asarray(none) == 0.0), none


def test_regret_is_zero_for_an_input_the_encoder_already_fits_exactly():
  """Up to the drift of 100 noisy optimiser steps away from the optimum (and the weight decay's
  pull), with the authors' settings; without decay and with a smaller step, closer still."""
  model, state, _ = linear_gaussian()
  x, key = jnp.asarray(inputs(4)), jax.random.PRNGKey(7)
  np.testing.assert_allclose(regret.regret(model, state, x, key, K, 'mse', SIGMA), 0.0, atol=0.02)
  calm = regret.RegretOptions(learning_rate=2e-5, weight_decay=0.0)
  np.testing.assert_allclose(regret.regret(model, state, x, key, K, "mse", SIGMA, calm), 0.0,
                             atol=2e-3)
  poor_model, poor_state, _ = linear_gaussian(shift=1.5, inflate=1.5)
  assert np.all(np.asarray(regret.regret(poor_model, poor_state, x, key, K, 'mse', SIGMA)) > 0.02)


def test_compressed_length_is_the_compressors_own_output_and_flat_images_are_shortest():
  import io  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  flat = np.full((2, 16, 16, 3), 128, np.uint8)
  noise = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
  stripes = np.tile((np.arange(16) % 2 * 255).astype(np.uint8)[None, None, :, None], (2, 16, 1, 3))
  images = np.concatenate([flat, stripes, noise])
  for compressor, options in (('png', dict(format='PNG', compress_level=9)),
                              ('jpeg2000', dict(format='JPEG2000', irreversible=False))):
    bits = complexity.compressed_bits(images, compressor)
    for image, b in zip(images, bits):  # the compressor's own output, in bits
      out = io.BytesIO()
      Image.fromarray(image).save(out, **options)
      assert b == 8 * len(out.getvalue())
      assert np.array_equal(np.asarray(Image.open(io.BytesIO(out.getvalue()))), image)  # lossless
    assert bits[0] == bits[1] < bits[2] <= bits[3] < bits[4], (compressor, bits)
  # Floats in [0, 1] are the same images.
  np.testing.assert_array_equal(complexity.compressed_bits(images / 255.0),
                                complexity.compressed_bits(images))


def test_complexity_score_is_bits_per_dim_minus_compressed_bits_per_dim():
  shape = (4, 4, 1)
  neg_log_px = np.array([10.0, -20.0])
  bits = np.array([64.0, 160.0])
  expected = (neg_log_px + 16 * np.log(256.0)) / (16 * np.log(2.0)) - bits / 16
  np.testing.assert_allclose(complexity.complexity_score(neg_log_px, bits, shape), expected)
