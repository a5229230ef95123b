"""Data parallelism: replication, batch sharding and the pmapped step (multi-host start-up:
hosts.py).

The step itself (train_step.py) averages gradients, metrics and BatchNorm statistics over the
named axis `AXIS` and draws its noise by global example index, so N devices train the same model
as one device with the same global batch. Two ways to run it on many devices:

- `pmap_train_step`: `jax.pmap` over every local device; the state is replicated (leading device
  axis) and batches are sharded to [local_devices, per_device, ...]. What main.py uses.
- `shard_map_train_step`: for programs written with `jax.jit` and shardings: the same step under
  `shard_map` on a 1D `Mesh`, state replicated and batch split along the mesh axis.
"""

from typing import Any, Iterator, Optional, Sequence

import flax.jax_utils
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

AXIS = 'batch'


def replicate(tree: Any) -> Any:
  """Copies a pytree onto every local device (leading axis = local device)."""
  return flax.jax_utils.replicate(tree)


def unreplicate(tree: Any) -> Any:
  """The first local device's copy, fetched to host memory.

  Reads this process's own shard only: on several hosts, indexing a pmap output would be a
  computation over every process, which must not run on one host alone.
  """
  def first(x):
    if isinstance(x, jax.Array):  # its first local shard is [1, ...] or [...], by JAX version
      return np.asarray(x.addressable_data(0)).reshape(x.shape[1:])
    return np.asarray(x[0])
  return jax.tree.map(first, tree)


def shard(batch: np.ndarray) -> np.ndarray:
  """[per_host, ...] -> [local_devices, per_device, ...], in order: device d holds rows d*k..."""
  n = jax.local_device_count()
  return batch.reshape((n, batch.shape[0] // n) + batch.shape[1:])


def shard_block(batches: Sequence[np.ndarray], size: int) -> np.ndarray:
  """n <= `size` host batches [per_host, ...] -> one block [local_devices, size, per_device, ...]
  for `train_step.steps_in_one_call`, zeros past n (each batch split over devices as `shard`)."""
  first = np.asarray(batches[0])
  block = np.zeros((size,) + first.shape, first.dtype)
  block[:len(batches)] = batches
  n = jax.local_device_count()
  block = block.reshape((size, n, first.shape[0] // n) + first.shape[1:])
  return np.swapaxes(block, 0, 1)


def prefetch(batches: Iterator[np.ndarray], size: int = 2) -> Iterator[jax.Array]:
  """Shards host batches and keeps `size` of them on the devices ahead of the step."""
  return flax.jax_utils.prefetch_to_device(map(shard, batches), size)


def prefetch_blocks(blocks: Iterator[np.ndarray], size: int = 2) -> Iterator[jax.Array]:
  """Blocks already split over the local devices (`shard_block`), kept `size` ahead on them."""
  return flax.jax_utils.prefetch_to_device(blocks, size)


def pmap_train_step(step_fn):
  """`step_fn` (from make_train_step(..., axis_name=AXIS)) pmapped, the state's buffers donated."""
  return jax.pmap(step_fn, axis_name=AXIS, donate_argnums=(0,))


def data_mesh(devices: Optional[Any] = None) -> Mesh:
  """A 1D mesh over all devices, axis AXIS."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (AXIS,))


def shard_map_train_step(step_fn, mesh: Mesh):
  """`step_fn` (axis_name=AXIS) as a jitted `shard_map`: state replicated, batch split by rows.

  Call with a state placed by `replicate_on_mesh` and a global batch placed by `shard_on_mesh`.
  """
  mapped = jax.shard_map(step_fn, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P()),
                         check_vma=False)
  return jax.jit(mapped, donate_argnums=(0,))


def replicate_on_mesh(tree: Any, mesh: Mesh) -> Any:
  return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_on_mesh(batch: Any, mesh: Mesh) -> Any:
  return jax.device_put(batch, NamedSharding(mesh, P(AXIS)))
