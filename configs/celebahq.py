"""CelebA-HQ 256 px (ALGORITHM.md): channels 64..512, z 256, batch 8, mirrored.

The reference's two notes disagree on the betas (beta_kl/beta_rec 0.5/1.0 vs 1.0/0.5). We use
beta_kl=1.0, beta_rec=0.5, beta_neg=1024 (ALGORITHM.md's table); override with
--config.beta_kl=0.5 --config.beta_rec=1.0 for the other reading.
"""

from configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'celeb_a_hq/256'
  c.eval_split = ''
  c.image_size = 256
  c.channels = (64, 128, 256, 512, 512, 512)
  c.z_dim = 256
  c.batch_size = 8
  c.beta_kl = 1.0
  c.beta_rec = 0.5
  c.beta_neg = 1024.0
  c.random_flip = True
  c.num_train_steps = 250 * 30_000 // 8
  c.shuffle_buffer = 1_000
  c.num_grid_images = 16
  c.num_eval_examples = 1_000
  return c
