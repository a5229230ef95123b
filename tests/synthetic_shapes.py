"""Synthetic point-cloud categories for the 3D tests: spheres, tori and cubes, generated here.

Each cloud is `n` points sampled on one shape's surface, with its own random size and rotation,
inside the radius-0.5 ball the JSD grid assumes. Written as one sub-folder per category, half the
files .npy and half ASCII or binary .ply, so the reader's formats are exercised too.
"""

import os

import numpy as np

CATEGORIES = ('sphere', 'torus', 'cube')


def _rotation(rng):
  q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
  return q * np.sign(np.linalg.det(q))


def shape(category: str, n: int, rng) -> np.ndarray:
  """One [n, 3] cloud of the category, scaled and rotated at random."""
  scale = rng.uniform(0.75, 1.0)
  if category == 'sphere':
    v = rng.normal(size=(n, 3))
    points = 0.4 * v / np.linalg.norm(v, axis=1, keepdims=True)
  elif category == 'torus':
    u, w = rng.uniform(0, 2 * np.pi, (2, n))
    points = np.stack([(0.3 + 0.1 * np.cos(w)) * np.cos(u), (0.3 + 0.1 * np.cos(w)) * np.sin(u),
                       0.1 * np.sin(w)], axis=1)
  else:
    points = rng.uniform(-0.25, 0.25, (n, 3))
    face = rng.integers(0, 3, n)
    points[np.arange(n), face] = 0.25 * rng.choice([-1.0, 1.0], n)
  return (scale * points @ _rotation(rng).T).astype(np.float32)


def write_ply(path: str, cloud: np.ndarray, binary: bool) -> None:
  header = ('ply\nformat {} 1.0\ncomment synthetic\nelement vertex {}\nproperty float x\n'
            'property float y\nproperty float z\nend_header\n').format(
                'binary_little_endian' if binary else 'ascii', len(cloud))
  with open(path, 'wb') as f:
    f.write(header.encode('ascii'))
    if binary:
      f.write(cloud.astype('<f4').tobytes())
    else:
      f.write(''.join(f'{x:.7g} {y:.7g} {z:.7g}\n' for x, y, z in cloud).encode('ascii'))


def write_folder(root: str, per_category: int = 40, n: int = 64, seed: int = 0) -> str:
  rng = np.random.default_rng(seed)
  for category in CATEGORIES:
    folder = os.path.join(root, category)
    os.makedirs(folder, exist_ok=True)
    for i in range(per_category):
      cloud = shape(category, n, rng)
      path = os.path.join(folder, f'{category}_{i:03d}')
      if i % 2:
        np.save(path + '.npy', cloud)
      else:
        write_ply(path + '.ply', cloud, binary=i % 4 == 0)
  return root
