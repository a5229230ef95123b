"""CIFAR-10, 32 px (ALGORITHM.md): channels 64-128-256, z 128, batch 32, 250 epochs."""

from configs import default


def get_config():
  c = default.get_config()
  c.dataset = 'cifar10'
  return c
