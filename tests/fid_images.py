"""Fixed image sets for the FID tests and their golden file: real pictures that scikit-image ships.

Pure NumPy (no resizing here), so the golden script and the tests build identical arrays.
"""

import numpy as np
from skimage import data

PHOTOS = ('astronaut', 'chelsea', 'coffee')  # 512x512, 300x451, 400x600: three resize cases
CROP_SOURCES = ('astronaut', 'chelsea', 'coffee', 'rocket', 'immunohistochemistry', 'colorwheel')
SET_SIZE = 100
CROP = 48


def photo(name: str) -> np.ndarray:
  """[1, H, W, 3] float32 in [0, 1]."""
  return (getattr(data, name)()[None].astype(np.float32) / 255.0)


def faces(n: int = SET_SIZE) -> np.ndarray:
  """The first n of scikit-image's 200 LFW face crops: [n, 25, 25, 1] float32 in [0, 1]."""
  return data.lfw_subset()[:n, :, :, None].astype(np.float32)


def crops(n: int = SET_SIZE, size: int = CROP, seed: int = 2015) -> np.ndarray:
  """n square crops of the photos at seeded positions: [n, size, size, 3] float32 in [0, 1]."""
  rng = np.random.default_rng(seed)
  sources = [getattr(data, name)()[..., :3] for name in CROP_SOURCES]
  out = np.empty((n, size, size, 3), np.float32)
  for i in range(n):
    src = sources[rng.integers(len(sources))]
    y = rng.integers(src.shape[0] - size + 1)
    x = rng.integers(src.shape[1] - size + 1)
    out[i] = src[y:y + size, x:x + size] / 255.0
  return out
