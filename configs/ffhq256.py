"""FFHQ 256 px, the style-based Soft-IntroVAE (VARIANTS.md 1.11, `configs/ffhq256.yaml`): FID 17.55.

ALAE networks grown from 4 to 256 px: 960k images per resolution up to 128 px (the reference's 16
epochs of 60,000 images, the first 8 fading in), then 12.24M at 256 px (204 epochs), 300 epochs in
all, as the published run. Global batches are the reference's 4-GPU table (its launcher pins 4
GPUs); any device count that divides them works. Train on a folder of FFHQ images (any size;
each resolution is area-averaged from them on the fly):

  python main.py --config=configs/ffhq256.py --config.data_dir=/data/ffhq --workdir=DIR

beta_rec: the reference's README recommends 0.05 for FFHQ and 0.1 for CelebA-HQ, its config files
say the opposite. We use the config files' values (0.1 here), which are what its training script
loads; the file that produced the released checkpoint is not recorded. Override with
--config.beta_rec=0.05 for the README's reading.
"""

from configs import default

EPOCH = 60_000  # FFHQ training images (the first 60,000 of 70,000)


def get_config():
  c = default.get_config()
  c.variant = 'style'
  c.dataset = 'image_folder'
  c.image_channels = 3
  c.image_size = 256
  c.eval_split = ''
  c.random_flip = True
  c.shuffle_buffer = 5_000
  c.z_dim = 512
  c.beta_kl = 0.2
  c.beta_rec = 0.1
  c.gamma_r = 1e-8
  c.scale = 5e-6  # one constant for every resolution, about 1/(3 * 256^2)
  c.style_start_channels = 64
  c.style_max_channels = 512
  c.style_mapping_layers = 8
  c.style_lod_images = (16 * EPOCH,) * 6 + (204 * EPOCH,)
  c.style_lod_batch = (512, 256, 128, 64, 32, 32, 16)
  c.style_lod_learning_rate = (0.0015,) * 6 + (0.002,)
  c.style_lod_beta_neg = (2048.0, 2048.0, 2048.0, 1024.0, 512.0, 512.0, 512.0)
  c.style_fade_images = 8 * EPOCH
  c.style_vae_images = EPOCH
  c.log_every_steps = 200
  c.checkpoint_every_steps = 5_000
  c.sample_every_steps = 5_000
  c.num_grid_images = 16
  c.num_eval_examples = 1_000
  return c
