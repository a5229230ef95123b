"""The style Soft-IntroVAE's four networks as one model of pure functions (VARIANTS.md 1.1).

`E(x) = mapping_tl(encoder(x))` gives `(mu, logvar)` in z (latent-size); `D(z) =
decoder(repeat(mapping_fl(z)))` draws an image from 2 x layer_count style slots. Parameters come in
two halves, each trained by its own optimiser: `encoder_params = {'encoder', 'mapping_tl'}` and
`decoder_params = {'decoder', 'mapping_fl'}`.
"""

import dataclasses
import math
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp

from sintrovae_jax.families.style import layers as style_layers, networks as style_nets

Params = Any


@dataclasses.dataclass(frozen=True)
class StyleVAE:
  """Architecture of the style model; nothing else is stored.

  `image_size` = 2^(layer_count + 1); lod l works at 2^(l + 2) px.
  """
  image_size: int = 256
  latent: int = 512
  start_channels: int = 64
  max_channels: int = 512
  mapping_layers: int = 8
  image_channels: int = 3
  fused_from: int = 128
  precision: Optional[jax.lax.Precision] = None
  remat: bool = False  # recompute encoder and decoder blocks for the gradient (less memory)
  # Compute dtype of the convolutional blocks (float32 or bfloat16); parameters, the mapping
  # MLPs, statistics, (mu, logvar) and images stay float32 (networks.py).
  dtype: Any = jnp.float32

  @property
  def layer_count(self) -> int:
    return int(math.log2(self.image_size)) - 1

  @property
  def num_styles(self) -> int:
    return 2 * self.layer_count

  @property
  def z_dim(self) -> int:
    return self.latent

  def resolution(self, lod: int) -> int:
    return 2 ** (lod + 2)

  @property
  def encoder(self) -> style_nets.StyleEncoder:
    return style_nets.StyleEncoder(self.layer_count, self.latent, self.start_channels,
                                   self.max_channels, self.fused_from, self.precision, self.remat,
                                   self.dtype)

  @property
  def decoder(self) -> style_nets.StyleDecoder:
    return style_nets.StyleDecoder(self.layer_count, self.start_channels, self.max_channels,
                                   self.image_channels, self.fused_from, self.precision,
                                   self.remat, self.dtype)

  @property
  def mapping_tl(self) -> style_nets.MappingToLatent:
    return style_nets.MappingToLatent(self.latent, 3, self.precision)

  @property
  def mapping_fl(self) -> style_nets.MappingFromLatent:
    return style_nets.MappingFromLatent(self.latent, self.mapping_layers, self.precision)

  def init(self, key: jax.Array) -> Tuple[Params, Params, Params]:
    """`(encoder_params, decoder_params, lr_coefficients)`; the coefficients mirror both halves:
    `{'encoder': ..., 'decoder': ...}` of the equalised learning rate (VARIANTS.md 1.2).
    Compiled (one program instead of hundreds of small eager ones)."""
    return _jit_init(self, key)

  def _init(self, key: jax.Array) -> Tuple[Params, Params, Params]:
    keys = jax.random.split(key, 4)
    n = self.image_size
    x = jnp.zeros((1, n, n, self.image_channels), jnp.float32)
    styles = jnp.zeros((1, self.num_styles, self.latent), jnp.float32)
    lod = self.layer_count - 1
    enc = self.encoder.init(keys[0], x, lod)
    tl = self.mapping_tl.init(keys[1], jnp.zeros((1, self.latent)))
    dec = self.decoder.init(keys[2], styles, lod, None, None)
    fl = self.mapping_fl.init(keys[3], jnp.zeros((1, self.latent)))
    params = lambda part: {k: v['params'] for k, v in part.items()}
    coeffs = lambda part: {k: v[style_layers.LR_COEFF] for k, v in part.items()}
    enc_half, dec_half = {'encoder': enc, 'mapping_tl': tl}, {'decoder': dec, 'mapping_fl': fl}
    return (params(enc_half), params(dec_half),
            {'encoder': coeffs(enc_half), 'decoder': coeffs(dec_half)})

  def encode(self, enc_params: Params, x: jax.Array, lod: int, alpha=None):
    """`(mu, logvar)`, each [B, latent], of images x in [-1, 1] at lod's resolution."""
    h = self.encoder.apply({'params': enc_params['encoder']}, x, lod, alpha)
    return self.mapping_tl.apply({'params': enc_params['mapping_tl']}, h)

  def mapping(self, dec_params: Params, z: jax.Array) -> jax.Array:
    """w = mapping_fl(z), [B, latent]."""
    return self.mapping_fl.apply({'params': dec_params['mapping_fl']}, z)

  def synthesize(self, dec_params: Params, styles: jax.Array, lod: int, alpha=None,
                 noise_keys=None) -> jax.Array:
    """Images in [-1, 1] (unclipped) at lod's resolution from styles [B, num_styles, latent]."""
    return self.decoder.apply({'params': dec_params['decoder']}, styles, lod, alpha, noise_keys)

  def repeat(self, w: jax.Array) -> jax.Array:
    return jnp.broadcast_to(w[:, None], (w.shape[0], self.num_styles, w.shape[-1]))

  def decode(self, dec_params: Params, z: jax.Array, lod: int, alpha=None,
             noise_keys=None) -> jax.Array:
    """D(z): no mixing, no truncation (the reconstructions' path)."""
    return self.synthesize(dec_params, self.repeat(self.mapping(dec_params, z)), lod, alpha,
                           noise_keys)


_jit_init = jax.jit(StyleVAE._init, static_argnums=0)  # pylint: disable=protected-access


def mix_styles(w1: jax.Array, w2: jax.Array, cutoff, num_styles: int) -> jax.Array:
  """Style mixing: slots `< cutoff` take w1 ([B, latent]), the rest w2 (model.py L185-194)."""
  slot = jnp.arange(num_styles)[None, :, None]
  return jnp.where(slot < cutoff, w1[:, None], w2[:, None])


def truncate(styles: jax.Array, dlatent_avg: jax.Array, psi: float, cutoff: int) -> jax.Array:
  """Truncation trick: slots `< cutoff` pulled toward the average w by `psi` (model.py
  L196-200); styles [B, num_styles, latent], dlatent_avg [num_styles, latent]."""
  slot = jnp.arange(styles.shape[1])[None, :, None]
  coef = jnp.where(slot < cutoff, psi, 1.0)
  return dlatent_avg + coef * (styles - dlatent_avg)
