"""The training program: build, restore, train with logging, pictures and checkpoints, evaluate.

`train_and_evaluate(config, workdir)` is what `main.py` runs. It validates the config before
anything compiles, resumes from the latest checkpoint in `workdir` (the data stream resumes with
it), saves on SIGTERM, and writes `eval_results.json` at the end.
"""

import dataclasses
import json
import logging
import os
import signal
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from clu import metric_writers, periodic_actions

from sintrovae_jax.core import inference, parallel
from sintrovae_jax.data import kinds, pipeline as input_pipeline, point_files as point_data, toy as toy_data
from sintrovae_jax.evaluators import quality as evaluation, fid, fid_evaluator as fid_eval, inception
from sintrovae_jax.io import fs, hosts, plotting
from sintrovae_jax.interop import points_checkpoint
from sintrovae_jax.program import config_lib, lease, workdir as workdir_lib
from sintrovae_jax.core.train_state import (TrainState, create_train_state, ema_view,
                                       learning_rate_schedule, make_optimizer)
from sintrovae_jax.core.train_step import make_train_step, steps_in_one_call
from sintrovae_jax.core.vae import SoftIntroVAE
from sintrovae_jax.program.workdir import checkpoint_manager, restore_latest


class TrainingDiverged(RuntimeError):
  """Too many consecutive non-finite steps; the last good checkpoint is left in place."""


# Errors a user can cause and fix: main.py prints their message alone, without a traceback.
USER_ERRORS = (config_lib.ConfigError, input_pipeline.DataError, TrainingDiverged,
               workdir_lib.CheckpointError, lease.WorkdirLocked, lease.WorkdirError, fid.FidError,
               inception.WeightsError, point_data.PointDataError, points_checkpoint.StateDictError,
               hosts.HostError)


@dataclasses.dataclass
class Experiment:
  """What a config builds: data, networks, objective weights and the initial train state."""
  config: ml_collections.ConfigDict
  shape: Tuple[int, ...]
  model: SoftIntroVAE
  state: TrainState
  points: Optional[np.ndarray]  # the .npy file's points, or the training clouds [S, N, 3]

  @property
  def is_vector(self) -> bool:
    return len(self.shape) == 1

  @property
  def is_clouds(self) -> bool:
    return len(self.shape) == 2


def build(config: ml_collections.ConfigDict) -> Experiment:
  """Validates `config` and builds everything but the data stream. Raises before compiling."""
  config_lib.validate(config, num_devices=jax.device_count())
  # (Point clouds are read when training starts: sampling from a checkpoint needs none.)
  points = input_pipeline.load_points(config.data_file) if config.dataset == 'npy' else None
  shape = kinds.data_shape(config, None if points is None else points.shape[1])
  model = config_lib.create_model(config, shape)
  tx = make_optimizer(learning_rate_schedule(config.learning_rate, tuple(config.lr_decay_steps),
                                             config.lr_decay_factor))
  state = create_train_state(model, jax.random.PRNGKey(config.seed), shape, tx,
                             **config_lib.state_options(config))
  return Experiment(config, shape, model, state, points)


def on_each_network(fn, state: TrainState) -> Dict[str, Any]:
  """`fn(state)`'s results for the trained networks, and with a weight EMA also `fn` of the EMA
  networks under keys 'ema/...': what the evaluation reports. (Sampling and pictures use the EMA
  alone, `ema_view`.)"""
  results = dict(fn(state))
  if state.ema is not None:
    results.update({'ema/' + k: v for k, v in fn(ema_view(state)).items()})
  return results


# ----------------------------------------------------------------------------------------------
# Logging.


