"""Input complexity (Serra et al., ICLR 2020): `S(x) = -log2 p(x) - L(x)`, where L(x) is the length
in bits of x compressed by a general lossless compressor. Simple images (flat, low-detail) get high
likelihood from any density model, which is why raw likelihood ranks them "in distribution"; L(x)
is low for them too, and the difference keeps what the model knows beyond generic simplicity.

Both terms in bits per dimension: -log2 p(x) with the 8-bit convention of `likelihood.bits_per_dim`
(the density of pixels scaled to [0, 1] turned into a probability of 8-bit levels), L(x) over the
same dimensions. Compressors, from Pillow: 'png' at the highest compression level (9, as the
Likelihood Regret authors' reimplementation of this score) and 'jpeg2000' (lossless JPEG 2000,
where Pillow is built with OpenJPEG; the paper's best-performing choice was FLIF, which no
maintained Python package offers). Host-side NumPy: the images are compressed one by one.
"""

import io
import math

from PIL import Image
import numpy as np

from sintrovae_jax.evaluators import likelihood

COMPRESSORS = ('png', 'jpeg2000')


def to_uint8(images: np.ndarray) -> np.ndarray:
  """Images as stored: uint8 unchanged, floats in [0, 1] rounded to 8-bit levels."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images
  return np.clip(np.round(images.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def compressed_bits(images: np.ndarray, compressor: str = 'png') -> np.ndarray:
  """L(x): each image's compressed length in bits, [N], for [N, H, W, C] images (C = 1 or 3)."""
  if compressor not in COMPRESSORS:
    raise ValueError(f'compressor={compressor!r}: expected one of {COMPRESSORS}')
  images = to_uint8(images)
  bits = np.empty(len(images), np.float64)
  for i, image in enumerate(images):
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    out = io.BytesIO()
    if compressor == 'png':
      picture.save(out, format='PNG', compress_level=9)
    else:
      picture.save(out, format='JPEG2000', irreversible=False)  # the lossless (5/3) transform
    bits[i] = 8 * len(out.getvalue())
  return bits


def complexity_score(neg_log_px: np.ndarray, bits: np.ndarray, data_shape) -> np.ndarray:
  """S(x) in bits per dimension, larger for less likely inputs: -log2 p(x) - L(x), per dimension,
  from -log p(x) in nats (IWAE) and L(x) in bits."""
  dims = math.prod(data_shape)
  return (np.asarray(likelihood.bits_per_dim(-np.asarray(neg_log_px, np.float64), data_shape,
                                             images=True))
          - np.asarray(bits, np.float64) / dims)
