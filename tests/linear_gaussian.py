"""A linear-Gaussian VAE whose log p(x) and posterior are known in closed form: the likelihood
and regret tests' reference model."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import sintrovae_jax as sv

X_DIM, Z_DIM, SIGMA = 3, 2, 0.5


def linear_gaussian(shift=0.0, inflate=0.0):
  """A linear VAE (no hidden layers) whose encoder is the exact posterior, optionally perturbed.

  Decoder x = W z + b + N(0, SIGMA^2 I), z ~ N(0, I), so p(x) = N(b, W W^T + SIGMA^2 I). W has
  orthogonal columns, so the posterior covariance is diagonal and the encoder can represent it:
  Sigma = (I + W^T W / SIGMA^2)^-1, mu = Sigma W^T (x - b) / SIGMA^2.
  """
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(X_DIM, X_DIM)))
  w = q[:, :Z_DIM] * np.array([1.5, 0.7])
  b = np.array([0.3, -0.2, 0.5])
  post_var = 1.0 / (1.0 + np.sum(w ** 2, axis=0) / SIGMA ** 2)
  a = post_var[:, None] * w.T / SIGMA ** 2  # mu = a (x - b)
  enc = {'Dense_0': {'kernel': np.concatenate([a.T, np.zeros((X_DIM, Z_DIM))], 1),
                     'bias': np.concatenate([-a @ b + shift, np.log(post_var) + inflate])}}
  dec = {'Dense_0': {'kernel': w.T, 'bias': b}}
  model = sv.SoftIntroVAE(sv.MLPEncoder((), Z_DIM), sv.MLPDecoder((), X_DIM))
  state = sv.create_train_state(model, jax.random.PRNGKey(0), (X_DIM,),
                                sv.make_optimizer(sv.learning_rate_schedule(1e-3)))
  as32 = lambda t: jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), t)
  state = state.replace(encoder_params=as32(enc), decoder_params=as32(dec))
  true = stats.multivariate_normal(b, w @ w.T + SIGMA ** 2 * np.eye(X_DIM))
  return model, state, true


def inputs(n=6):
  return np.random.default_rng(1).normal(size=(n, X_DIM)).astype(np.float32)
