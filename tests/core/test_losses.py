"""Loss terms and full objectives against an independent NumPy restatement of ALGORITHM.md."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sintrovae_jax as sv
from sintrovae_jax.core import losses
from conftest import mlp_model, np_mlp

RTOL = 1e-5


def np_kl(mu, logvar):
  return -0.5 * np.sum(1 + logvar - np.exp(logvar) - mu ** 2, axis=1)


def np_rec(x, y):
  return np.sum(((x - y) ** 2).reshape(len(x), -1), axis=1)


def test_terms_match_numpy(rng):
  mu, logvar = rng.normal(size=(6, 5)), rng.normal(size=(6, 5)) * 0.5
  x, y = rng.uniform(size=(6, 4, 4, 3)), rng.normal(size=(6, 4, 4, 3))
  np.testing.assert_allclose(sv.kl_divergence(jnp.array(mu), jnp.array(logvar)),
                             np_kl(mu, logvar), rtol=RTOL)
  np.testing.assert_allclose(sv.reconstruction_error(jnp.array(x), jnp.array(y)), np_rec(x, y),
                             rtol=RTOL)
  np.testing.assert_allclose(sv.reconstruction_error(jnp.array(x), jnp.array(y), 'l1'),
                             np.abs(x - y).reshape(6, -1).sum(1), rtol=RTOL)
  p = 1 / (1 + np.exp(-y))
  bce = -(x * np.log(p) + (1 - x) * np.log(1 - p))
  np.testing.assert_allclose(sv.reconstruction_error(jnp.array(x), jnp.array(y), 'bce'),
                             bce.reshape(6, -1).sum(1), rtol=RTOL)
  eps = rng.normal(size=(6, 5))
  np.testing.assert_allclose(sv.reparameterize(jnp.array(mu), jnp.array(logvar), jnp.array(eps)),
                             mu + eps * np.exp(0.5 * logvar), rtol=RTOL)
  r, k, s = rng.uniform(size=6) * 100, rng.uniform(size=6), 1 / 48
  np.testing.assert_allclose(sv.exp_elbo(jnp.array(r), jnp.array(k), s, 0.5, 256.0),
                             np.mean(np.exp(-2 * s * (0.5 * r + 256.0 * k))), rtol=RTOL)
  assert sv.default_scale((16, 16, 3)) == 1 / 768 and sv.default_scale((2,)) == 0.5
  with pytest.raises(ValueError, match='recon_loss'):
    sv.reconstruction_error(jnp.array(x), jnp.array(y), 'huber')


def _setup(rng, batch=8, x_dim=2, z_dim=2):
  model = mlp_model(x_dim, z_dim)
  enc, dec, stats = model.init(jax.random.PRNGKey(1), (x_dim,))
  x = rng.normal(size=(batch, x_dim)).astype(np.float32)
  draws = sv.Draws(*[rng.normal(size=(batch, z_dim)).astype(np.float32) for _ in range(6)])
  return model, enc, dec, stats, x, draws


def np_calc_reconstruction_loss(x, recon_x, loss_type='mse', reduction='sum'):
  """The reference's calc_reconstruction_loss (soft_intro_vae/train_soft_intro_vae.py L268-294),
  in NumPy: 'mse' sums per example first; 'l1' and 'bce' are PyTorch's l1_loss and
  binary_cross_entropy with the given reduction over every element. `recon_x` is in data space."""
  recon_x, x = recon_x.reshape(len(recon_x), -1), x.reshape(len(x), -1)
  if loss_type == 'mse':
    err = ((recon_x - x) ** 2).sum(1)
    return {'sum': err.sum(), 'mean': err.mean(), 'none': err}[reduction]
  if loss_type == 'l1':
    err = np.abs(recon_x - x)
  else:
    err = -(x * np.log(recon_x) + (1 - x) * np.log(1 - recon_x))
  return {'sum': err.sum(), 'mean': err.mean(), 'none': err}[reduction]


def np_objectives(enc, dec, x, d, w):
  """ALGORITHM.md's loss_E, loss_D and the VAE loss, restated in float64 NumPy.

  Reconstruction terms as the reference computes them: `reduction="mean"` for loss_rec, loss_rr
  and loss_rf (with w.recon_reduction='reference'; per-example sums averaged with 'sum'), and
  `reduction='none'` summed per example for the exp-ELBO terms. For 'bce' the decoder's outputs are
  logits, and their sigmoid is what the reference's decoder would output.
  """
  def E(v):
    out = np_mlp(enc, v)
    return np.split(out, 2, axis=1)
  to_data = (lambda o: 1 / (1 + np.exp(-o))) if w.recon_loss == 'bce' else (lambda o: o)
  D = lambda z: to_data(np_mlp(dec, z))
  reparam = lambda mu, lv, eps: mu + eps * np.exp(0.5 * lv)

  def batch_mean(target, out):
    if w.recon_reduction == 'reference':
      return np_calc_reconstruction_loss(target, out, w.recon_loss, 'mean')
    return per_example(target, out).mean()

  def per_example(target, out):
    err = np_calc_reconstruction_loss(target, out, w.recon_loss, 'none')
    while err.ndim > 1:
      err = err.sum(-1)
    return err

  s = w.scale
  fake = D(d.noise)
  mu, lv = E(x)
  z = reparam(mu, lv, d.eps_real)
  rec = D(z)
  loss_rec, kl_real = batch_mean(x, rec), np_kl(mu, lv).mean()
  rmu, rlv = E(rec)
  rec_rec = D(reparam(rmu, rlv, d.eps_rec))
  fmu, flv = E(fake)
  rec_fake = D(reparam(fmu, flv, d.eps_fake))
  ee_rec = np.mean(np.exp(-2 * s * (w.beta_rec * per_example(rec, rec_rec)
                                    + w.beta_neg * np_kl(rmu, rlv))))
  ee_fake = np.mean(np.exp(-2 * s * (w.beta_rec * per_example(fake, rec_fake)
                                     + w.beta_neg * np_kl(fmu, flv))))
  loss_e = s * (w.beta_rec * loss_rec + w.beta_kl * kl_real) + 0.25 * (ee_rec + ee_fake)
  # The decoder half, with the same (here: un-updated) encoder.
  rmu2, rlv2 = E(rec)
  fmu2, flv2 = E(fake)
  rr = D(reparam(rmu2, rlv2, d.eps_rec_dec))
  rf = D(reparam(fmu2, flv2, d.eps_fake_dec))
  loss_d = s * (w.beta_rec * loss_rec + 0.5 * w.beta_kl * (np_kl(rmu2, rlv2).mean()
                                                            + np_kl(fmu2, flv2).mean())
                + 0.5 * w.gamma_r * w.beta_rec * (batch_mean(rec, rr) + batch_mean(fake, rf)))
  vae = w.beta_rec * loss_rec + w.beta_kl * kl_real
  return dict(loss_e=loss_e, loss_d=loss_d, vae=vae, exp_elbo_rec=ee_rec, exp_elbo_fake=ee_fake,
              kl_real=kl_real, loss_rec=loss_rec, kl_fake=np_kl(fmu2, flv2).mean())


@pytest.mark.parametrize('kind,reduction,gamma_r', [
    ('mse', 'reference', 1e-8), ('mse', 'reference', 1.0), ('mse', 'sum', 1.0),
    ('l1', 'reference', 1.0), ('l1', 'sum', 1.0), ('bce', 'reference', 1.0), ('bce', 'sum', 1.0)])
def test_objectives_match_numpy(rng, kind, reduction, gamma_r):
  model, enc, dec, stats, x, d = _setup(rng, x_dim=3)
  if kind == 'bce':
    x = rng.uniform(size=x.shape).astype(np.float32)  # BCE targets are probabilities
  w = sv.LossWeights(beta_rec=0.2, beta_kl=0.3, beta_neg=0.9, gamma_r=gamma_r, scale=0.5,
                     recon_loss=kind, recon_reduction=reduction)
  want = np_objectives(enc, dec, x, d, w)
  loss_e, (_, aux_e) = sv.encoder_objective(enc, dec, stats, x, d, model, w)
  loss_d, (_, aux_d) = sv.decoder_objective(dec, enc, stats, x, aux_e['z'], d, model, w)
  loss_v, _ = sv.vae_objective((enc, dec), stats, x, d, model, w)
  np.testing.assert_allclose(loss_e, want['loss_e'], rtol=RTOL)
  np.testing.assert_allclose(loss_d, want['loss_d'], rtol=RTOL)
  np.testing.assert_allclose(loss_v, want['vae'], rtol=RTOL)
  for k in ('exp_elbo_rec', 'exp_elbo_fake', 'kl_real', 'loss_rec'):
    np.testing.assert_allclose(aux_e[k], want[k], rtol=RTOL, err_msg=k)
  np.testing.assert_allclose(aux_d['kl_fake'], want['kl_fake'], rtol=RTOL)


def test_reductions_differ_exactly_by_the_element_count(rng):
  """'reference' divides l1/bce batch terms by C*H*W and leaves mse alone; the names are checked."""
  x, y = jnp.array(rng.uniform(size=(3, 4, 4, 2))), jnp.array(rng.normal(size=(3, 4, 4, 2)))
  for kind in ('mse', 'l1', 'bce'):
    ref = float(losses.mean_reconstruction_error(x, y, kind, 'reference'))
    summed = float(losses.mean_reconstruction_error(x, y, kind, 'sum'))
    assert summed == pytest.approx(float(jnp.mean(sv.reconstruction_error(x, y, kind))), rel=1e-6)
    assert ref == pytest.approx(summed if kind == 'mse' else summed / 32, rel=1e-6)
  with pytest.raises(ValueError, match='recon_reduction'):
    losses.mean_reconstruction_error(x, y, 'l1', 'none')
