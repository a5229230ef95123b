"""Shared test helpers: tiny networks and a NumPy restatement of the MLPs."""

import numpy as np
import pytest

import sintrovae_jax as sv


def mlp_model(x_dim=2, z_dim=2, hidden=(16, 16)):
  return sv.SoftIntroVAE(sv.MLPEncoder(hidden, z_dim), sv.MLPDecoder(hidden, x_dim))


def tiny_image_model(z_dim=4, channels=(8, 16), image_size=16, c=3):
  return sv.SoftIntroVAE(sv.ImageEncoder(channels, z_dim),
                         sv.ImageDecoder(channels, image_size, c))


def np_mlp(params, x):
  """NumPy float64 forward pass of sv.MLPEncoder/MLPDecoder: Dense+ReLU layers, linear last."""
  layers = sorted(params, key=lambda name: int(name.split('_')[-1]))
  h = np.asarray(x, np.float64)
  for i, name in enumerate(layers):
    h = h @ np.asarray(params[name]['kernel'], np.float64) + np.asarray(params[name]['bias'],
                                                                         np.float64)
    if i < len(layers) - 1:
      h = np.maximum(h, 0.0)
  return h


@pytest.fixture
def rng():
  return np.random.default_rng(0)
