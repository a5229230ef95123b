"""A run's workdir: one run at a time, the same experiment on resume, checkpoints that survive damage.

- `lock`: an exclusive lock (fcntl) on WORKDIR/run.lock, naming the holder's host and pid.
- `check_config`: a rerun in an existing workdir must train the same experiment; fields that only
  set the run's length, logging or evaluation may change (and are logged).
- `restore_latest`: the newest checkpoint that restores; damaged newer ones are moved aside to
  WORKDIR/checkpoints_damaged/, and only if none restores is it an error.
- `truncate_history`: history.jsonl rows past the restored step are dropped on resume.
"""

import fcntl
import json
import logging
import os
import shutil
import socket
from typing import IO, Any, Dict, Optional

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from sintrovae_jax.config_lib import ConfigError

# Fields a resumed run may change: run length, logging, checkpointing and evaluation. Every other
# field defines the model, the data or the objective.
RESUMABLE_CHANGES = frozenset({
    'num_train_steps', 'log_every_steps', 'sample_every_steps', 'checkpoint_every_steps',
    'keep_checkpoints', 'num_grid_images', 'max_nonfinite_steps', 'profile_steps', 'eval_seed',
    'eval_split', 'num_eval_examples', 'num_eval_points', 'data_dir', 'fid_inception_weights',
    'fid_every_steps', 'fid_num_samples', 'fid_num_reference', 'fid_batch_size', 'fid_cache_dir',
    'fid_matrix_sqrt', 'kid_subsets', 'kid_subset_size', 'compilation_cache_dir',
    'matmul_precision', 'remat'})


class WorkdirLocked(RuntimeError):
  """Another run holds this workdir."""


class ConfigChanged(ConfigError):
  """The config differs from the one the workdir's checkpoints were trained with."""


class CheckpointError(RuntimeError):
  """No checkpoint in the workdir can be restored."""


def lock(workdir: str) -> Optional[IO[str]]:
  """Takes WORKDIR/run.lock for this process's lifetime (process 0 only); keep the handle."""
  if jax.process_index() != 0:
    return None
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, 'run.lock')
  handle = open(path, 'a+')  # pylint: disable=consider-using-with
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    handle.seek(0)
    holder = handle.read().strip() or 'another process'
    handle.close()
    raise WorkdirLocked(f'{workdir!r} is in use by {holder} (lock {path}). Wait for that run to '
                        'end, stop it, or use another --workdir.') from None
  handle.seek(0)
  handle.truncate()
  handle.write(f'host {socket.gethostname()} pid {os.getpid()}\n')
  handle.flush()
  return handle


def _plain(value: Any) -> Any:
  return list(value) if isinstance(value, tuple) else value


def check_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Raises ConfigChanged if `config` would resume a different experiment from `workdir`."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved: Dict[str, Any] = json.load(f)
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
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                               options=options)


def restore_latest(manager: ocp.CheckpointManager, state: Any) -> Any:
  """The newest checkpoint that restores into `state`'s structure, or `state` if there is none."""
  steps = sorted(manager.all_steps(), reverse=True)
  damaged = []
  for step in steps:
    try:
      restored = manager.restore(step, args=ocp.args.StandardRestore(state))
    except Exception as e:  # pylint: disable=broad-except  # any failure to read: try an older one
      damaged.append((step, f'{type(e).__name__}: {str(e).splitlines()[0][:200]}'
                      if str(e) else type(e).__name__))
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
  if jax.process_index() == 0:
    directory = os.fspath(manager.directory)
    aside = os.path.join(os.path.dirname(directory), 'checkpoints_damaged')
    os.makedirs(aside, exist_ok=True)
    for step in steps:
      source = os.path.join(directory, str(step))
      if os.path.exists(source):
        target = os.path.join(aside, str(step))
        if os.path.exists(target):
          shutil.rmtree(target)
        shutil.move(source, target)
  manager.reload()


def truncate_history(workdir: str, step: int) -> None:
  """Drops history.jsonl rows after `step` (written after the checkpoint a resume starts from)."""
  path = os.path.join(workdir, 'history.jsonl')
  if jax.process_index() != 0 or not os.path.exists(path):
    return
  with open(path) as f:
    rows = [line for line in f if line.strip()]
  keep = [line for line in rows if json.loads(line).get('step', 0) <= step]
  if len(keep) != len(rows):
    logging.info('history.jsonl: dropped %d row(s) after step %d, the resumed step.',
                 len(rows) - len(keep), step)
    with open(path + '.tmp', 'w') as f:
      f.writelines(keep)
    os.replace(path + '.tmp', path)


def assert_finite(tree: Any, what: str) -> None:
  """Raises FloatingPointError naming `what` if any leaf of `tree` is not finite."""
  for leaf in jax.tree.leaves(tree):
    array = np.asarray(leaf)
    if np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
      raise FloatingPointError(f'{what} holds NaN or infinite values.')
