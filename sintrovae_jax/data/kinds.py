"""What kind of data a config names (images, 2D/npy vectors, point clouds), one example's shape,
each host's share of a batch, and the error for data that cannot be used."""

from typing import Optional, Tuple

import jax

from sintrovae_jax.data import toy

# TFDS image data sets and their channel counts.
TFDS_CHANNELS = {'mnist': 1, 'fashion_mnist': 1, 'cifar10': 3, 'svhn_cropped': 3,
                 'celeb_a_hq/256': 3, 'celeb_a_hq/1024': 3}
TFDS_SIZES = {'mnist': 28, 'fashion_mnist': 28, 'cifar10': 32, 'svhn_cropped': 32,
              'celeb_a_hq/256': 256, 'celeb_a_hq/1024': 1024}
VECTOR_DATASETS = toy.DATASETS + ('npy',)
POINT_DATASETS = ('point_folder',)
DATASETS = tuple(TFDS_CHANNELS) + ('image_folder',) + VECTOR_DATASETS + POINT_DATASETS


def is_vector_data(config) -> bool:
  return config.dataset in VECTOR_DATASETS


def is_point_data(config) -> bool:
  """3D point clouds ([N, 3] per example)."""
  return config.dataset in POINT_DATASETS


def is_image_data(config) -> bool:
  return not (is_vector_data(config) or is_point_data(config))


def kind(config) -> str:
  """'image', 'vector' (2D sets, .npy points) or 'points' (3D point clouds)."""
  if is_point_data(config):
    return 'points'
  return 'vector' if is_vector_data(config) else 'image'


def data_shape(config, vector_dim: Optional[int] = None) -> Tuple[int, ...]:
  """One example's shape: [H, W, C] for images, [D] for vectors (`vector_dim` for npy files)."""
  if config.dataset == 'npy':
    return (vector_dim,)
  if is_point_data(config):
    return (config.num_points, 3)
  if is_vector_data(config):
    return (2,)
  c = TFDS_CHANNELS.get(config.dataset, config.image_channels)
  return (config.image_size, config.image_size, c)


def point_categories(config) -> Tuple[str, ...]:
  return tuple(c.strip() for c in str(config.point_categories).split(',') if c.strip())


class DataError(RuntimeError):
  """The data a config names is missing or unusable; the message says how to prepare it."""


def per_host_batch_size(config) -> int:
  return config.batch_size // jax.process_count()
