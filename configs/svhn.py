"""SVHN (cropped digits), 32 px: the CIFAR-10 setting (ALGORITHM.md)."""

from configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'svhn_cropped'
  c.num_train_steps = 250 * 73_257 // 32
  return c
