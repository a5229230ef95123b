"""The 3D variant's building blocks (issue 15, first part): networks, Chamfer distance, prior KL,
and the generation metrics, against brute-force NumPy and constructed sets with known answers."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from runs import run_main_here
from sintrovae_jax.core import losses
from sintrovae_jax.evaluators import metrics_3d
from sintrovae_jax.core.chamfer import chamfer_distance, chamfer_terms
from sintrovae_jax.families.points.networks import PointDecoder, PointEncoder


def np_chamfer(a, b):
  """Brute force: squared distances of every pair, summed minima in both directions."""
  d = ((a[:, :, None, :] - b[:, None, :, :]) ** 2).sum(-1)
  return d.min(2).sum(1) + d.min(1).sum(1)


@pytest.mark.parametrize('n,m,chunk', [(64, 64, 16), (50, 70, 16), (37, 20, 256)])
def test_chamfer_matches_brute_force_in_any_chunking(n, m, chunk):
  rng = np.random.default_rng(0)
  a, b = rng.uniform(-0.5, 0.5, (3, n, 3)), rng.uniform(-0.5, 0.5, (3, m, 3))
  got = chamfer_distance(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), chunk)
  np.testing.assert_allclose(got, np_chamfer(a, b), rtol=1e-4)
  direct = sum(chamfer_terms(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), chunk,
                             direct=True))
  np.testing.assert_allclose(direct, np_chamfer(a, b), rtol=1e-4)
  # A cloud against itself: the loss's |a|^2 + |b|^2 - 2 a.b (the reference's) is near 0; the
  # metrics' coordinate differences give exactly 0.
  same = jnp.asarray(a, jnp.float32)
  assert float(chamfer_distance(same, same, chunk)[0]) == pytest.approx(0.0, abs=1e-5)
  assert np.all(np.asarray(chamfer_terms(same, same, chunk, direct=True)) == 0)


def test_chamfer_gradient_moves_each_point_towards_its_nearest_neighbours():
  a = jnp.array([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
  b = jnp.array([[[0.1, 0.0, 0.0], [1.0, 0.2, 0.0]]])
  g = np.asarray(jax.grad(lambda v: chamfer_distance(v, b, chunk=1)[0])(a))[0]
  # Each a is the nearest of one b and has that b as its nearest: d/da |a-b|^2 counted twice.
  np.testing.assert_allclose(g, 4 * (np.asarray(a[0]) - np.asarray(b[0])), atol=1e-6)


def test_kl_to_the_scaled_prior_is_the_closed_form():
  rng = np.random.default_rng(1)
  mu, logvar = rng.normal(size=(4, 6)), rng.normal(size=(4, 6)) * 0.5
  for sigma_p in (1.0, 0.2):
    s = np.exp(0.5 * logvar)
    want = np.sum(np.log(sigma_p / s) + (s ** 2 + mu ** 2) / (2 * sigma_p ** 2) - 0.5, axis=1)
    got = losses.kl_divergence(jnp.asarray(mu), jnp.asarray(logvar), sigma_p)
    np.testing.assert_allclose(got, want, rtol=1e-5)
  # At the prior itself the divergence is zero.
  zero = losses.kl_divergence(jnp.zeros((1, 3)), jnp.full((1, 3), 2 * math.log(0.2)), 0.2)
  assert float(zero[0]) == pytest.approx(0.0, abs=1e-6)


def test_networks_have_the_reference_shapes():
  """VARIANTS.md 3.2's state dict: conv weights [out, in, 1] (here [in, out]), 5 BatchNorms,
  fc 512 -> 256, heads 256 -> z; decoder 128 -> 64 -> 128 -> 512 -> 1024 -> 6144."""
  enc, dec = PointEncoder(z_dim=128), PointDecoder(num_points=2048)
  x = jnp.zeros((2, 2048, 3))
  enc_vars = enc.init(jax.random.PRNGKey(0), x, train=False)
  shapes = jax.tree.map(lambda a: a.shape, enc_vars['params'])
  assert [shapes[f'conv_{i}']['kernel'] for i in range(5)] == [
      (3, 64), (64, 128), (128, 256), (256, 256), (256, 512)]
  assert all('bias' not in shapes[f'conv_{i}'] for i in range(5))
  assert shapes['fc']['kernel'] == (512, 256) and shapes['mu']['kernel'] == (256, 128)
  assert shapes['logvar']['kernel'] == (256, 128)
  assert sorted(enc_vars['batch_stats']) == [f'bn_{i}' for i in range(5)]
  dec_vars = dec.init(jax.random.PRNGKey(1), jnp.zeros((2, 128)), train=False)
  widths = [dec_vars['params'][k]['kernel'].shape for k in
            ('fc_0', 'fc_1', 'fc_2', 'fc_3', 'fc_out')]
  assert widths == [(128, 64), (64, 128), (128, 512), (512, 1024), (1024, 6144)]
  (mu, logvar), cloud = (enc.apply(enc_vars, x, train=False),
                         dec.apply(dec_vars, jnp.ones((2, 128)), train=False))
  assert mu.shape == logvar.shape == (2, 128) and cloud.shape == (2, 2048, 3)
  # The decoder's outputs are read as [3, N]: output j is x of point j, 2048 + j its y.
  cloud = dec.apply(dec_vars, jnp.ones((1, 128)), train=False)
  raw = _raw_decoder_output(dec_vars, jnp.ones((1, 128)))
  np.testing.assert_allclose(np.asarray(cloud)[0, 5], raw[0, [5, 2048 + 5, 4096 + 5]], rtol=1e-5)


def _raw_decoder_output(variables, z):
  h = z
  p = variables['params']
  for k in ('fc_0', 'fc_1', 'fc_2', 'fc_3'):
    h = jax.nn.relu(h @ p[k]['kernel'] + p[k]['bias'])
  return np.asarray(h @ p['fc_out']['kernel'] + p['fc_out']['bias'])


def test_max_pool_makes_the_encoder_blind_to_point_order():
  enc = PointEncoder(z_dim=8, widths=(16, 32), hidden=16)
  x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 40, 3)), jnp.float32)
  variables = enc.init(jax.random.PRNGKey(0), x, train=False)
  perm = np.random.default_rng(3).permutation(40)
  a = enc.apply(variables, x, train=False)
  b = enc.apply(variables, x[:, perm], train=False)
  np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Metrics on sets with known answers.


def _sphere(rng, n, centre, radius):
  v = rng.normal(size=(n, 3))
  return centre + radius * v / np.linalg.norm(v, axis=1, keepdims=True)


def test_grid_keeps_the_centres_inside_the_ball():
  centres = metrics_3d.grid_centres()
  assert np.linalg.norm(centres, axis=1).max() <= 0.5 + 1e-6
  axis = np.linspace(-0.5, 0.5, 28)
  full = np.stack(np.meshgrid(axis, axis, axis, indexing='ij'), -1).reshape(-1, 3)
  assert len(centres) == int(np.sum(np.linalg.norm(full, axis=1) <= 0.5)) < 28 ** 3


def test_jsd_is_zero_for_equal_sets_and_one_bit_for_disjoint_ones():
  rng = np.random.default_rng(4)
  left = np.stack([_sphere(rng, 64, np.array([-0.3, 0, 0]), 0.05) for _ in range(4)])
  right = np.stack([_sphere(rng, 64, np.array([0.3, 0, 0]), 0.05) for _ in range(4)])
  assert float(metrics_3d.jsd(jnp.asarray(left), jnp.asarray(left))) == pytest.approx(0.0,
                                                                                      abs=1e-6)
  assert float(metrics_3d.jsd(jnp.asarray(left), jnp.asarray(right))) == pytest.approx(1.0,
                                                                                       abs=1e-6)
  counts = np.asarray(metrics_3d.occupancy(jnp.asarray(left), jnp.asarray(
      metrics_3d.grid_centres())))
  assert counts.sum() == 4 * 64


def test_mmd_cov_and_1nna_on_constructed_sets():
  rng = np.random.default_rng(5)
  radii = np.linspace(0.1, 0.4, 6)
  reference = np.stack([_sphere(rng, 48, np.zeros(3), r) for r in radii]).astype(np.float32)
  far = (reference + np.array([5.0, 0, 0])).astype(np.float32)
  # Generated = the reference itself: MMD 0, every reference covered.
  same = metrics_3d.mmd_cov_1nna(metrics_3d.distances(jnp.asarray(reference),
                                                      jnp.asarray(reference)))
  assert float(same['mmd_cd']) == pytest.approx(0.0, abs=1e-5)
  assert float(same['cov_cd']) == 1.0
  # Each copy's nearest other cloud is its twin in the other set (distance 0): 1-NNA 0.
  assert float(same['1nna_cd']) == 0.0
  # Generated far away: the two sets are told apart perfectly, MMD is the brute-force minimum.
  d = metrics_3d.distances(jnp.asarray(far), jnp.asarray(reference))
  apart = metrics_3d.mmd_cov_1nna(d)
  assert float(apart['1nna_cd']) == 1.0
  cd = lambda a, b: (((a[:, None] - b[None]) ** 2).sum(-1).min(1).mean()
                     + ((a[:, None] - b[None]) ** 2).sum(-1).min(0).mean())
  brute = np.array([[cd(f, r) for r in reference] for f in far])
  np.testing.assert_allclose(d.generated_reference, brute, rtol=1e-4)
  assert float(apart['mmd_cd']) == pytest.approx(brute.min(0).mean(), rel=1e-4)
  # Only the references nearest to some generated cloud count as covered.
  assert float(apart['cov_cd']) == pytest.approx(len(set(brute.argmin(1))) / 6)
  # Generated = one reference shape repeated: coverage 1/6.
  one = np.repeat(reference[2:3], 6, axis=0)
  collapsed = metrics_3d.mmd_cov_1nna(metrics_3d.distances(jnp.asarray(one),
                                                           jnp.asarray(reference)))
  assert float(collapsed['cov_cd']) == pytest.approx(1 / 6)


def test_identical_sets_score_exactly_zero():
  x = jnp.asarray(np.random.default_rng(11).uniform(-0.5, 0.5, (5, 64, 3)), jnp.float32)
  d = metrics_3d.distances(x, x)
  assert np.all(np.diag(np.asarray(d.generated_reference)) == 0)
  assert np.all(np.asarray(d.generated_reference) >= 0)
  assert float(metrics_3d.mmd_cov_1nna(d)['mmd_cd']) == 0.0


def _pointflow_1nna(d):
  """PointFlow's knn(M_rr, M_rs, M_ss, 1): the union's matrix [references, samples], each
  column's first minimum (diagonal excluded) as its neighbour, accuracy of its label."""
  rs = np.asarray(d.generated_reference).T
  m = np.block([[np.asarray(d.reference_reference), rs],
                [rs.T, np.asarray(d.generated_generated)]])
  m = m + np.diag(np.full(len(m), np.inf))
  label = np.r_[np.ones(rs.shape[0]), np.zeros(rs.shape[1])]
  return np.mean(label[np.argmin(m, axis=0)] == label)


