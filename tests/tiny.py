"""The suite's shared tiny configurations (image, 2D, style): the same settings across test files,
so that the programs they compile are compiled once per run and served from the compilation cache
afterwards. Real sizes are the benchmarks'."""

import jax

from configs import mnist
from sintrovae_jax.families.style.model import StyleVAE

# A one-level image network (8 channels: convolutions, BatchNorm, residual blocks) on 4-image
# batches, for the end-to-end image runs (mock TFDS MNIST at 28 px, or image folders at 16 px): the
# same settings give the same compiled steps, which the compilation cache then serves to the next
# test; one level compiles in about half the time of two, and what these runs check does not depend
# on the depth.
TINY_IMAGE = dict(channels=(8,), z_dim=4, batch_size=4, num_train_steps=4, log_every_steps=2,
                  sample_every_steps=2, checkpoint_every_steps=2, num_grid_images=4,
                  num_eval_examples=8, shuffle_buffer=16)

# FID and KID on a handful of images (the Inception network is still the real one).
FID_TINY_FLAGS = ['--config.fid_num_samples=4', '--config.fid_num_reference=8',
                  '--config.fid_batch_size=8', '--config.kid_subset_size=3',
                  '--config.fid_matrix_sqrt=eigh']


def tiny_mnist(**overrides):
  config = mnist.get_config()
  config.update(TINY_IMAGE)
  config.update(overrides)
  return config


def tiny_2d_flags(steps=60, vae=20):
  return ['--config.mlp_hidden=(16,16)', f'--config.num_train_steps={steps}',
          f'--config.num_vae_steps={vae}', '--config.batch_size=64', '--config.log_every_steps=20',
          '--config.sample_every_steps=30', '--config.checkpoint_every_steps=30',
          '--config.num_eval_points=500', '--config.lr_decay_steps=(40,)']


# A 2D run long enough to be stopped by a signal while it trains.
LONG_2D_FLAGS = tiny_2d_flags(steps=3000, vae=20) + ['--config.checkpoint_every_steps=100000',
                                                     '--config.sample_every_steps=100000']


def tiny_style_model(**kw):
  """8 px (lods 0 and 1), grey; fused convolutions at 8 px, so both kinds of layer occur."""
  return StyleVAE(**dict(dict(image_size=8, latent=16, start_channels=8, max_channels=16,
                              mapping_layers=2, image_channels=1, fused_from=8,
                              precision=jax.lax.Precision.HIGHEST), **kw))
