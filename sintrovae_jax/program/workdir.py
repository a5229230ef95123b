"""A run's workdir: the same experiment on resume, checkpoints that survive damage, every host
agreeing. Paths go through `fs`, so a workdir may be a bucket (gs://...).

- `check_config`: a rerun in an existing workdir must train the same experiment; fields that only
  set the run's length, logging or evaluation may change (and are logged). Process 0 reads.
- `restore_latest`: the newest checkpoint that restores on every host; damaged newer ones are
  moved aside to WORKDIR/checkpoints_damaged/, and only if none restores is it an error.
- `check_topology`: image streams are positioned per host, so a run resumes on as many hosts as
  it was trained on (topology.json, written at each checkpoint), or is refused with the choices.
- `load_history`: history.jsonl rows up to the restored step (later rows are dropped on resume).
- `load_config`, `latest_checkpoint_state`: a finished or stopped run, for the sample/fid/ood modes.

(The run lease, one run per workdir, is lease.py's.)
"""

import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from sintrovae_jax.data import kinds
from sintrovae_jax.io import fs, hosts
from sintrovae_jax.program.config_lib import ConfigError

# Fields a resumed run may change: run length, logging, checkpointing and evaluation. Every other
# field defines the model, the data or the objective.
RESUMABLE_CHANGES = frozenset({
    'num_train_steps', 'log_every_steps', 'sample_every_steps', 'checkpoint_every_steps',
    'keep_checkpoints', 'num_grid_images', 'max_nonfinite_steps', 'profile_steps', 'eval_seed',
    'eval_split', 'num_eval_examples', 'num_eval_points', 'data_dir', 'fid_inception_weights',
    'fid_every_steps', 'fid_num_samples', 'fid_num_reference', 'fid_batch_size', 'fid_cache_dir',
    'fid_matrix_sqrt', 'kid_subsets', 'kid_subset_size', 'compilation_cache_dir',
    'matmul_precision', 'remat', 'steps_per_dispatch', 'ood_dataset', 'ood_data_dir', 'ood_split',
    'likelihood_samples', 'likelihood_sigma', 'ood_regret_steps', 'ood_regret_learning_rate',
    'ood_regret_weight_decay', 'ood_compressor'})


class ConfigChanged(ConfigError):
  """The config differs from the one the workdir's checkpoints were trained with."""


class CheckpointError(RuntimeError):
  """No checkpoint in the workdir can be restored."""


def _plain(value: Any) -> Any:
  return list(value) if isinstance(value, tuple) else value


def check_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Raises ConfigChanged if `config` would resume a different experiment from `workdir`."""
  path = fs.join(workdir, 'config.json')
  if not fs.exists(path):
    return
  saved: Dict[str, Any] = fs.read_json(path)
  new = {k: _plain(v) for k, v in config.to_dict().items()}
  differing = sorted(k for k in set(saved) & set(new) if saved[k] != new[k])
  refused = [k for k in differing if k not in RESUMABLE_CHANGES]
  if refused:
    lines = '; '.join(f'{k}: {saved[k]!r} -> {new[k]!r}' for k in refused)
    old_flags = ' '.join(f'--config.{k}={_flag(saved[k])}' for k in refused)
    raise ConfigChanged(
        f'{workdir!r} holds a run trained with a different config ({lines}). These fields define '
        'the model, the data or the objective, so its checkpoints cannot continue under the new '
        f'values. Either use a new --workdir, or keep the old values: {old_flags}')
  for k in differing:
    logging.info('Resuming with %s changed from %r to %r.', k, saved[k], new[k])


def _flag(value: Any) -> str:
  if isinstance(value, list):
    return '(' + ','.join(str(v) for v in value) + (',)' if len(value) == 1 else ')')
  return str(value)


def checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True)
  return ocp.CheckpointManager(fs.path(fs.join(workdir, 'checkpoints')), options=options)


# main.py --verbose: show what orbax's threads print when a save or restore fails.
SHOW_STORAGE_TRACEBACKS = False


@contextlib.contextmanager
def held_stderr() -> Iterator[None]:
  """Holds back what is printed to stderr (file descriptor 2) inside the block: when the block
  succeeds it is written out as it came; when it raises, the tracebacks that orbax's and
  TensorStore's background threads print for one failed save or restore (dozens of them) are
  dropped, and the caller's one-line message stands alone (SHOW_STORAGE_TRACEBACKS keeps them)."""
  sys.stdout.flush()
  sys.stderr.flush()
  saved = os.dup(2)
  held = tempfile.TemporaryFile()
  os.dup2(held.fileno(), 2)
  failed = False
  try:
    yield
  except BaseException:
    failed = True
    time.sleep(0.5)  # the background threads finish failing (and printing) first
    if not SHOW_STORAGE_TRACEBACKS:  # nor, at exit, asyncio's "exception never retrieved"
      logging.getLogger('asyncio').setLevel(logging.CRITICAL)
    raise
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    if not failed or SHOW_STORAGE_TRACEBACKS:
      held.seek(0)
      os.write(2, held.read())
    held.close()


def _first_line(e: BaseException) -> str:
  return f'{type(e).__name__}: {str(e).splitlines()[0][:200]}' if str(e) else type(e).__name__