def test_1nna_breaks_exact_ties_as_pointflow_references_first():
  """Clouds are one shape shifted along x by integers (its points 100 apart, so the CD of two
  shifts t apart is exactly 2 t^2). References at 0, 2 and samples at -2, -4: reference 0 is
  equally near reference 2 and sample -2, which goes to the reference (right); sample -2 is
  equally near reference 0 and sample -4, again the reference (wrong). 3 of 4 right."""
  shape = np.array([[0, 0, 0], [100, 0, 0], [0, 100, 0], [0, 0, 100]], np.float32)
  clouds = lambda shifts: jnp.asarray([shape + [t, 0, 0] for t in shifts], jnp.float32)
  d = metrics_3d.distances(clouds([-2, -4]), clouds([0, 2]))
  np.testing.assert_array_equal(d.generated_reference, [[8, 32], [32, 72]])
  np.testing.assert_array_equal(d.reference_reference, [[0, 8], [8, 0]])
  np.testing.assert_array_equal(d.generated_generated, [[0, 8], [8, 0]])
  assert float(metrics_3d.mmd_cov_1nna(d)['1nna_cd']) == 0.75 == _pointflow_1nna(d)
  # A sample halfway between two references covers the first.
  tie = metrics_3d.distances(clouds([1]), clouds([0, 2, 9]))
  assert float(metrics_3d.mmd_cov_1nna(tie)['cov_cd']) == pytest.approx(1 / 3)
  assert int(jnp.argmin(tie.generated_reference[0])) == 0
  # On sets with ties and without, the rule is PointFlow's.
  rng = np.random.default_rng(12)
  for shifts in (rng.integers(-3, 4, (2, 7)), rng.uniform(-3, 3, (2, 7))):
    d = metrics_3d.distances(clouds(shifts[0]), clouds(shifts[1]))
    assert float(metrics_3d.mmd_cov_1nna(d)['1nna_cd']) == pytest.approx(_pointflow_1nna(d))