class MetricLog:
  """Per-step device metrics, summarised every `log_every_steps` and kept in history.jsonl.

  The rows are held in memory and history.jsonl is rewritten whole by process 0 at each
  checkpoint (`save`), as an object store wants it (no appends); a resume starts from the rows
  up to its checkpoint's step (`start`).
  """

  def __init__(self, workdir: str, writer, config, start: int = 0):
    self.path = fs.join(workdir, 'history.jsonl')
    self.writer, self.config = writer, config
    self.rows = workdir_lib.load_history(workdir, start) if hosts.is_leader() else []
    self.pending: List[Dict[str, jax.Array]] = []
    self.checked = 0  # pending steps whose `nonfinite` flag has been read
    self.nonfinite_run = 0

  def add(self, metrics, step: int) -> None:
    """Keeps a step's metrics and reads the previous step's `nonfinite` flag (by now computed,
    so the device queue stays one step ahead); raises TrainingDiverged on a long run of them."""
    self.pending.append(metrics)
    self._check(len(self.pending) - 1, step - 1)

  def _check(self, upto: int, step: int) -> None:
    for m in self.pending[self.checked:upto]:
      nonfinite = float(parallel.unreplicate(m['nonfinite']))
      self.nonfinite_run = self.nonfinite_run + 1 if nonfinite else 0
      if self.nonfinite_run >= self.config.max_nonfinite_steps:
        raise TrainingDiverged(
            f'{self.nonfinite_run} consecutive non-finite steps up to step {step}: training has '
            'diverged (each was skipped, so the state is still the last finite one). The last '
            'good checkpoint is kept; try a lower learning_rate, a smaller beta_neg or bfloat16 '
            'off.')
    self.checked = max(self.checked, upto)

  def flush(self, step: int) -> Dict[str, float]:
    """Writes the mean of the pending steps; raises TrainingDiverged on a long non-finite run."""
    self._check(len(self.pending), step)
    steps = [jax.tree.map(float, m) for m in parallel.unreplicate(self.pending)]
    self.pending, self.checked = [], 0
    finite = [m for m in steps if not m['nonfinite']] or steps
    summary = {k: float(np.mean([m[k] for m in finite])) for k in steps[0]}
    summary['nonfinite'] = float(sum(m['nonfinite'] for m in steps))
    if summary['soft_intro'] == 0:  # warm-up: the Soft-IntroVAE terms were not computed
      for k in ('kl_fake', 'kl_rec', 'diff_kl', 'exp_elbo_fake', 'exp_elbo_rec', 'loss_enc',
                'loss_dec'):
        summary.pop(k)
    else:
      summary.pop('loss_vae')
      if summary['kl_real'] > summary['kl_fake'] and jax.process_index() == 0:
        logging.warning('Step %d: kl_real (%.4g) is above kl_fake (%.4g): the model does not '
                        'tell generated data from real. If this persists, try a larger beta_neg.',
                        step, summary['kl_real'], summary['kl_fake'])
    self.writer.write_scalars(step, summary)
    self.rows.append({'step': step, **summary})
    return summary

  def write_fid(self, step: int, results: Dict[str, Any]) -> None:
    """FID/KID figures to TensorBoard (fid/...) and a history row of their own."""
    numbers = {k: v for k, v in results.items() if v is not None}
    self.writer.write_scalars(step, {f'fid/{k}': v for k, v in numbers.items()})
    if jax.process_index() == 0:
      for prefix in ('', 'ema/'):
        if prefix + 'fid' in results:
          logging.info('Step %d: %sFID %.4g, KID %s, FID of reconstructions %.4g', step,
                       prefix.replace('/', ' '), results[prefix + 'fid'],
                       results[prefix + 'kid'], results[prefix + 'fid_rec'])
    self.rows.append({'step': step, **numbers})

  def history(self) -> List[Dict[str, float]]:
    return list(self.rows)

  def save(self) -> None:
    """Rewrites history.jsonl with every row so far (process 0)."""
    if hosts.is_leader():
      fs.write_text(self.path, ''.join(json.dumps(row) + '\n' for row in self.rows))


# ----------------------------------------------------------------------------------------------
# Pictures and evaluation.