def restore_latest(manager: ocp.CheckpointManager, state: Any) -> Any:
  """The newest checkpoint that restores into `state`'s structure on every host, or `state` if
  there is none. Process 0's list of steps is the one tried; a step that fails on any host is
  damaged for all."""
  steps = hosts.broadcast(sorted(manager.all_steps(), reverse=True))
  damaged = []
  for step in steps:
    restored, why = None, ''
    try:
      with held_stderr():
        restored = manager.restore(step, args=ocp.args.StandardRestore(state))
    except Exception as e:  # pylint: disable=broad-except  # any failure to read: try an older one
      why = _first_line(e)
      if SHOW_STORAGE_TRACEBACKS:  # --verbose: the failure itself, whatever orbax's threads print
        logging.warning('Restoring step %d failed:', step, exc_info=True)
    whys = [f'process {i}: {w}' if jax.process_count() > 1 else w
            for i, w in enumerate(hosts.exchange(why)) if w]
    if whys:
      damaged.append((step, '; '.join(whys)))
      continue
    if damaged:
      _move_aside(manager, [s for s, _ in damaged])
      for s, why in damaged:
        logging.warning('Checkpoint at step %d in %s is damaged (%s); moved it to '
                        'checkpoints_damaged/ and resumed from step %d.', s, manager.directory,
                        why, step)
    logging.info('Resuming from checkpoint at step %d in %s', step, manager.directory)
    return restored
  if damaged:
    raise CheckpointError(
        f'No checkpoint in {manager.directory} can be restored: '
        + '; '.join(f'step {s}: {why}' for s, why in damaged)
        + '. Move that folder aside to start afresh, or restore it from a backup.')
  return state


def _move_aside(manager: ocp.CheckpointManager, steps) -> None:
  if hosts.is_leader():
    directory = str(manager.directory)
    aside = fs.join(fs.dirname(directory), 'checkpoints_damaged')
    for step in steps:
      source = fs.join(directory, str(step))
      if fs.exists(source):
        fs.move(source, fs.join(aside, str(step)))
  hosts.barrier('checkpoints moved aside')
  manager.reload()


def checkpoint_bytes(manager: ocp.CheckpointManager, step) -> int:
  """The size of the checkpoint at `step` (0 when there is none)."""
  if step is None:
    return 0
  folder = fs.join(str(manager.directory), str(step))
  return sum(fs.size(f) for f in fs.walk_files(folder)) if fs.isdir(folder) else 0


TOPOLOGY_FILE = 'topology.json'


def topology() -> Dict[str, int]:
  return {'process_count': jax.process_count(), 'device_count': jax.device_count(),
          'local_device_count': jax.local_device_count()}


def write_topology(workdir: str) -> None:
  """Records the host and device counts next to the checkpoints (process 0)."""
  if hosts.is_leader():
    fs.write_json(fs.join(workdir, TOPOLOGY_FILE), topology(), indent=2)


def check_topology(config: ml_collections.ConfigDict, workdir: str, start: int) -> None:
  """Raises ConfigError when a run of image data would resume on another number of hosts.

  Each host reads its own share of the image files (and of a TFDS split), so the stream's
  position after `start` steps depends on the host count; points and generated data are drawn
  by global position, and resume exactly on any count. Devices may change freely: the step is
  the same on N devices as on one.
  """
  path = fs.join(workdir, TOPOLOGY_FILE)
  if start == 0 or not fs.exists(path):
    return
  before = int(fs.read_json(path)['process_count'])
  if before != jax.process_count() and kinds.is_image_data(config):
    raise ConfigError(
        f'{workdir!r} was trained on {before} host(s) and this run has {jax.process_count()}. '
        'Each host reads its own share of the images, so the data stream cannot continue at '
        f'step {start} on another host count. Resume on a slice with {before} host(s) (any '
        'number of chips per host), or train afresh in a new --workdir.')


def load_history(workdir: str, step: int) -> List[Dict[str, Any]]:
  """history.jsonl's rows up to `step` (rows after the checkpoint a resume starts from are
  dropped: curves never go back in time)."""
  path = fs.join(workdir, 'history.jsonl')
  if not fs.exists(path):
    return []
  rows = [json.loads(line) for line in fs.read_text(path).splitlines() if line.strip()]
  keep = [row for row in rows if row.get('step', 0) <= step]
  if len(keep) != len(rows):
    logging.info('history.jsonl: dropped %d row(s) after step %d, the resumed step.',
                 len(rows) - len(keep), step)
  return keep


def assert_finite(tree: Any, what: str) -> None:
  """Raises FloatingPointError naming `what` if any leaf of `tree` is not finite."""
  for leaf in jax.tree.leaves(tree):
    array = np.asarray(leaf)
    if np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
      raise FloatingPointError(f'{what} holds NaN or infinite values.')


def load_config(workdir: str,
                defaults: Optional[ml_collections.ConfigDict] = None) -> ml_collections.ConfigDict:
  """The config a run in `workdir` was trained with (saved as config.json), over `defaults`.

  `defaults` (configs/default.py) supplies fields added since the run was trained.
  """
  path = fs.join(workdir, 'config.json')
  if not fs.exists(path):
    raise ConfigError(f'No config.json in {workdir!r}: is it the --workdir of a '
                          'training run? Or pass --config.')
  values = fs.read_json(path)
  for key in ('channels', 'mlp_hidden', 'lr_decay_steps', 'style_lod_images', 'style_lod_batch',
              'style_lod_learning_rate', 'style_lod_beta_neg'):
    if key in values:  # (runs saved before a field existed lack it)
      values[key] = tuple(values[key])
  if defaults is None:
    return ml_collections.ConfigDict(values)
  config = ml_collections.ConfigDict(defaults.to_dict())
  config.update(values)
  return config


def latest_checkpoint_state(exp: Any, workdir: str, purpose: str) -> Any:
  """The state of `workdir`'s latest checkpoint; CheckpointError naming `purpose` if none.
  (Any experiment with a `config` and an initial `state`: the style variant's too.)"""
  with checkpoint_manager(workdir, exp.config) as manager:
    if manager.latest_step() is None:
      raise CheckpointError(f'No checkpoint under {workdir!r}/checkpoints to {purpose}.')
    return restore_latest(manager, exp.state)