# ---------------------------------------------------------------------------------------------
# The 3D variant's step (VARIANTS.md 3.3).


def _points_model(n=32, z=4):
  import sintrovae_jax as sv  # pylint: disable=g-import-not-at-top
  return sv.SoftIntroVAE(PointEncoder(z_dim=z, widths=(8, 16), hidden=8),
                         PointDecoder(num_points=n, widths=(8, 16)))


def test_points_step_takes_the_gradients_variants_md_describes():
  """One SGD(1) step equals -grad of a restatement of 3.3: Chamfer REC, a N(0, 0.2^2) prior (its
  KL and the generated data's latents), s = 1/(3N), (a) the encoder's r_i target stopped, (b) the
  decoder reconstructing from z redrawn from the stopped pre-update posterior with fresh noise."""
  import optax  # pylint: disable=g-import-not-at-top
  import sintrovae_jax as sv  # pylint: disable=g-import-not-at-top
  from sintrovae_jax.core import train_step  # pylint: disable=g-import-not-at-top
  n, b = 32, 6
  model = _points_model(n)
  state = sv.create_train_state(model, jax.random.PRNGKey(0), (n, 3), optax.sgd(1.0))
  x = jnp.asarray(np.random.default_rng(6).uniform(-0.5, 0.5, (b, n, 3)), jnp.float32)
  # Small betas keep the exp-ELBO terms away from underflow, so their gradients are visible.
  w = sv.LossWeights(beta_rec=1.0, beta_kl=1.0, beta_neg=0.5, gamma_r=1.0,
                     scale=sv.default_scale((n, 3)), recon_loss='chamfer', prior_std=0.2)
  assert w.scale == 1 / (3 * n)
  new, metrics = jax.jit(sv.make_train_step(model, w, variant='points'))(state, x)
  assert float(metrics['nonfinite']) == 0
  key = jax.random.fold_in(state.rng, 0)
  d = sv.draw_normals(key, jnp.arange(b), model.z_dim)
  eps_z = train_step.per_example_normals(jax.random.fold_in(key, train_step._POINTS_STREAM),
                                         jnp.arange(b), model.z_dim)
  stats = state.batch_stats['encoder']
  sg = jax.lax.stop_gradient

  def E(p, v):
    return model.encoder.apply({'params': p, 'batch_stats': stats}, v, train=True,
                               mutable=['batch_stats'])[0]

  D = lambda p, z: model.decoder.apply({'params': p}, z)
  rep, cd = sv.reparameterize, chamfer_distance
  kl = lambda mu, lv: losses.kl_divergence(mu, lv, 0.2)
  s = w.scale
  ee = lambda e, k: jnp.mean(jnp.exp(-2 * s * (w.beta_rec * e + w.beta_neg * k)))

  def loss_e(enc, dec, stop_target=True):
    fake = D(dec, 0.2 * d.noise)
    mu, lv = E(enc, x)
    rec = D(dec, rep(mu, lv, d.eps_real))
    rmu, rlv = E(enc, sg(rec))
    fmu, flv = E(enc, sg(fake))
    r = cd(sg(rec) if stop_target else rec, D(dec, rep(rmu, rlv, d.eps_rec)))
    f = cd(sg(fake), D(dec, rep(fmu, flv, d.eps_fake)))
    return (s * (w.beta_rec * cd(x, rec).mean() + w.beta_kl * kl(mu, lv).mean())
            + 0.25 * (ee(r, kl(rmu, rlv)) + ee(f, kl(fmu, flv))))

  def loss_d(dec, enc, z):
    fake, rec = D(dec, 0.2 * d.noise), D(dec, sg(z))
    rmu, rlv = E(enc, rec)
    fmu, flv = E(enc, fake)
    rr = D(dec, sg(rep(rmu, rlv, d.eps_rec_dec)))
    rf = D(dec, sg(rep(fmu, flv, d.eps_fake_dec)))
    return s * (w.beta_rec * cd(x, rec).mean() + 0.5 * w.beta_kl * (kl(rmu, rlv).mean()
                                                                   + kl(fmu, flv).mean())
                + 0.5 * w.gamma_r * w.beta_rec * (cd(sg(rec), rr).mean() + cd(sg(fake), rf).mean()))

  flat = lambda t: np.concatenate([np.ravel(a) for a in jax.tree.leaves(t)])
  enc0, dec0 = state.encoder_params, state.decoder_params
  g_enc = jax.jit(jax.grad(loss_e))(enc0, dec0)
  np.testing.assert_allclose(flat(new.encoder_params), flat(enc0) - flat(g_enc), atol=2e-6)
  mu0, lv0 = E(enc0, x)
  z_redrawn = rep(mu0, lv0, eps_z)
  grad_d = jax.jit(jax.grad(loss_d))
  g_dec = grad_d(dec0, new.encoder_params, z_redrawn)
  np.testing.assert_allclose(flat(new.decoder_params), flat(dec0) - flat(g_dec), atol=2e-6)
  # The comparisons can fail: with the image variant's unstopped target, or the E-step's own z.
  g_enc_unstopped = jax.jit(jax.grad(lambda e, dd: loss_e(e, dd, stop_target=False)))(enc0, dec0)
  assert np.abs(flat(g_enc_unstopped) - flat(g_enc)).max() > 1e-7
  g_dec_same_z = grad_d(dec0, new.encoder_params, rep(mu0, lv0, d.eps_real))
  assert np.abs(flat(g_dec_same_z) - flat(g_dec)).max() > 1e-7


