"""CelebA-HQ 1024 px (ALGORITHM.md): channels 16..512, z 256. No published betas or batch: the
256 px values are used; expect to tune them."""

from configs import celebahq


def get_config():
  c = celebahq.get_config()
  c.dataset = 'celeb_a_hq/1024'
  c.image_size = 1024
  c.channels = (16, 32, 64, 128, 256, 512, 512, 512)
  c.num_grid_images = 8
  c.shuffle_buffer = 200
  return c
