"""MNIST, 28 px, 1 channel (ALGORITHM.md): channels 64-128, z 32, batch 128, 200 epochs."""

from configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'mnist'
  c.image_size = 28
  c.channels = (64, 128)
  c.z_dim = 32
  c.batch_size = 128
  c.num_train_steps = 200 * 60_000 // 128
  return c
