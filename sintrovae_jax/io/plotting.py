"""Pictures people would rather look at than read: image grids, 2D scatters, densities, curves,
point clouds.

Everything returns uint8 RGB arrays [H, W, 3] (for TensorBoard) and can be written as PNG.
Figures are drawn without pyplot (matplotlib's Figure renders itself), so importing this module
leaves the backend alone: a notebook keeps its inline plots.
"""

import io
from typing import Dict, Sequence

from PIL import Image
from matplotlib.figure import Figure
import numpy as np

from sintrovae_jax.io import fs


def image_grid(images: np.ndarray, columns: int = 8, pad: int = 2) -> np.ndarray:
  """[N, H, W, C] floats in [0, 1] -> one uint8 RGB grid image."""
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  n, h, w, _ = images.shape
  columns = min(columns, n)
  rows = -(-n // columns)
  out = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), np.float32)
  for i, im in enumerate(images):
    r, c = divmod(i, columns)
    out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = im
  return (out * 255).round().astype(np.uint8)


def stack_panels(panels: Sequence[np.ndarray], pad: int = 6) -> np.ndarray:
  """Puts uint8 images side by side on a white background."""
  h = max(p.shape[0] for p in panels)
  padded = [np.pad(p, ((0, h - p.shape[0]), (0, pad), (0, 0)), constant_values=255)
            for p in panels]
  return np.concatenate(padded, axis=1)


def _figure_to_array(fig) -> np.ndarray:
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=100, bbox_inches='tight')
  buf.seek(0)
  return np.asarray(Image.open(buf).convert('RGB'))


def clouds_grid(clouds: np.ndarray, columns: int = 4, title: str = '',
                size: float = 2.2) -> np.ndarray:
  """[K, N, 3] point clouds as a grid of 3D scatters, on common axes ([-0.5, 0.5] unless the
  clouds reach further), seen from one elevated angle; y is drawn upwards as ShapeNet's up axis."""
  clouds = np.asarray(clouds, np.float32)
  k = len(clouds)
  columns = min(columns, k)
  rows = -(-k // columns)
  lim = max(0.5, float(np.abs(clouds).max()) if clouds.size else 0.5)
  fig = Figure(figsize=(size * columns, size * rows))
  for i, cloud in enumerate(clouds):
    ax = fig.add_subplot(rows, columns, i + 1, projection='3d')
    ax.scatter(cloud[:, 0], cloud[:, 2], cloud[:, 1], s=0.5, c=cloud[:, 1], cmap='viridis')
    for set_lim in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
      set_lim(-lim, lim)
    ax.view_init(elev=20, azim=-60)
    ax.set_axis_off()
  if title:
    fig.suptitle(title)
  return _figure_to_array(fig)


def scatter_2d(real: np.ndarray, fake: np.ndarray, grid_range: float, title: str = '') -> np.ndarray:
  """Real and generated points over the evaluation range."""
  fig = Figure(figsize=(5, 5))
  ax = fig.subplots()
  ax.scatter(real[:, 0], real[:, 1], s=2, alpha=0.4, c='tab:blue', label='real')
  ax.scatter(fake[:, 0], fake[:, 1], s=2, alpha=0.4, c='tab:red', label='generated')
  ax.set_xlim(-grid_range, grid_range)
  ax.set_ylim(-grid_range, grid_range)
  ax.set_aspect('equal')
  ax.legend(loc='upper right', markerscale=4)
  ax.set_title(title)
  return _figure_to_array(fig)


def density_2d(density: np.ndarray, grid_range: float, title: str = '') -> np.ndarray:
  """`exp(-(KL + REC))` on a square grid (row-major, y outer), as an image."""
  fig = Figure(figsize=(5, 5))
  ax = fig.subplots()
  r = grid_range
  ax.imshow(density, origin='lower', extent=(-r, r, -r, r), cmap='viridis')
  ax.set_title(title or 'density exp(-(KL + REC))')
  return _figure_to_array(fig)


def curves(steps: Sequence[int], series: Dict[str, Sequence[float]], title: str = '',
           log_y: bool = False) -> np.ndarray:
  """Line plot of named series against steps."""
  fig = Figure(figsize=(7, 4))
  ax = fig.subplots()
  for name, values in series.items():
    ax.plot(steps, values, label=name)
  if log_y:
    ax.set_yscale('log')
  ax.set_xlabel('step')
  ax.legend()
  ax.set_title(title)
  ax.grid(alpha=0.3)
  return _figure_to_array(fig)


def histograms(series: Dict[str, np.ndarray], title: str = '', bins: int = 50) -> np.ndarray:
  """Overlaid histograms (densities) of several score arrays on shared bins."""
  values = np.concatenate([np.asarray(v, np.float64).ravel() for v in series.values()])
  values = values[np.isfinite(values)]
  lo, hi = np.percentile(values, [0.5, 99.5]) if len(values) else (0.0, 1.0)
  edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
  fig = Figure(figsize=(6, 3.5))
  ax = fig.subplots()
  for name, v in series.items():
    ax.hist(np.clip(v, edges[0], edges[-1]), bins=edges, alpha=0.5, density=True, label=name)
  ax.legend()
  ax.set_title(title)
  return _figure_to_array(fig)


def save_png(image: np.ndarray, path: str) -> None:
  """Writes a uint8 [H, W, 3] picture as a PNG file at `path` (a local path or a URL)."""
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format='PNG')
  fs.write_bytes(path, buffer.getvalue())
