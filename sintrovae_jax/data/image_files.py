"""Image files in a folder (local or a bucket): which names count as images, listing them,
checking they decode.

TensorFlow-free, so that config validation, the tf.data pipeline and scripts/fid.py share it.
Listing and reading go through `fs`, so gs:// folders work as local ones do.
"""

import io
from typing import List, Tuple

from sintrovae_jax.io import fs

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')


def is_image_name(name: str) -> bool:
  return name.lower().endswith(IMAGE_EXTENSIONS)


def list_image_folder(folder: str) -> List[str]:
  """Image files under `folder` (recursive, by extension), sorted; no file is opened."""
  return [p for p in fs.walk_files(folder) if is_image_name(p)]


def has_image_files(folder: str) -> bool:
  """Whether `folder` holds any image file."""
  return bool(list_image_folder(folder))


def decode_image(data: bytes, mode: str):
  """A PIL image of encoded bytes, fully decoded and converted to `mode` ('L' or 'RGB')."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(io.BytesIO(data)) as im:
    return im.convert(mode)


def check_image_files(paths: List[str]) -> Tuple[List[str], List[str]]:
  """(paths that decode, paths that do not), decoding each file fully with PIL."""
  good, bad = [], []
  for path in paths:
    try:
      decode_image(fs.read_bytes(path), 'RGB')
      good.append(path)
    except Exception:  # pylint: disable=broad-except
      bad.append(path)
  return good, bad
