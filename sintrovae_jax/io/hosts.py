"""Several hosts, one run: start-up, decisions made once, and errors that stop every host together.

On a pod slice every worker runs the same main.py. The rules this module serves:

- `initialize` starts `jax.distributed` before any other JAX call and before any signal handler
  (JAX then hooks SIGTERM for its preemption notice): from explicit flags, or found by JAX itself
  on TPU VM slices, GKE and Slurm; on one machine it falls back to a single process.
- Process 0 (`is_leader`) decides what all must agree on (the config check, the lease, which
  checkpoint to restore) and alone writes shared files; the others read after a `barrier`.
- `together(fn)`: every host runs `fn`; if it raised on any host, every host raises that one
  error (the lowest failing process's), so no host waits forever in a collective that a failed
  peer will never join.
"""

import json
import logging
import os
from typing import Any, Callable, Dict, List, Sequence, Type

import jax
import numpy as np

_MESSAGE_BYTES = 4096  # an exchanged message is cut to this many bytes


class HostError(RuntimeError):
  """Another host failed; the message names it and says what went wrong there."""


def cached_programs_hang() -> bool:
  """Whether this JAX hangs in a cached program's first collective between CPU processes: 0.12.1
  does; 0.12.0.1 and 0.10.2 run them (the two-host tests on a warm cache, here and in CI)."""
  return jax.__version_info__ >= (0, 12, 1)


def initialize(coordinator_address: str = '', num_processes: int = 0,
               process_id: int = -1) -> None:
  """Starts `jax.distributed` when this run spans several processes; call it first.

  Explicit arguments (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID) are for
  GPU hosts and CPU clusters. Without them JAX looks for a cluster itself (Cloud TPU VM slices
  through their metadata server, GKE, Slurm, Open MPI); where it finds none, this is a single
  process.
  """
  coordinator_address = coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS', '')
  num_processes = num_processes or int(os.environ.get('JAX_NUM_PROCESSES', '0'))
  if process_id < 0:
    process_id = int(os.environ.get('JAX_PROCESS_ID', '-1'))
  if coordinator_address:
    if num_processes <= 0 or not 0 <= process_id < num_processes:
      raise ValueError(f'With coordinator {coordinator_address!r} give num_processes > 0 and '
                       f'0 <= process_id < num_processes (got {num_processes}, {process_id}).')
    # Collectives between CPU devices of different processes (test clusters); GPUs use NCCL.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
    if jax.default_backend() == 'cpu' and cached_programs_hang():
      # A program that JAX 0.12.1 loads from the persistent compilation cache waits forever in
      # its first collective between CPU processes (both hosts in block_until_ready; compiled
      # afresh it runs): these processes compile their own. TPU and GPU hosts keep the cache.
      jax.config.update('jax_enable_compilation_cache', False)
  else:
    try:
      jax.distributed.initialize()  # TPU VM slices, GKE, Slurm: JAX finds the coordinator
    except ValueError as e:  # no cluster found ("coordinator_address should be defined")
      logging.debug('No multi-process cluster found (%s): one process.', e)
  logging.info('JAX process %d of %d, %d local of %d devices: %s', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.local_devices())


def is_leader() -> bool:
  """Process 0: decides, and writes the files every host shares."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every host has reached the barrier `name` (nothing on one host)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def exchange(text: str) -> List[str]:
  """Every host's `text` (cut to 4 KiB), in process order; [text] on one host."""
  if jax.process_count() == 1:
    return [text]
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  data = text.encode()[:_MESSAGE_BYTES]
  buffer = np.zeros(_MESSAGE_BYTES + 4, np.uint8)
  buffer[:4] = np.frombuffer(np.int32(len(data)).tobytes(), np.uint8)
  buffer[4:4 + len(data)] = np.frombuffer(data, np.uint8)
  rows = np.asarray(multihost_utils.process_allgather(buffer))
  texts = []
  for row in rows.reshape(-1, _MESSAGE_BYTES + 4):
    n = int(np.frombuffer(row[:4].tobytes(), np.int32)[0])
    texts.append(row[4:4 + n].tobytes().decode(errors='replace'))
  return texts


def broadcast(value: Any) -> Any:
  """Process 0's `value` (JSON-serialisable, under 4 KiB as JSON) on every host."""
  if jax.process_count() == 1:
    return value
  return json.loads(exchange(json.dumps(value) if is_leader() else 'null')[0])


def all_hosts(flag: bool) -> bool:
  """Whether `flag` is true on every host."""
  return all(t == '1' for t in exchange('1' if flag else '0'))


def together(fn: Callable[..., Any], *args, errors: Sequence[Type[BaseException]] = (),
             **kwargs) -> Any:
  """`fn(*args, **kwargs)` on every host; if it raised anywhere, every host raises.

  The failing host re-raises its own exception; the others raise the lowest failing process's
  error: rebuilt as its own class when that is one of `errors` or their subclasses (the user
  errors main.py prints as one line), else as HostError naming the process. On one host this is just `fn(...)`.
  """
  if jax.process_count() == 1:
    return fn(*args, **kwargs)
  try:
    result, failure, mine = fn(*args, **kwargs), '', None
  except Exception as e:  # pylint: disable=broad-except  # told to the others, then re-raised
    mine = e
    failure = json.dumps({'type': type(e).__name__, 'message': str(e) or type(e).__name__})
  reports = exchange(failure)
  if mine is not None:
    raise mine
  for process, report in enumerate(reports):
    if report:
      raise _rebuild(json.loads(report), process, errors)
  return result


def _with_subclasses(classes: Sequence[type]) -> List[type]:
  found = []
  for cls in classes:
    found += [cls] + _with_subclasses(cls.__subclasses__())
  return found


def _rebuild(report: Dict[str, str], process: int,
             errors: Sequence[Type[BaseException]]) -> BaseException:
  for cls in _with_subclasses(errors):
    if cls.__name__ == report['type']:
      try:
        return cls(report['message'])
      except TypeError:  # a constructor that wants more: say it as a HostError
        break
  return HostError(f'process {process} failed ({report["type"]}): {report["message"]}')
