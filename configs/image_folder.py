"""Any folder of images (jpg/png, recursive), 128 px: the reference's "Monsters" setting.

Channels 64..512, z 128, batch 16, beta_kl = beta_rec = 0.2, beta_neg 256 (ALGORITHM.md).
Set --config.data_dir=/path/to/images. CelebA at 128 px uses the same network.
"""

from configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'image_folder'
  c.data_dir = ''
  c.eval_split = ''
  c.image_size = 128
  c.channels = (64, 128, 256, 512, 512)
  c.z_dim = 128
  c.batch_size = 16
  c.beta_kl = 0.2
  c.beta_rec = 0.2
  c.beta_neg = 256.0
  c.random_flip = True
  c.num_train_steps = 200_000
  c.shuffle_buffer = 2_000
  c.num_grid_images = 16
  c.num_eval_examples = 1_000
  return c
