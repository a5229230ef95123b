"""A proving ground for image translation with known factors: simple 3D objects rendered by a small
NumPy rasteriser (docs/translation.md).

An identity is a (shape, colour) pair; a pose is a viewpoint (the object turned about its vertical
axis). Every object has two marked faces (its colour tinted towards white, and half as bright), so
that no two poses of a symmetric object (a cube turned by 90 degrees) look alike, while its colour
shows in every pose. Because the image of any identity in any pose can be rendered, a translation
`[class of (a, p), content of (b, q)]` is scored against the true image of (a, q).
"""

from typing import List, Tuple

import numpy as np
from scipy import spatial

from sintrovae_jax.io import fs, plotting

_S = np.sqrt(0.5)
SHAPES = {
    'cube': [(x, y, z) for x in (-_S, _S) for y in (-_S, _S) for z in (-_S, _S)],
    'pyramid': [(-0.8, -0.6, -0.8), (0.8, -0.6, -0.8), (-0.8, -0.6, 0.8), (0.8, -0.6, 0.8),
                (0.0, 0.9, 0.0)],
    'prism': [(-0.9, -0.6, -0.5), (-0.9, -0.6, 0.5), (-0.9, 0.7, 0.0), (0.9, -0.6, -0.5),
              (0.9, -0.6, 0.5), (0.9, 0.7, 0.0)],
    'octahedron': [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)],
    'wedge': [(-0.9, -0.6, -0.6), (0.9, -0.6, -0.6), (-0.9, -0.6, 0.6), (0.9, -0.6, 0.6),
              (-0.9, 0.6, -0.6), (0.9, 0.6, -0.6)],
}
COLOURS = {'red': (0.85, 0.2, 0.15), 'green': (0.2, 0.7, 0.25), 'blue': (0.2, 0.35, 0.9),
           'yellow': (0.9, 0.8, 0.15), 'purple': (0.6, 0.25, 0.75)}
# (direction in the object's frame, (weight of the colour, of white)): the face turned most towards
# the direction gets that mix of the object's colour and white.
ACCENTS = (((1.0, 0.3, 0.2), (0.45, 0.55)), ((-0.2, -0.3, 1.0), (0.5, 0.0)))
LIGHT = np.array([0.45, 0.6, 0.66]) / np.linalg.norm([0.45, 0.6, 0.66])
ELEVATION = np.deg2rad(20.0)


def _faces(vertices: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """(triangles [F, 3] wound outwards, outward unit normals [F, 3]) of a convex hull."""
  hull = spatial.ConvexHull(vertices)
  triangles, normals = [], []
  for simplex, equation in zip(hull.simplices, hull.equations):
    a, b, c = vertices[simplex]
    if np.dot(np.cross(b - a, c - a), equation[:3]) < 0:
      simplex = simplex[[0, 2, 1]]
    triangles.append(simplex)
    normals.append(equation[:3])
  return np.array(triangles), np.array(normals)


def _rotation(yaw: float) -> np.ndarray:
  """Turn by `yaw` about the vertical (y) axis, then tilt towards the viewer by ELEVATION."""
  c, s = np.cos(yaw), np.sin(yaw)
  turn = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
  ce, se = np.cos(ELEVATION), np.sin(ELEVATION)
  tilt = np.array([[1, 0, 0], [0, ce, -se], [0, se, ce]])
  return tilt @ turn


def render(shape: str, colour, yaw: float, size: int = 32, supersample: int = 4) -> np.ndarray:
  """One object on a black background, [size, size, 3] float32 in [0, 1]: orthographic view along
  -z, Lambertian shading from a fixed light, two faces tinted (ACCENTS). Convex
  objects need no depth order: back faces are culled."""
  vertices = np.asarray(SHAPES[shape], np.float64)
  triangles, normals = _faces(vertices)
  base = np.tile(np.asarray(colour, np.float64), (len(triangles), 1))
  for direction, (keep, white) in ACCENTS:
    dots = normals @ (np.asarray(direction) / np.linalg.norm(direction))
    base[dots > dots.max() - 1e-6] = keep * np.asarray(colour) + white  # (a face's triangles
    # share its normal)
  rot = _rotation(yaw)
  v, n = vertices @ rot.T, normals @ rot.T
  n_px = size * supersample
  centres = (np.arange(n_px) + 0.5) / n_px * 2.0 - 1.0
  px, py = np.meshgrid(centres * 1.25, -centres * 1.25)  # image rows go down, y goes up
  out = np.zeros((n_px, n_px, 3))
  for tri, normal, face_colour in zip(triangles, n, base):
    if normal[2] <= 1e-9:  # facing away from the viewer
      continue
    (ax, ay), (bx, by), (cx, cy) = v[tri][:, :2]
    inside = np.ones_like(px, bool)
    for (x0, y0), (x1, y1) in (((ax, ay), (bx, by)), ((bx, by), (cx, cy)), ((cx, cy), (ax, ay))):
      inside &= (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0) >= 0
    out[inside] = face_colour * (0.3 + 0.7 * max(0.0, float(normal @ LIGHT)))
  out = out.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))
  return out.astype(np.float32)


def identities(num_shapes: int = 4, num_colours: int = 4) -> List[Tuple[str, str]]:
  """(shape, colour) names of the first num_shapes x num_colours identities, shape-major."""
  if not (1 <= num_shapes <= len(SHAPES) and 1 <= num_colours <= len(COLOURS)):
    raise ValueError(f'at most {len(SHAPES)} shapes and {len(COLOURS)} colours')
  return [(s, c) for s in list(SHAPES)[:num_shapes] for c in list(COLOURS)[:num_colours]]


def proving_ground(num_shapes: int = 4, num_colours: int = 4, num_poses: int = 16,
                   size: int = 32, grey: bool = False) -> np.ndarray:
  """Every identity in every pose, [I, V, size, size, C] float32 (C = 1 with `grey`); pose v is
  the yaw 2 pi (v + 1/2) / V (half a step off the faces' axes: two side faces always show)."""
  images = np.stack([
      np.stack([render(shape, COLOURS[colour], 2 * np.pi * (v + 0.5) / num_poses, size)
                for v in range(num_poses)])
      for shape, colour in identities(num_shapes, num_colours)])
  if grey:
    images = images @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]
  return images


def heldout_mask(num_identities: int, num_poses: int, every: int = 4) -> np.ndarray:
  """[I, V] bool: the held-out (identity, pose) images, pose = identity (mod `every`): each identity
  and each pose keeps most of its images for training and has some held out."""
  i, v = np.meshgrid(np.arange(num_identities), np.arange(num_poses), indexing='ij')
  return (v - i) % every == 0


def write_folders(images: np.ndarray, heldout: np.ndarray, root: str) -> Tuple[str, str]:
  """PNG files root/train/id{i}_pose{v}.png and root/heldout/...; returns the two folders."""
  folders = fs.join(root, 'train'), fs.join(root, 'heldout')
  for i in range(images.shape[0]):
    for v in range(images.shape[1]):
      image = np.round(np.clip(images[i, v], 0, 1) * 255).astype(np.uint8)
      if image.shape[-1] == 1:
        image = image[..., 0]
      folder = folders[int(heldout[i, v])]
      plotting.save_png(image, fs.join(folder, f'id{i:02d}_pose{v:02d}.png'))
  return folders
