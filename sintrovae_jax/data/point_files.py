"""Point-cloud data: folders of .ply / .npy clouds, one sub-folder per category, split by sorted name.

Layout: `DATA_DIR/CATEGORY/*.ply|*.npy`, each file one cloud of `num_points` x 3 coordinates. The
latent_3d_points ShapeNet release (`shape_net_core_uniform_samples_2048/<synset id>/<model>.ply`)
works as it is: a category may be named by its synset id or, for the common ones, by name
(`SHAPENET_SYNSETS`). Each category is split on its *sorted* file names into the first 85% (train),
the next 5% (valid) and the last 10% (test): the reference's proportions, but reproducible (the
reference splits in `os.listdir` order, which depends on the file system; VARIANTS.md 3.1).
Clouds are used as they are: no normalisation or resampling (the release is pre-normalised into the
radius-0.5 ball that the JSD grid assumes). DATA_DIR may be a bucket (read through `fs`).
"""

import io
from typing import List, Sequence

import numpy as np

from sintrovae_jax.io import fs

CLOUD_EXTENSIONS = ('.ply', '.npy')
SPLITS = {'train': (0.0, 0.85), 'valid': (0.85, 0.90), 'test': (0.90, 1.0)}
# Synset ids of the ShapeNetCore categories with released checkpoints, and a few more.
SHAPENET_SYNSETS = {'airplane': '02691156', 'bench': '02828884', 'cabinet': '02933112',
                    'car': '02958343', 'chair': '03001627', 'lamp': '03636649',
                    'sofa': '04256520', 'table': '04379243', 'vessel': '04530566'}

_PLY_TYPES = {'char': 'i1', 'uchar': 'u1', 'short': 'i2', 'ushort': 'u2', 'int': 'i4',
              'uint': 'u4', 'float': 'f4', 'double': 'f8', 'int8': 'i1', 'uint8': 'u1',
              'int16': 'i2', 'uint16': 'u2', 'int32': 'i4', 'uint32': 'u4', 'float32': 'f4',
              'float64': 'f8'}


class PointDataError(RuntimeError):
  """A point-cloud folder or file that cannot be read as the config says."""


def read_ply(path: str) -> np.ndarray:
  """The x, y, z columns of a PLY file's vertices (ascii or binary), as [N, 3] float32."""
  with io.BytesIO(fs.read_bytes(path)) as f:
    if f.readline().strip() != b'ply':
      raise PointDataError(f'{path!r} is not a PLY file (no "ply" header line).')
    fmt, count, props, element = None, None, [], None
    while True:
      line = f.readline()
      if not line:
        raise PointDataError(f'{path!r}: the PLY header has no end_header line.')
      words = line.decode('ascii', 'replace').split()
      if not words or words[0] in ('comment', 'obj_info'):
        continue
      if words[0] == 'end_header':
        break
      if words[0] == 'format':
        fmt = words[1]
      elif words[0] == 'element':
        element = words[1]
        if element == 'vertex':
          count = int(words[2])
        elif count is None:
          raise PointDataError(f'{path!r}: the vertex element must come first in the PLY file.')
      elif words[0] == 'property' and element == 'vertex':
        if words[1] == 'list':
          raise PointDataError(f'{path!r}: list properties on vertices are not supported.')
        props.append((words[2], _PLY_TYPES[words[1]]))
    names = [p[0] for p in props]
    if count is None or not {'x', 'y', 'z'} <= set(names):
      raise PointDataError(f'{path!r}: no vertex element with x, y and z properties.')
    if fmt == 'ascii':
      rows = [f.readline().split() for _ in range(count)]
      table = np.array(rows, np.float64)[:, :len(names)]
      columns = {n: table[:, i] for i, n in enumerate(names)}
    elif fmt in ('binary_little_endian', 'binary_big_endian'):
      order = '<' if fmt == 'binary_little_endian' else '>'
      dtype = np.dtype([(n, order + t) for n, t in props])
      data = np.frombuffer(f.read(dtype.itemsize * count), dtype, count)
      columns = {n: data[n] for n in names}
    else:
      raise PointDataError(f'{path!r}: unknown PLY format {fmt!r}.')
  return np.stack([columns['x'], columns['y'], columns['z']], axis=1).astype(np.float32)


def read_cloud(path: str, num_points: int) -> np.ndarray:
  """One [num_points, 3] float32 cloud from a .ply or .npy file, checked."""
  if path.endswith('.npy'):
    try:
      cloud = fs.load_npy(path)
    except (OSError, ValueError) as e:
      raise PointDataError(f'Cannot read {path!r} as a .npy array ({e}).') from e
  else:
    cloud = read_ply(path)
  if cloud.shape != (num_points, 3):
    raise PointDataError(f'{path!r} holds a cloud of shape {cloud.shape}; expected '
                         f'({num_points}, 3). Set config.num_points to the files\' point count '
                         '(no resampling is done).')
  cloud = cloud.astype(np.float32)
  if not np.isfinite(cloud).all():
    raise PointDataError(f'{path!r} contains NaN or infinite coordinates.')
  return cloud


def category_folder(data_dir: str, category: str) -> str:
  """DATA_DIR/CATEGORY, or DATA_DIR/<its ShapeNet synset id>; PointDataError if neither exists."""
  for name in (category, SHAPENET_SYNSETS.get(category, '')):
    folder = fs.join(data_dir, name)
    if name and fs.isdir(folder):
      return folder
  known = [d for d in fs.listdir(data_dir) if fs.isdir(fs.join(data_dir, d))] \
      if fs.isdir(data_dir) else []
  raise PointDataError(f'No folder for category {category!r} under {data_dir!r} (looked for '
                       f'{category!r}' + (f' and its synset id {SHAPENET_SYNSETS[category]!r}'
                                          if category in SHAPENET_SYNSETS else '') +
                       f'). Sub-folders there: {known[:10]}. See README, "Point clouds".')


def split_files(data_dir: str, categories: Sequence[str], split: str) -> List[str]:
  """The split's files: per category, the sorted cloud files' SPLITS[split] fraction."""
  if not fs.isdir(data_dir):
    raise PointDataError(f'data_dir={data_dir!r} is not a folder: dataset=point_folder needs a '
                         'folder with one sub-folder of .ply/.npy clouds per category (README, '
                         '"Point clouds"). Set --config.data_dir=...')
  lo, hi = SPLITS[split]
  files = []
  for category in categories:
    folder = category_folder(data_dir, category)
    names = [n for n in fs.listdir(folder) if n.endswith(CLOUD_EXTENSIONS)]
    if not names:
      raise PointDataError(f'{folder!r} holds no {CLOUD_EXTENSIONS} files.')
    n = len(names)
    files += [fs.join(folder, name) for name in names[round(lo * n):round(hi * n)]]
  return files


def load_split(data_dir: str, categories: Sequence[str], split: str,
               num_points: int) -> np.ndarray:
  """Every cloud of the split, [S, num_points, 3] float32 (the clouds fit in host memory: a
  ShapeNet category of 2,048-point clouds is a few hundred MB)."""
  files = split_files(data_dir, categories, split)
  if not files:
    raise PointDataError(f'The {split!r} split of {list(categories)} under {data_dir!r} is empty: '
                         'too few clouds for an 85/5/10 split.')
  return np.stack([read_cloud(path, num_points) for path in files])
