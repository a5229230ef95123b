"""Unsupervised image translation with two encoders (docs/translation.md): 64 px image folders.

`--config=configs/translation.py:cars3d` (colour) or `:kth` (grey); set
--config.data_dir=/path/to/training/images (README, "Image translation": how to prepare Cars3D
and KTH). The networks follow LORD's sizes (Gabbay & Hoshen 2020): class code 256, content code
128, four AdaIN layers of width 256 from 4 px to 64 px; the encoders are the image family's
residual encoders (channels 64..512). The objective is ALGORITHM.md's over the joint code; the
paper's own hyper-parameters for this task are not published, so the betas are the reference's
image-folder ones (beta_kl = beta_rec = 1.0 would also be a natural start).
"""

from configs import default

CHANNELS = {'cars3d': 3, 'kth': 1}


def get_config(data: str = 'cars3d'):
  data = data.lower()
  if data not in CHANNELS:
    raise ValueError(f'configs/translation.py takes one of {sorted(CHANNELS)}, not {data!r}: '
                     'e.g. --config=configs/translation.py:cars3d')
  c = default.get_config()
  c.variant = 'translation'
  c.dataset = 'image_folder'
  c.data_dir = ''
  c.eval_split = ''
  c.image_size = 64
  c.image_channels = CHANNELS[data]
  c.channels = (64, 128, 256, 512)
  c.translation_class_dim = 256
  c.translation_content_dim = 128
  c.z_dim = c.translation_class_dim + c.translation_content_dim
  c.translation_generator_channels = (256, 256, 256, 256)
  c.translation_modulation_layers = 2
  c.translation_modulation_width = 256
  c.batch_size = 32
  c.beta_kl = 0.2
  c.beta_rec = 0.2
  c.beta_neg = 256.0
  c.num_train_steps = 100_000
  c.num_vae_steps = 2_000
  c.shuffle_buffer = 5_000
  c.num_grid_images = 16
  c.num_eval_examples = 1_000
  return c
