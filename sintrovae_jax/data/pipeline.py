"""The input pipeline's entry points: a run's training batches per host (NumPy streams for points
and clouds, tf.data for images: numpy_batches.py, tf_images.py), and the data check that runs
before anything compiles.
"""

from typing import Iterator, Optional

import numpy as np

from sintrovae_jax.data import kinds, numpy_batches, point_files as point_data, tf_images


def check_data(config) -> None:
  """Raises DataError now if the training data is missing (TFDS: the split must load; point
  clouds: the split's files must be listed)."""
  if kinds.is_image_data(config) and config.dataset != 'image_folder':
    tf_images.tfds_split(config, config.train_split)
  if kinds.is_point_data(config):
    point_data.split_files(config.data_dir, kinds.point_categories(config), config.train_split)


def train_iterator(config, start_step: int = 0,
                   points: Optional[np.ndarray] = None) -> Iterator[np.ndarray]:
  """Per-host NumPy batches from `start_step` on: float32 points, or uint8 images."""
  if kinds.is_vector_data(config) or kinds.is_point_data(config):
    return numpy_batches.point_batches(config, start_step, points)
  return tf_images.image_batches(config, start_step)
