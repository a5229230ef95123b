"""Image files in a folder: which names count as images, listing them, checking they decode.

TensorFlow-free, so that config validation, the tf.data pipeline and scripts/fid.py share it.
"""

import os
from typing import List, Tuple

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')


def is_image_name(name: str) -> bool:
  return name.lower().endswith(IMAGE_EXTENSIONS)


def list_image_folder(folder: str) -> List[str]:
  """Image files under `folder` (recursive, by extension), sorted; no file is opened."""
  paths = []
  for root, _, names in os.walk(folder):
    paths.extend(os.path.join(root, n) for n in names if is_image_name(n))
  return sorted(paths)


def has_image_files(folder: str) -> bool:
  """Whether `folder` holds any image file (stops at the first)."""
  return any(is_image_name(n) for _, _, names in os.walk(folder) for n in names)


def check_image_files(paths: List[str]) -> Tuple[List[str], List[str]]:
  """(paths that decode, paths that do not), decoding each file fully with PIL."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  good, bad = [], []
  for path in paths:
    try:
      with Image.open(path) as im:
        im.load()
      good.append(path)
    except Exception:  # pylint: disable=broad-except
      bad.append(path)
  return good, bad
