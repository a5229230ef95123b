"""FashionMNIST: the MNIST setting (ALGORITHM.md)."""

from configs import mnist


def get_config():
  c = mnist.get_config()
  c.dataset = 'fashion_mnist'
  return c
