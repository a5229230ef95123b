"""A run's life around its loop, the same for every family: checks and the lease before anything
is written, signals and the start-up report cleaned up however it ends, checkpoints saved."""

from typing import Any, Dict

import ml_collections
import orbax.checkpoint as ocp

from sintrovae_jax.core import parallel
from sintrovae_jax.core.train_state import TrainState, ema_view
from sintrovae_jax.data import pipeline as input_pipeline
from sintrovae_jax.io import fs, hosts
from sintrovae_jax.program import lease, workdir as workdir_lib
from sintrovae_jax.program.errors import USER_ERRORS, TrainingDiverged
from sintrovae_jax.program.metric_log import MetricLog
from sintrovae_jax.program.startup import Preemption, StartupReport, configure_compilation_cache


def on_each_network(fn, state: TrainState) -> Dict[str, Any]:
  """`fn(state)`'s results for the trained networks, and with a weight EMA also `fn` of the EMA
  networks under keys 'ema/...': what the evaluation reports. (Sampling and pictures use the EMA
  alone, `ema_view`.)"""
  results = dict(fn(state))
  if state.ema is not None:
    results.update({'ema/' + k: v for k, v in fn(ema_view(state)).items()})
  return results


def run_program(config: ml_collections.ConfigDict, workdir: str, build_fn, train_fn):
  """Checks and leases, then `train_fn(build_fn(config), workdir, preemption, report, cache_dir)`
  with signals, the lease and the start-up report cleaned up however it ends.

  The checks run on every host and the lease is taken by process 0; a failure anywhere stops
  every host with the same message before anything is written.
  """
  report = StartupReport()
  workdir = fs.absolute(workdir)
  held = None
  try:
    cache_dir = configure_compilation_cache(config, workdir)
    exp = hosts.together(_checked_build, config, workdir, build_fn, errors=USER_ERRORS)
    held = hosts.together(lambda: lease.Lease(workdir).acquire() if hosts.is_leader() else None,
                          errors=USER_ERRORS)
  except BaseException:
    report.close()
    raise
  preempted = Preemption()
  report.mark('build_state')
  try:
    return train_fn(exp, workdir, preempted, report, cache_dir)
  finally:
    report.close()
    preempted.restore_defaults()
    if held:
      held.release()


def _checked_build(config, workdir: str, build_fn):
  """`build_fn(config)` after the config and data checks (process 0 reads the workdir; a
  workdir that is a file is the lease's to refuse)."""
  exp = build_fn(config)
  if hosts.is_leader():
    workdir_lib.check_config(config, workdir)
  input_pipeline.check_data(config)
  return exp


def save_checkpoint(manager: ocp.CheckpointManager, r_state: TrainState, step: int,
                    log: 'MetricLog', workdir: str, hint: str) -> None:
  """Saves the (replicated) state at `step` on every host, then history.jsonl and topology.json
  (process 0). A non-finite state is never saved (TrainingDiverged, with `hint`); a write that
  fails for want of space or permission is one WorkdirError naming the step and the last good
  checkpoint."""
  host_state = parallel.unreplicate(r_state)
  try:
    workdir_lib.assert_finite(host_state, f'The state at step {step}')
  except FloatingPointError as e:
    raise TrainingDiverged(f'{e} It is not saved; the last good checkpoint is kept. {hint}') \
        from None
  last_good = manager.latest_step()
  try:
    with workdir_lib.held_stderr():
      manager.save(step, args=ocp.args.StandardSave(host_state), force=True)
      manager.wait_until_finished()
    workdir_lib.write_topology(workdir)
    log.save()
  except Exception as e:  # pylint: disable=broad-except  # storage faults: one line; others: raised
    failure = lease.storage_failure(e)
    if failure is None:
      raise
    if last_good is None:
      before = 'no checkpoint was saved before it'
    else:
      need = workdir_lib.checkpoint_bytes(manager, last_good) / 2**20
      before = f'the last good one is step {last_good}; a checkpoint takes about {need:.1f} MiB'
    raise lease.writable_error(workdir, failure,
                               f'the checkpoint of step {step} ({before})') from None


def chain(first, rest):
  yield first
  yield from rest
