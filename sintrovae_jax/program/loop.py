"""The training loop, one for every family: a family hands it its schedule as segments (the
image, 2D and 3D families: the whole run; the style family: one segment per progressive phase),
and the loop does what every step needs: metrics and divergence checks, progress, checkpoints,
pictures, FID during training, and stopping on a signal at a step every host agrees on.
"""

import contextlib
import dataclasses
from typing import Any, Callable, Iterable, Iterator, Optional, Tuple

from absl import logging
from clu import periodic_actions
import jax
import ml_collections
import orbax.checkpoint as ocp

from sintrovae_jax.core import parallel
from sintrovae_jax.io import hosts
from sintrovae_jax.program import errors, outputs, workdir as workdir_lib
from sintrovae_jax.program.metric_log import MetricLog
from sintrovae_jax.program.runner import save_checkpoint
from sintrovae_jax.program.startup import Preemption, StartupReport

# (step, that step's metrics, the replicated state after it, or None inside a multi-step call)
StepResult = Tuple[int, Any, Optional[Any]]


@dataclasses.dataclass
class Segment:
  """Steps up to `last`, run by `run(r_state)` (yielding a StepResult per step). Its end is logged,
  checkpointed and pictured whatever the intervals say, so a resume can start there exactly.
  `pictures(host_state, step)` draws the family's pictures; `data` is the host batch stream (the
  images it skipped as undecodable are logged)."""
  last: int
  run: Callable[[Any], Iterator[StepResult]]
  pictures: Callable[[Any, int], None]
  data: Any = None


@dataclasses.dataclass
class Run:
  """What the loop writes to and reads from, opened by `resumed`."""
  config: ml_collections.ConfigDict
  workdir: str
  manager: ocp.CheckpointManager
  start: int
  writer: Any
  log: MetricLog


@contextlib.contextmanager
def resumed(config: ml_collections.ConfigDict, workdir: str, initial: Any,
            report: StartupReport) -> Iterator[Tuple[Run, Any]]:
  """The latest checkpoint that restores (or `initial`), checked against this run's host count;
  config.json written and the metric writer and log opened. Yields (run, host state); on the
  way out, however the run ends, the writer and the checkpoint manager (their threads too) are
  closed."""
  with contextlib.ExitStack() as opened:
    manager = workdir_lib.checkpoint_manager(workdir, config)
    opened.callback(_close, manager, 'the checkpoint manager')
    state = workdir_lib.restore_latest(manager, initial)
    start = int(state.step)
    hosts.together(workdir_lib.check_topology, config, workdir, start, errors=errors.USER_ERRORS)
    report.mark('restore_checkpoint')
    writer = outputs.open_run(config, workdir, start)
    opened.callback(_close, writer, 'the metric writer')
    yield Run(config, workdir, manager, start, writer,
              MetricLog(workdir, writer, config, start)), state


def _close(thing: Any, name: str) -> None:
  """Closes `thing`; a failure is a warning, never an error that would hide the run's own."""
  try:
    thing.close()
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('Closing %s failed: %s', name, e)


def train(run: Run, segments: Iterable[Segment], r_state: Any, total: int,
          preempted: Preemption, report: StartupReport, cache_dir: str, hint: str,
          fid: Optional[Callable[[Any], dict]] = None) -> Optional[Any]:
  """Runs the segments from `run.start` to step `total`; returns the final replicated state, or
  None when a stop signal ended the run (its step saved). `hint` says what to try when the state
  diverges; `fid(r_state)` is measured every `fid_every_steps` (not at the end: the family's)."""
  config, log, writer = run.config, run.log, run.writer
  hooks = []
  if hosts.is_leader():
    hooks.append(periodic_actions.ReportProgress(num_train_steps=total, writer=writer,
                                                 every_steps=config.log_every_steps))
    if config.profile_steps:
      hooks.append(periodic_actions.Profile(num_profile_steps=config.profile_steps,
                                            logdir=run.workdir))
  saved = [run.start]

  def save(step):
    if saved[0] == step:  # (a stop signal at a checkpoint's step: it is saved already)
      return
    saved[0] = step
    save_checkpoint(run.manager, r_state, step, log, run.workdir, hint)

  first_step_done = run.start >= total
  if first_step_done:
    report.write(run.workdir, cache_dir, run.start)
  stop = False
  for segment in segments:
    for step, metrics, new_state in segment.run(r_state):
      if new_state is not None:  # the call that ran `step` has ended: its state is current
        r_state = new_state
      if not first_step_done:
        jax.block_until_ready(metrics)
        first_step_done = True
        report.mark('first_step')
        report.write(run.workdir, cache_dir, run.start)
      log.add(metrics, step)  # raises TrainingDiverged on a long run of non-finite steps
      for hook in hooks:
        hook(step)
      end = step == segment.last
      if step % config.log_every_steps == 0 or end:
        log.flush(step)
        skipped = getattr(segment.data, 'skipped', 0)
        if skipped:
          writer.write_scalars(step, {'data/skipped_images': skipped})
      if step % config.checkpoint_every_steps == 0 or end:
        save(step)
      if (step % config.sample_every_steps == 0 or end) and hosts.is_leader():
        outputs.never_fatal(f'pictures at step {step}', segment.pictures,
                            parallel.unreplicate(r_state), step)
      if fid and config.fid_every_steps and step % config.fid_every_steps == 0 and step < total:
        log.write_fid(step, fid(r_state))
      stop = preempted(step) or stop  # (every step asks: JAX's sync point may be any of them)
      if stop and new_state is not None:
        outputs.stop_for_signal(log, save, writer, step)
        return None
  return r_state
