"""CelebA-HQ 256 px, the style-based Soft-IntroVAE (VARIANTS.md 1.11, celeba-hq256.yaml): FID 18.63.

As configs/ffhq256.py with the CelebA-HQ schedule: 870k images per resolution up to 128 px (the
reference's 30 epochs of 29,000 images, the first 15 fading in), 3.48M at 256 px (120 epochs),
learning rate 0.0015 throughout, beta_rec 0.05 (the config file's; its README says 0.1, see
configs/ffhq256.py). Train on a folder of the 29,000 training images:

  python main.py --config=configs/celebahq256_style.py --config.data_dir=/data/celebahq256 \\
      --workdir=DIR
"""

from configs import ffhq256

EPOCH = 29_000  # CelebA-HQ training images (the first 29,000 of 30,000)


def get_config():
  c = ffhq256.get_config()
  c.beta_rec = 0.05
  c.style_lod_images = (30 * EPOCH,) * 6 + (120 * EPOCH,)
  c.style_lod_learning_rate = (0.0015,) * 7
  c.style_fade_images = 15 * EPOCH
  c.style_vae_images = EPOCH
  return c