# ---------------------------------------------------------------------------------------------
# The released checkpoints' layout (VARIANTS.md 3.2), read without torch or pickled code.


def _reference_state_dict(rng, z=128, n=2048):
  """A state dict with the reference's names and shapes, random values (running stats too)."""
  sd = {}
  widths = (3, 64, 128, 256, 256, 512)
  for i, (conv, norm) in enumerate(zip((0, 3, 6, 9, 12), (2, 5, 8, 11, 14))):
    sd[f'encoder.conv.{conv}.weight'] = rng.normal(0, 0.3, (widths[i + 1], widths[i], 1))
    sd[f'encoder.conv.{norm}.weight'] = rng.uniform(0.5, 1.5, widths[i + 1])
    sd[f'encoder.conv.{norm}.bias'] = rng.normal(0, 0.1, widths[i + 1])
    sd[f'encoder.conv.{norm}.running_mean'] = rng.normal(0, 0.5, widths[i + 1])
    sd[f'encoder.conv.{norm}.running_var'] = rng.uniform(0.5, 2.0, widths[i + 1])
    sd[f'encoder.conv.{norm}.num_batches_tracked'] = np.array(7, np.int64)
  for name, (o, i) in (('encoder.fc.0', (256, 512)), ('encoder.mu_layer', (z, 256)),
                       ('encoder.std_layer', (z, 256))):
    sd[f'{name}.weight'], sd[f'{name}.bias'] = rng.normal(0, 0.05, (o, i)), rng.normal(0, 0.1, o)
  dims = (z, 64, 128, 512, 1024, 3 * n)
  for k, layer in enumerate((0, 2, 4, 6, 8)):
    sd[f'decoder.model.{layer}.weight'] = rng.normal(0, dims[k] ** -0.5, (dims[k + 1], dims[k]))
    sd[f'decoder.model.{layer}.bias'] = rng.normal(0, 0.1, dims[k + 1])
  return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in sd.items()}


