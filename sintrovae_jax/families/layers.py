"""Layers every family's networks share: PyTorch's default initialisation (the published
hyper-parameters were tuned with it) and the dtype / precision types of the modules."""

import math
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
Precision = Optional[jax.lax.Precision]

# PyTorch's default initialisation, which the published hyper-parameters were tuned with:
# kernels uniform with bound 1/sqrt(fan_in) (kaiming_uniform with a=sqrt(5)), biases likewise.
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def torch_bias_init(fan_in: int) -> Callable:
  """Bias initialiser uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)], as PyTorch's Linear/Conv."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def torch_dense(features: int, fan_in: int, dtype: Dtype, precision: Precision = None,
                name: Optional[str] = None):
  return nn.Dense(features, dtype=dtype, precision=precision, kernel_init=torch_kernel_init,
                  bias_init=torch_bias_init(fan_in), name=name)


def lrelu(x):
  return nn.leaky_relu(x, negative_slope=0.2)
