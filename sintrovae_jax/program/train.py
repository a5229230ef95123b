"""The training loop of the image, 2D and 3D families: restore, train with logging, pictures and
checkpoints, evaluate (their experiment is standard.py's; the run around the loop runner.py's).

`train_and_evaluate(config, workdir)` is what `main.py` runs. It validates the config before
anything compiles, resumes from the latest checkpoint in `workdir` (the data stream resumes with
it), saves on SIGTERM, and writes `eval_results.json` at the end.
"""

import logging
from typing import Dict, Iterator, Optional

from clu import periodic_actions
import jax
import ml_collections
import numpy as np

from sintrovae_jax.core import inference, parallel
from sintrovae_jax.core.train_step import make_train_step, steps_in_one_call
from sintrovae_jax.data import kinds, pipeline as input_pipeline, point_files as point_data
from sintrovae_jax.io import hosts
from sintrovae_jax.program import config_lib, workdir as workdir_lib
from sintrovae_jax.program.errors import USER_ERRORS
from sintrovae_jax.program.metric_log import MetricLog
from sintrovae_jax.program.outputs import never_fatal, open_run, stop_for_signal, write_results
from sintrovae_jax.program.runner import chain, run_program, save_checkpoint
from sintrovae_jax.program.standard import (Experiment, build, create_fid_evaluator, eval_points,
                                            evaluate, measure_fid, write_pictures)
from sintrovae_jax.program.startup import Preemption, StartupReport
from sintrovae_jax.program.workdir import checkpoint_manager, restore_latest


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Optional[Dict[str, float]]:
  """Trains per `config`, resuming from `workdir`; returns the final evaluation (None if stopped).

  Config, data and workdir are checked before anything is written; the workdir is locked for the
  run; a checkpoint is written before pictures and evaluation, which cannot lose it. Start-up
  times go to WORKDIR/startup.json.
  """
  return run_program(config, workdir, build, _train)


def _train(exp: Experiment, workdir: str, preempted: 'Preemption', report: StartupReport,
           cache_dir: str) -> Optional[Dict[str, float]]:
  config = exp.config
  manager = checkpoint_manager(workdir, config)
  state = restore_latest(manager, exp.state)
  start = int(state.step)
  hosts.together(workdir_lib.check_topology, config, workdir, start, errors=USER_ERRORS)
  report.mark('restore_checkpoint')
  writer = open_run(config, workdir, start)
  weights = config_lib.loss_weights(config, exp.shape)
  if exp.is_clouds:
    exp.points = point_data.load_split(config.data_dir, kinds.point_categories(config),
                                       config.train_split, config.num_points)
  host_batches = input_pipeline.train_iterator(config, start, exp.points)
  first = next(host_batches)
  report.mark('first_batch')
  real_for_pictures = (eval_points(exp, config.num_eval_points, config.eval_seed)
                       if exp.is_vector else
                       np.asarray(inference.to_unit_range(first[:config.num_grid_images])))
  r_state = parallel.replicate(state)
  # One compiled step per phase, chosen here on the host (no device-side branch per step), both
  # compiled now (ahead of time): a restarted run finds them in the compilation cache. With
  # steps_per_dispatch = k > 1, one program per phase runs up to k steps per call instead.
  k = config.steps_per_dispatch
  example = parallel.shard(first) if k == 1 else parallel.shard_block([first], k)
  p_steps = {}
  needed = {'vae': start < config.num_vae_steps,
            'soft_intro': config.num_train_steps > config.num_vae_steps}
  for phase in ('vae', 'soft_intro'):
    if not needed[phase]:
      continue  # this run never takes that phase
    step_fn = make_train_step(exp.model, weights, axis_name=parallel.AXIS, phase=phase,
                              **config_lib.step_options(config))
    if k == 1:
      pmapped = parallel.pmap_train_step(
          lambda state, batch, step_fn=step_fn: step_fn(state, inference.to_unit_range(batch)))
      args = (r_state, example)
    else:
      steps = steps_in_one_call(lambda state, batch, step_fn=step_fn: step_fn(
          state, inference.to_unit_range(batch)))
      pmapped = parallel.pmap_train_step(steps)
      args = (r_state, example, _per_device(1))
    if jax.process_count() > 1:  # ahead-of-time pmap is single-process: compile at first call
      p_steps[phase] = pmapped
      continue
    lowered = pmapped.lower(*args)
    report.mark(f'trace_{phase}')
    p_steps[phase] = lowered.compile()  # from the compilation cache on a restart
    report.mark(f'compile_{phase}')

  log = MetricLog(workdir, writer, config, start)
  fid_evaluator = create_fid_evaluator(exp, workdir)  # reads the weights before any training
  hooks = []
  if jax.process_index() == 0:
    hooks.append(periodic_actions.ReportProgress(num_train_steps=config.num_train_steps,
                                                 writer=writer,
                                                 every_steps=config.log_every_steps))
    if config.profile_steps:
      hooks.append(periodic_actions.Profile(num_profile_steps=config.profile_steps,
                                            logdir=workdir))
  logging.info('Training %s from step %d to %d on %d device(s).', config.dataset, start,
               config.num_train_steps, jax.device_count())
  if start >= config.num_train_steps:
    report.write(workdir, cache_dir, start)

  def save(step):
    save_checkpoint(manager, r_state, step, log, workdir,
                    'Try a lower learning_rate or smaller betas.')

  run = _one_step_per_call if k == 1 else _steps_per_call
  stop = False
  for step, metrics, new_state in run(p_steps, config, start, chain(first, host_batches),
                                      r_state, fid_evaluator is not None):
    if new_state is not None:  # the call that ran `step` has ended: its state is current
      r_state = new_state
    if step == start + 1:
      jax.block_until_ready(metrics)
      report.mark('first_step')
      report.write(workdir, cache_dir, start)
    log.add(metrics, step)  # raises TrainingDiverged on a long run of non-finite steps
    for hook in hooks:
      hook(step)
    last = step == config.num_train_steps
    if step % config.log_every_steps == 0 or last:
      log.flush(step)
      skipped = getattr(host_batches, 'skipped', 0)
      if skipped:
        writer.write_scalars(step, {'data/skipped_images': skipped})
    if step % config.checkpoint_every_steps == 0 or last:
      save(step)
    if (step % config.sample_every_steps == 0 or last) and jax.process_index() == 0:
      never_fatal(f'pictures at step {step}', write_pictures, exp, parallel.unreplicate(r_state),
                   step, real_for_pictures, writer, workdir)
    if fid_evaluator and config.fid_every_steps and step % config.fid_every_steps == 0 and not last:
      log.write_fid(step, measure_fid(fid_evaluator, r_state))
    stop = preempted(step) or stop  # (every step asks: JAX's sync point may be any of them)
    if stop and new_state is not None:
      stop_for_signal(log, save, writer, step)
      return None

  final = parallel.unreplicate(r_state)
  results = evaluate(exp, final)
  if fid_evaluator:
    fid_results = measure_fid(fid_evaluator, r_state)
    log.write_fid(config.num_train_steps, fid_results)
    results.update(fid_results)
  write_results(log, writer, workdir, config.num_train_steps, results)
  return results