def _torch_forward(sd, x, z):
  """models/vae.py's eval-mode forward pass, restated in NumPy float64 on [B, 3, N] clouds."""
  h = np.transpose(x, (0, 2, 1)).astype(np.float64)
  for conv, norm in zip((0, 3, 6, 9, 12), (2, 5, 8, 11, 14)):
    h = np.einsum('oi,bin->bon', sd[f'encoder.conv.{conv}.weight'][:, :, 0], h)
    h = np.maximum(h, 0)
    g = lambda k: sd[f'encoder.conv.{norm}.{k}'][None, :, None].astype(np.float64)
    h = (h - g('running_mean')) / np.sqrt(g('running_var') + 1e-5) * g('weight') + g('bias')
  h = h.max(axis=2)
  lin = lambda name, v: v @ sd[f'{name}.weight'].T.astype(np.float64) + sd[f'{name}.bias']
  h = np.maximum(lin('encoder.fc.0', h), 0)
  mu, logvar = lin('encoder.mu_layer', h), lin('encoder.std_layer', h)
  y = z.astype(np.float64)
  for layer in (0, 2, 4, 6):
    y = np.maximum(lin(f'decoder.model.{layer}', y), 0)
  cloud = lin('decoder.model.8', y).reshape(len(z), 3, -1)  # [B, 3, N] as the reference
  return mu, logvar, cloud


