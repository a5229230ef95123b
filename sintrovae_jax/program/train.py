"""The training program of the image, 2D and 3D families: their data stream and compiled steps
handed to the shared loop (loop.py) as one segment, then the final evaluation (their experiment
is standard.py's; the run around it runner.py's).

`train_and_evaluate(config, workdir)` is what `main.py` runs. It validates the config before
anything compiles, resumes from the latest checkpoint in `workdir` (the data stream resumes with
it), saves on SIGTERM, and writes `eval_results.json` at the end.
"""

import functools
import logging
from typing import Dict, Iterator, Optional

import jax
import ml_collections
import numpy as np

from sintrovae_jax.core import inference, parallel
from sintrovae_jax.core.train_step import make_train_step, steps_in_one_call
from sintrovae_jax.data import kinds, pipeline as input_pipeline, point_files as point_data
from sintrovae_jax.program import config_lib, loop
from sintrovae_jax.program.outputs import write_results
from sintrovae_jax.program.runner import chain, run_program
from sintrovae_jax.program.standard import (Experiment, build, create_fid_evaluator, eval_points,
                                            evaluate, measure_fid, write_pictures)
from sintrovae_jax.program.startup import Preemption, StartupReport


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Optional[Dict[str, float]]:
  """Trains per `config`, resuming from `workdir`; returns the final evaluation (None if stopped).

  Config, data and workdir are checked before anything is written; the workdir is locked for the
  run; a checkpoint is written before pictures and evaluation, which cannot lose it. Start-up
  times go to WORKDIR/startup.json.
  """
  return run_program(config, workdir, build, _train)


def _train(exp: Experiment, workdir: str, preempted: Preemption, report: StartupReport,
           cache_dir: str) -> Optional[Dict[str, float]]:
  config = exp.config
  with loop.resumed(config, workdir, exp.state, report) as (run, state):
    start = run.start
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
    p_steps = _compile_phases(exp, weights, r_state, first, start, report)
    fid_evaluator = create_fid_evaluator(exp, workdir)  # reads the weights before any training
    logging.info('Training %s from step %d to %d on %d device(s).', config.dataset, start,
                 config.num_train_steps, jax.device_count())
    steps = _one_step_per_call if config.steps_per_dispatch == 1 else _steps_per_call
    whole_run = loop.Segment(
        last=config.num_train_steps, data=host_batches,
        run=lambda r_state: steps(p_steps, config, start, chain(first, host_batches), r_state,
                                  fid_evaluator is not None),
        pictures=lambda state, step: write_pictures(exp, state, step, real_for_pictures,
                                                    run.writer, workdir))
    r_state = loop.train(run, [whole_run], r_state, config.num_train_steps, preempted, report,
                         cache_dir, 'Try a lower learning_rate or smaller betas.',
                         fid=None if fid_evaluator is None else (
                             lambda r: measure_fid(fid_evaluator, r)))
    if r_state is None:
      return None
    results = evaluate(exp, parallel.unreplicate(r_state))
    if fid_evaluator:
      fid_results = measure_fid(fid_evaluator, r_state)
      run.log.write_fid(config.num_train_steps, fid_results)
      results.update(fid_results)
    write_results(run.log, run.writer, workdir, config.num_train_steps, results)
    return results


def _compile_phases(exp: Experiment, weights, r_state, first, start: int, report: StartupReport):
  """One compiled step per phase ('vae', 'soft_intro'), chosen on the host (no device-side branch
  per step), each compiled now (ahead of time): a restarted run finds them in the compilation
  cache. With steps_per_dispatch = k > 1, one program per phase runs up to k steps per call."""
  config = exp.config
  k = config.steps_per_dispatch
  example = parallel.shard(first) if k == 1 else parallel.shard_block([first], k)
  p_steps = {}
  needed = {'vae': start < config.num_vae_steps,
            'soft_intro': config.num_train_steps > config.num_vae_steps}
  for phase in ('vae', 'soft_intro'):
    if not needed[phase]:
      continue  # this run never takes that phase
    pmapped = _phase_program(exp.model, weights, tuple(config_lib.step_options(config).items()),
                             phase, k)
    args = (r_state, example) if k == 1 else (r_state, example, _per_device(1))
    if jax.process_count() > 1:  # ahead-of-time pmap is single-process: compile at first call
      p_steps[phase] = pmapped
      continue
    lowered = pmapped.lower(*args)
    report.mark(f'trace_{phase}')
    p_steps[phase] = lowered.compile()  # from the compilation cache on a restart
    report.mark(f'compile_{phase}')
  return p_steps


@functools.lru_cache(maxsize=8)
def _phase_program(model, weights, options: tuple, phase: str, k: int):
  """One phase's pmapped step (k steps per call if k > 1) on uint8 or [0, 1] batches: one object
  per arguments, so that a second run of a config in this process (a resume, a notebook cell run
  again, main.py's modes after training) finds it traced, lowered and compiled in JAX's own
  caches (the state's optimiser is one object per config too: train_state.make_optimizer)."""
  step_fn = make_train_step(model, weights, axis_name=parallel.AXIS, phase=phase, **dict(options))
  one = lambda state, batch: step_fn(state, inference.to_unit_range(batch))
  return parallel.pmap_train_step(one if k == 1 else steps_in_one_call(one))


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