def _phase(config, step: int) -> str:
  return 'vae' if step <= config.num_vae_steps else 'soft_intro'


def _one_step_per_call(p_steps, config, start: int, host_batches, r_state, fid_on: bool):
  """Yields (step, its metrics, the state after it), one compiled call per step."""
  del fid_on
  batches = parallel.prefetch(host_batches)
  for step in range(start + 1, config.num_train_steps + 1):
    with jax.profiler.StepTraceAnnotation('train', step_num=step):
      r_state, metrics = p_steps[_phase(config, step)](r_state, next(batches))
    yield step, metrics, r_state


def call_sizes(config, start: int, fid_on: bool) -> Iterator[int]:
  """Steps per compiled call from `start` on: up to steps_per_dispatch, each call ending at the
  next step where the loop acts (logging, checkpoint, pictures, FID, the phase switch, the end),
  so that it acts on the state of exactly that step."""
  every = [config.log_every_steps, config.checkpoint_every_steps, config.sample_every_steps]
  every += [config.fid_every_steps] if fid_on and config.fid_every_steps else []
  step = start
  while step < config.num_train_steps:
    stops = [config.num_train_steps] + [(step // e + 1) * e for e in every]
    if step < config.num_vae_steps:
      stops.append(config.num_vae_steps)
    n = min(config.steps_per_dispatch, min(stops) - step)
    yield n
    step += n


def _per_device(n: int) -> np.ndarray:
  return np.full((jax.local_device_count(),), n, np.int32)


def _steps_per_call(p_steps, config, start: int, host_batches, r_state, fid_on: bool):
  """Yields (step, its metrics, the state after it or None inside a call), running up to
  steps_per_dispatch steps per compiled call (`call_sizes`). A call's metrics are fetched to the
  host when it ends, one row per step, in the form `parallel.unreplicate` reads."""
  k, step = config.steps_per_dispatch, start
  sizes = list(call_sizes(config, start, fid_on))
  blocks = parallel.prefetch_blocks(
      (parallel.shard_block([next(host_batches) for _ in range(n)], k) for n in sizes))
  for n, block in zip(sizes, blocks):
    with jax.profiler.StepTraceAnnotation('train', step_num=step + 1):
      r_state, metrics = p_steps[_phase(config, step + 1)](r_state, block, _per_device(n))
    rows = parallel.unreplicate(metrics)  # [k, ...] on the host
    for i in range(n):
      step += 1
      yield step, jax.tree.map(lambda v, i=i: v[i:i + 1], rows), r_state if i == n - 1 else None