def test_reference_state_dict_imports_and_reproduces_its_forward_pass(tmp_path):
  import torch_files  # pylint: disable=g-import-not-at-top
  from sintrovae_jax.interop import points_checkpoint  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(7)
  sd = _reference_state_dict(rng)
  path = str(tmp_path / 'chair_01618_jsd_0.0175.pth')
  torch_files.save_zip(torch_files.state_dict(sd), path)
  enc, dec, stats = points_checkpoint.from_torch_state_dict(points_checkpoint.read_state_dict(path))
  x = rng.uniform(-0.5, 0.5, (2, 2048, 3)).astype(np.float32)
  z = rng.normal(size=(2, 128)).astype(np.float32)
  hp = jax.lax.Precision.HIGHEST
  mu, logvar = PointEncoder(precision=hp).apply({'params': enc, 'batch_stats': stats}, x,
                                                train=False)
  cloud = PointDecoder(precision=hp).apply({'params': dec}, z, train=False)
  want_mu, want_logvar, want_cloud = _torch_forward(sd, x, z)
  np.testing.assert_allclose(mu, want_mu, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(logvar, want_logvar, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.transpose(cloud, (0, 2, 1)), want_cloud, rtol=1e-4, atol=1e-4)
  # A state dict of another model is refused, naming what is wrong.
  del sd['encoder.mu_layer.bias']
  with pytest.raises(points_checkpoint.StateDictError, match='encoder.mu_layer.bias'):
    points_checkpoint.from_torch_state_dict(sd)
  with pytest.raises(points_checkpoint.StateDictError, match='do not|does not'):
    points_checkpoint.from_torch_state_dict(dict(_reference_state_dict(rng), extra=np.zeros(3)))
  # A pickled model (torch.save(model)) reads as an inert record, named in the error.
  model = torch_files.Object(torch_files.Global('models.vae', 'SoftIntroVAE'), {'training': False})
  torch_files.save_zip(model, path)
  with pytest.raises(points_checkpoint.StateDictError, match='pickled models.vae.SoftIntroVAE object'):
    points_checkpoint.read_state_dict(path)


# ---------------------------------------------------------------------------------------------
# Data and the training program on synthetic shapes.


def test_folders_split_by_sorted_name_and_every_format_reads_back(tmp_path):
  import synthetic_shapes  # pylint: disable=g-import-not-at-top
  from sintrovae_jax.data import point_files as point_data  # pylint: disable=g-import-not-at-top
  root = synthetic_shapes.write_folder(str(tmp_path), per_category=20, n=16)
  rng = np.random.default_rng(0)
  cloud = synthetic_shapes.shape('torus', 16, rng)
  for name, binary in (('a.ply', False), ('b.ply', True)):
    synthetic_shapes.write_ply(str(tmp_path / name), cloud, binary)
    np.testing.assert_allclose(point_data.read_cloud(str(tmp_path / name), 16), cloud, atol=1e-6)
  splits = {s: point_data.split_files(root, ['sphere', 'cube'], s) for s in point_data.SPLITS}
  assert [len(v) for v in splits.values()] == [34, 2, 4]  # 17/1/2 of each category's 20
  assert splits['train'][:17] == sorted(splits['train'][:17])
  assert not set(splits['train']) & set(splits['test'])
  with pytest.raises(point_data.PointDataError, match='expected \\(32, 3\\)'):
    point_data.load_split(root, ['sphere'], 'test', 32)
  with pytest.raises(point_data.PointDataError, match="category 'chair'.*'03001627'"):
    point_data.split_files(root, ['chair'], 'train')


@pytest.mark.long
@pytest.mark.default_python_only
def test_shapes_run_trains_and_beats_the_untrained_model_on_every_metric(tmp_path):
  import synthetic_shapes  # pylint: disable=g-import-not-at-top
  from configs import shapenet_points  # pylint: disable=g-import-not-at-top
  from sintrovae_jax.program import standard, train  # pylint: disable=g-import-not-at-top
  root = synthetic_shapes.write_folder(str(tmp_path / 'shapes'), per_category=40, n=64)
  config = shapenet_points.get_config('sphere,torus,cube')
  config.update(dict(data_dir=root, num_points=64, z_dim=16, batch_size=16, beta_neg=32.0,
                     num_train_steps=250, lr_decay_steps=(), log_every_steps=125,
                     sample_every_steps=250, checkpoint_every_steps=250, num_eval_clouds=12))
  exp = standard.build(config)
  untrained = standard.evaluate(exp, exp.state)
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert results['num_clouds'] == 12  # 4 test clouds of each category
  assert results['rec_chamfer'] < 0.5 * untrained['rec_chamfer'], (untrained, results)
  assert results['jsd'] < untrained['jsd'] and results['mmd_cd'] < untrained['mmd_cd']
  assert results['cov_cd'] > untrained['cov_cd'] and results['1nna_cd'] < untrained['1nna_cd']
  assert os.path.getsize(tmp_path / 'run' / 'pictures' / 'real_rec_sample_00000250.png') > 10_000
  paths = standard.sample_from_checkpoint(config, str(tmp_path / 'run'), num=4)
  assert np.load(paths[0]).shape == (4, 64, 3) and paths[1].endswith('.png')


def test_imported_release_samples_through_main(tmp_path):
  """scripts/import_points_checkpoint.py on a state dict with the release's layout, then
  `main.py --mode=sample` on the workdir it writes: the imported decoder's clouds come out."""
  import torch_files  # pylint: disable=g-import-not-at-top
  from scripts import import_points_checkpoint  # pylint: disable=g-import-not-at-top
  from sintrovae_jax.core import inference  # pylint: disable=g-import-not-at-top
  from sintrovae_jax.program import standard, workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  sd = _reference_state_dict(np.random.default_rng(8))
  path = str(tmp_path / 'table_01592_jsd_0.0143.pth')
  torch_files.save_zip(torch_files.state_dict(sd), path)
  workdir = str(tmp_path / 'table')
  assert import_points_checkpoint.main([path, '--category=table', f'--workdir={workdir}']) == 0
  config = workdir_lib.load_config(workdir)
  state = workdir_lib.latest_checkpoint_state(standard.build(config), workdir, 'sample from')
  z = np.random.default_rng(9).normal(size=(2, 128)).astype(np.float32)
  np.testing.assert_allclose(
      np.transpose(np.asarray(inference.decode(standard.build(config).model, state, z)), (0, 2, 1)),
      _torch_forward(sd, np.zeros((2, 2048, 3), np.float32), z)[2], rtol=1e-3, atol=1e-3)
  out = run_main_here('--mode=sample', f'--workdir={workdir}', '--num_samples=4')
  assert out.returncode == 0, out.stderr[-2000:]
  assert np.load(os.path.join(workdir, 'samples', 'samples_00000000.npy')).shape == (4, 2048, 3)
  # Not a state dict of this model: one line, exit 1.
  bad = str(tmp_path / 'bad.pth')
  torch_files.save_zip(torch_files.state_dict({'fc.weight': np.zeros((2, 2), np.float32)}), bad)
  assert import_points_checkpoint.main([bad, '--category=table', f'--workdir={workdir}2']) == 1