def _points_eval(exp: Experiment, num: int, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  if exp.points is not None:
    return exp.points[rng.choice(len(exp.points), min(num, len(exp.points)), replace=False)]
  return toy_data.sample(exp.config.dataset, num, rng)


def _grid_range(exp: Experiment) -> float:
  if exp.points is None:
    return toy_data.GRID_RANGE[exp.config.dataset]
  return float(np.abs(exp.points).max() * 1.1)


def write_pictures(exp: Experiment, state: TrainState, step: int, real: np.ndarray, writer,
                   workdir: str) -> None:
  """Real / reconstruction / sample grids (images) or scatter and density plots (2D); host 0.

  With a weight EMA, the pictures show the EMA networks."""
  config, model = exp.config, exp.model
  state = ema_view(state)
  key = jax.random.PRNGKey(config.eval_seed)
  pictures = {}
  if exp.is_clouds:
    n = min(8, len(real))
    rec = inference.reconstruct(model, state, real[:n])
    fake = inference.sample(model, state, key, n, prior_std=config.prior_std)
    pictures['real_rec_sample'] = plotting.stack_panels(
        [plotting.clouds_grid(c, columns=2, title=t) for c, t in
         ((real[:n], 'real'), (np.asarray(rec), 'reconstruction'), (np.asarray(fake), 'sample'))])
  elif exp.is_vector:
    if exp.shape[0] != 2:
      return
    r = _grid_range(exp)
    fake = np.asarray(inference.sample(model, state, key, len(real)))
    pictures['scatter'] = plotting.scatter_2d(real, fake, r, f'step {step}')
    pictures['density'] = plotting.density_2d(evaluation.density_on_grid(model, state, r), r,
                                              f'exp(-(KL + REC)), step {step}')
  else:
    rec = inference.reconstruct(model, state, real, config.recon_loss)
    fake = inference.sample(model, state, key, len(real), config.recon_loss)
    pictures['real_rec_sample'] = plotting.stack_panels(
        [plotting.image_grid(real), plotting.image_grid(np.asarray(rec)),
         plotting.image_grid(np.asarray(fake))])
  writer.write_images(step, {k: v[None] for k, v in pictures.items()})
  for name, image in pictures.items():
    plotting.save_png(image, fs.join(workdir, 'pictures', f'{name}_{step:08d}.png'))


def write_curves(history: List[Dict[str, float]], workdir: str) -> None:
  """KL (real, fake, rec), reconstruction-error and (when measured) FID curves over the run."""
  fids = [h for h in history if 'fid' in h]
  history = [h for h in history if 'loss_rec' in h]
  soft = [h for h in history if 'kl_fake' in h]
  folder = fs.join(workdir, 'pictures')
  if soft:
    image = plotting.curves([h['step'] for h in soft],
                            {k: [h[k] for h in soft] for k in ('kl_real', 'kl_fake', 'kl_rec')},
                            'KL of real, generated and reconstructed data')
    plotting.save_png(image, fs.join(folder, 'kl_curves.png'))
  if history:
    image = plotting.curves([h['step'] for h in history],
                            {k: [h[k] for h in history]
                             for k in ('loss_rec', 'rec_error_deterministic') if k in history[-1]},
                            'reconstruction error', log_y=True)
    plotting.save_png(image, fs.join(folder, 'reconstruction_curves.png'))
  if fids:
    names = [k for k in ('fid', 'fid_rec', 'ema/fid', 'ema/fid_rec') if k in fids[-1]]
    image = plotting.curves([h['step'] for h in fids],
                            {k: [h.get(k, np.nan) for h in fids] for k in names},
                            'FID of samples and of reconstructions (lower is better)')
    plotting.save_png(image, fs.join(folder, 'fid_curves.png'))


def evaluate(exp: Experiment, state: TrainState) -> Dict[str, float]:
  """Final metrics, seeded by config.eval_seed: equal parameters give equal numbers. With a weight
  EMA, also the EMA networks' (keys 'ema/...')."""
  return on_each_network(lambda view: _evaluate(exp, view), state)


def measure_fid(evaluator: fid_eval.FidEvaluator, r_state: TrainState) -> Dict[str, Any]:
  """FID/KID of the (replicated) state's networks and, with a weight EMA, the EMA's ('ema/')."""
  return on_each_network(evaluator, r_state)


def _evaluate(exp: Experiment, state: TrainState) -> Dict[str, float]:
  config = exp.config
  if exp.is_clouds:
    reference = point_data.load_split(config.data_dir, kinds.point_categories(config),
                                      config.eval_split or config.train_split, config.num_points)
    return evaluation.evaluate_clouds(exp.model, state, reference[:config.num_eval_clouds],
                                      jax.random.PRNGKey(config.eval_seed), config.prior_std)
  if exp.is_vector:
    return evaluation.evaluate_points(
        exp.model, state, _points_eval(exp, config.num_eval_points, config.eval_seed),
        _points_eval(exp, 12_800, config.eval_seed + 1), _grid_range(exp), config.eval_seed,
        toy_data.MODE_CENTRES.get(config.dataset))
  return evaluation.evaluate_images(exp.model, state, input_pipeline.eval_images(config),
                                    config.recon_loss)


def fid_cache_dir(config, workdir: str) -> str:
  return fs.absolute(config.fid_cache_dir or fs.join(workdir, 'fid_cache'))


def create_fid_evaluator(exp: Experiment, workdir: str) -> Optional[fid_eval.FidEvaluator]:
  """The FID/KID evaluator when the config names Inception weights (images only), else None."""
  config = exp.config
  if exp.is_vector or exp.is_clouds or not config.fid_inception_weights:
    if not (exp.is_vector or exp.is_clouds):
      logging.info('FID and KID are off: set --config.fid_inception_weights=PATH to measure them '
                   '(README, "FID and KID").')
    return None
  return fid_eval.FidEvaluator(config, exp.model, *fid_image_passes(config),
                               fid_cache_dir(config, workdir))


def fid_image_passes(config):
  """The FID evaluator's data: passes over the training split (reference statistics) and the
  held-out split (reconstructions), in this host's share of `fid_batch_size` batches."""
  per_host = max(1, config.fid_batch_size // jax.process_count())
  heldout_split = config.eval_split or config.train_split
  return (lambda: input_pipeline.image_pass(config, config.train_split, config.fid_num_reference,
                                            per_host),
          lambda: input_pipeline.image_pass(config, heldout_split, config.fid_num_samples,
                                            per_host))


# ----------------------------------------------------------------------------------------------
# The loop.


class Preemption:
  """Stop signals: the loop saves and exits at a step boundary, every host at the same step.

  One process: SIGTERM (a preempted VM) or Ctrl-C sets a flag, seen at the next step. Several
  processes: JAX's preemption notifier owns SIGTERM (hooked when jax.distributed started, so no
  handler of ours replaces it) and every host stops at the sync point that JAX chooses, after the
  same step; Ctrl-C on a host is passed to that notifier as a SIGTERM. A second Ctrl-C exits at
  once, without saving.
  """

  def __init__(self):
    self.requested = False
    self.multi = jax.process_count() > 1
    self._previous = {}
    signals = (signal.SIGINT,) if self.multi else (signal.SIGTERM, signal.SIGINT)
    try:
      for signum in signals:
        self._previous[signum] = signal.signal(signum, self._handle)
    except ValueError:  # not the main thread: leave signals alone
      pass

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    name = signal.Signals(signum).name
    if self.requested and signum == signal.SIGINT:
      logging.warning('Second Ctrl-C: exiting now without saving.')
      os._exit(130)
    logging.warning('%s received: saving a checkpoint and stopping (Ctrl-C again to exit at '
                    'once).', name)
    self.requested = True
    if self.multi:  # every host stops together through JAX's preemption notice
      os.kill(os.getpid(), signal.SIGTERM)

  def restore_defaults(self) -> None:
    try:
      for signum, handler in self._previous.items():
        signal.signal(signum, handler)
    except ValueError:
      pass

  def __call__(self, step: int) -> bool:
    if self.multi:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      return bool(multihost_utils.reached_preemption_sync_point(step))
    return self.requested


def configure_compilation_cache(config, workdir: str) -> str:
  """Points JAX's persistent compilation cache at config.compilation_cache_dir (before any
  compile); a JAX_COMPILATION_CACHE_DIR set in the environment wins. Returns the folder or ''."""
  if os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    return os.environ['JAX_COMPILATION_CACHE_DIR']
  folder = config.compilation_cache_dir.replace('{workdir}', fs.absolute(workdir))  # gs:// too
  if folder:
    jax.config.update('jax_compilation_cache_dir', folder)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  return folder


class StartupReport:
  """Seconds from the start to each milestone, and the compilation-cache hits among them."""

  def __init__(self):
    self.start = time.perf_counter()
    self.seconds: Dict[str, float] = {}
    self.cache_hits = 0
    self._last = self.start
    jax.monitoring.register_event_listener(self._on_event)

  def _on_event(self, event: str, **kwargs) -> None:
    del kwargs
    if event == '/jax/compilation_cache/cache_hits':
      self.cache_hits += 1

  def mark(self, what: str) -> None:
    """Records the seconds spent since the previous mark under `what`."""
    now = time.perf_counter()
    self.seconds[what] = round(now - self._last, 3)
    self._last = now

  def close(self) -> None:
    try:
      jax.monitoring.unregister_event_listener(self._on_event)
    except (AssertionError, KeyError, ValueError):  # already unregistered
      pass

  def write(self, workdir: str, cache_dir: str, start_step: int) -> Dict[str, Any]:
    self.close()
    report = dict(seconds=self.seconds, to_first_step=round(self._last - self.start, 3),
                  compilation_cache_dir=cache_dir, compilation_cache_hits=self.cache_hits,
                  start_step=start_step, **workdir_lib.topology())
    logging.info('Start-up: %.1f s to the first step (%s); compilation cache: %d hit(s).',
                 report['to_first_step'],
                 ', '.join(f'{k} {v:.1f} s' for k, v in self.seconds.items()), self.cache_hits)
    if hosts.is_leader():
      fs.write_json(fs.join(workdir, 'startup.json'), report, indent=2)
    return report


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Optional[Dict[str, float]]:
  """Trains per `config`, resuming from `workdir`; returns the final evaluation (None if stopped).

  Config, data and workdir are checked before anything is written; the workdir is locked for the
  run; a checkpoint is written before pictures and evaluation, which cannot lose it. Start-up
  times go to WORKDIR/startup.json.
  """
  return run_program(config, workdir, build, _train)


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
  real_for_pictures = (_points_eval(exp, config.num_eval_points, config.eval_seed)
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


def open_run(config: ml_collections.ConfigDict, workdir: str, start: int):
  """Saves config.json (process 0), returns the metric writer (with the hyper-parameters
  written on a fresh run)."""
  if hosts.is_leader():
    fs.write_text(fs.join(workdir, 'config.json'), config.to_json_best_effort(indent=2))
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if start == 0:
    writer.write_hparams({k: v if isinstance(v, (int, float, str, bool)) else str(v)
                          for k, v in config.items()})
  return writer


def stop_for_signal(log: MetricLog, save, writer, step: int) -> None:
  """A stop signal arrived: flush the metrics, save `step`, say how to resume."""
  if log.pending:
    log.flush(step)
  save(step)
  writer.flush()
  logging.warning('Stopped at step %d on a stop signal; rerun the same command to resume.', step)


def write_results(log: MetricLog, writer, workdir: str, step: int, results: Dict[str, Any]) -> None:
  """A finished run's curves, eval/ scalars and eval_results.json (files from host 0)."""
  log.save()
  if hosts.is_leader():
    never_fatal('curves', write_curves, log.history(), workdir)
  writer.write_scalars(step, {f'eval/{k}': v for k, v in results.items() if v is not None})
  writer.flush()
  if hosts.is_leader():
    fs.write_json(fs.join(workdir, 'eval_results.json'), results, indent=2, sort_keys=True)
  logging.info('Final evaluation: %s', results)


def never_fatal(what: str, fn, *args) -> None:
  """Pictures are for looking at: a failure to draw them is logged, never fatal to the run."""
  try:
    fn(*args)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('Could not draw the %s (%s: %s); training goes on.', what, type(e).__name__, e)


def chain(first, rest):
  yield first
  yield from rest


# ----------------------------------------------------------------------------------------------
# Sampling from a trained run.


def load_config(workdir: str,
                defaults: Optional[ml_collections.ConfigDict] = None) -> ml_collections.ConfigDict:
  """The config a run in `workdir` was trained with (saved as config.json), over `defaults`.

  `defaults` (configs/default.py) supplies fields added since the run was trained.
  """
  path = fs.join(workdir, 'config.json')
  if not fs.exists(path):
    raise config_lib.ConfigError(f'No config.json in {workdir!r}: is it the --workdir of a '
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


def latest_checkpoint_state(exp: Experiment, workdir: str, purpose: str) -> TrainState:
  """The state of `workdir`'s latest checkpoint; CheckpointError naming `purpose` if none.
  (Any experiment with a `config` and an initial `state`: the style variant's too.)"""
  manager = checkpoint_manager(workdir, exp.config)
  if manager.latest_step() is None:
    raise workdir_lib.CheckpointError(f'No checkpoint under {workdir!r}/checkpoints to {purpose}.')
  return restore_latest(manager, exp.state)


def fid_from_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """FID, KID and reconstruction FID of the latest checkpoint, also written to fid_results.json."""
  exp = build(config)
  if exp.is_vector or exp.is_clouds or not config.fid_inception_weights:
    raise config_lib.ConfigError('--mode=fid needs an image run and the Inception weights: pass '
                                 '--inception_weights=PATH (README, "FID and KID").')
  state = latest_checkpoint_state(exp, workdir, 'evaluate')
  results = dict(measure_fid(create_fid_evaluator(exp, workdir), parallel.replicate(state)),
                 step=int(state.step))
  write_fid_results(workdir, results)
  return results


def write_fid_results(workdir: str, results: Dict[str, Any]) -> None:
  if hosts.is_leader():
    fs.write_json(fs.join(workdir, 'fid_results.json'), results, indent=2, sort_keys=True)


def sample_from_checkpoint(config: ml_collections.ConfigDict, workdir: str, num: int = 64,
                           interpolation_steps: int = 10) -> List[str]:
  """Writes `num` generated examples and an interpolation strip from the latest checkpoint (its
  weight EMA, when the run kept one)."""
  exp = build(config)
  state = ema_view(latest_checkpoint_state(exp, workdir, 'sample from'))
  key_samples, key_ends = jax.random.split(jax.random.PRNGKey(config.eval_seed))
  fake = np.asarray(inference.sample(exp.model, state, key_samples, num, config.recon_loss,
                                     config.prior_std))
  step = int(state.step)
  if exp.is_clouds:
    return write_samples(workdir, {f'samples_{step:08d}.npy': fake,
                                   f'samples_{step:08d}.png': plotting.clouds_grid(fake[:16])})
  if exp.is_vector:
    outputs = {f'samples_{step:08d}.npy': fake}
    if exp.shape[0] == 2:
      real = _points_eval(exp, num, config.eval_seed)
      outputs[f'scatter_{step:08d}.png'] = plotting.scatter_2d(real, fake, _grid_range(exp),
                                                               f'step {step}')
    return write_samples(workdir, outputs)
  ends = jax.random.normal(key_ends, (2, exp.model.z_dim))
  t = jnp.linspace(0.0, 1.0, interpolation_steps)[:, None]
  strip = inference.decode(exp.model, state, (1 - t) * ends[0] + t * ends[1], config.recon_loss)
  return write_samples(workdir, {
      f'samples_{step:08d}.png': plotting.image_grid(fake, columns=8),
      f'interpolation_{step:08d}.png': plotting.image_grid(np.asarray(strip),
                                                           columns=interpolation_steps)})


def write_samples(workdir: str, outputs: Dict[str, np.ndarray]) -> List[str]:
  """Writes WORKDIR/samples/NAME for each output (.npy arrays, .png pictures), on process 0;
  returns the paths (on every host)."""
  paths = [fs.join(workdir, 'samples', name) for name in outputs]
  if hosts.is_leader():
    for path, value in zip(paths, outputs.values()):
      if path.endswith('.npy'):
        fs.save_npy(path, value)
      else:
        plotting.save_png(value, path)
  return paths
