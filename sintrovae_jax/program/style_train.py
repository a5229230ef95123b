"""The style variant's training program: progressive phases on the host, one compiled step each.

`train_and_evaluate(config, workdir)` (main.py runs it for `variant='style'`) walks the schedule
of progressive.py from the step of the latest checkpoint: at the start of each resolution it wipes
the optimiser states (as the reference), builds that phase's data stream and pmapped step, and
checkpoints at every phase's end, so a run resumes exactly across resolution switches. The phases
are segments of the shared loop (loop.py), which logs, checkpoints, draws and stops on signals as
for every family.
"""

import dataclasses
import functools
import logging
import math
from typing import Any, Dict, Iterator, List, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sintrovae_jax.core import inference, parallel
from sintrovae_jax.core.train_state import ema_view
from sintrovae_jax.data import tf_images
from sintrovae_jax.evaluators import fid, fid_evaluator as fid_eval, quality as evaluation
from sintrovae_jax.families.style import progressive, step as style_step
from sintrovae_jax.families.style.model import StyleVAE
from sintrovae_jax.families.style.step import StyleTrainState
from sintrovae_jax.io import fs, plotting
from sintrovae_jax.program import (config_lib, loop, outputs, runner, standard,
                                   workdir as workdir_lib)


@dataclasses.dataclass
class StyleExperiment:
  config: ml_collections.ConfigDict
  model: StyleVAE
  phases: List[progressive.Phase]
  state: StyleTrainState
  coefficients: Any  # the equalised-lr coefficients, {'encoder': ..., 'decoder': ...}

  @property
  def total_steps(self) -> int:
    return progressive.total_steps(self.phases)


def build(config: ml_collections.ConfigDict) -> StyleExperiment:
  """Validates `config`, builds the model, schedule and initial state; raises before compiling."""
  config_lib.validate(config, num_devices=jax.device_count())
  model = config_lib.create_style_model(config)
  state, coefficients = style_step.create_style_state(model, jax.random.PRNGKey(config.seed))
  return StyleExperiment(config, model, progressive.phases_from_config(config), state,
                         coefficients)


def make_phase_step(exp: StyleExperiment, phase: progressive.Phase, axis_name=parallel.AXIS):
  """The phase's step on uint8 (or [0, 1] float) batches."""
  return _phase_step(exp.model, phase, _step_settings(exp.config), exp.coefficients, axis_name)


def _step_settings(config) -> tuple:
  """What the config sets of a phase's step: loss weights, mixing, EMA half-life, w average."""
  return (config_lib.style_loss_weights(config), config.style_mixing_prob,
          config.style_ema_half_life_images, config.style_dlatent_avg_beta)


def _phase_step(model, phase, settings, coefficients, axis_name):
  weights, mixing_prob, half_life, dlatent_avg_beta = settings
  step_fn = style_step.make_style_train_step(
      model, weights, phase, coefficients, axis_name, mixing_prob=mixing_prob,
      ema_decay=style_step.ema_decay(phase.batch, half_life), dlatent_avg_beta=dlatent_avg_beta)
  return lambda state, batch: step_fn(state, inference.to_unit_range(batch))


def _phase_program(exp: StyleExperiment, phase: progressive.Phase):
  """The phase's pmapped step: one object per model, phase and step settings, so that a second
  run of a config in this process (a resume, a notebook cell run again) finds it traced and
  compiled in JAX's own caches."""
  return _pmapped_phase_step(exp.model, phase, _step_settings(exp.config),
                             _ByValue(exp.coefficients))


@functools.lru_cache(maxsize=8)
def _pmapped_phase_step(model, phase, settings, coefficients):
  return parallel.pmap_train_step(_phase_step(model, phase, settings, coefficients.tree,
                                              parallel.AXIS))


class _ByValue:
  """A pytree of arrays as a cache key: equal to another when every leaf is, bit for bit."""

  def __init__(self, tree):
    self.tree = tree
    leaves, treedef = jax.tree.flatten(tree)
    arrays = [np.asarray(x) for x in leaves]
    self._key = (treedef, tuple((a.dtype.str, a.shape, a.tobytes()) for a in arrays))

  def __hash__(self):
    return hash(self._key)

  def __eq__(self, other):
    return isinstance(other, _ByValue) and self._key == other._key


# Compiled once per model, size and lod (eager execution of these networks is slow).
_reconstruct = jax.jit(style_step.reconstruct, static_argnames=('model', 'lod'))
_sample = jax.jit(style_step.sample,
                  static_argnames=('model', 'num', 'lod', 'psi', 'cutoff', 'noise'))
_interpolate = jax.jit(style_step.interpolate, static_argnames=('model', 'steps', 'lod'))


@functools.partial(jax.jit, static_argnums=0)
def _squared_errors(model, enc_params, dec_params, images):
  """Per image: the squared error of the full-size reconstruction D(mu), noise off."""
  rec = style_step.reconstruct(model, enc_params, dec_params, images)
  return jnp.sum(jnp.square(rec - images), axis=(1, 2, 3))


def write_pictures(exp: StyleExperiment, state: StyleTrainState, phase: progressive.Phase,
                   step: int, real: np.ndarray, writer, workdir: str) -> None:
  """Real / reconstruction / sample grids at the phase's resolution, from the EMA networks."""
  view = ema_view(state)
  enc, dec = view.encoder_params, view.decoder_params
  key = jax.random.PRNGKey(exp.config.eval_seed)
  alpha = float(progressive.alpha(phase, step - 1)) if phase.fading else None
  rec = _reconstruct(exp.model, enc, dec, jnp.asarray(real), phase.lod, key, alpha)
  fake = _sample(exp.model, dec, state.dlatent_avg, key, len(real), phase.lod, alpha=alpha)
  image = plotting.stack_panels([plotting.image_grid(np.asarray(x)) for x in (real, rec, fake)])
  writer.write_images(step, {'real_rec_sample': image[None]})
  plotting.save_png(image, fs.join(workdir, 'pictures', f'real_rec_sample_{step:08d}.png'))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Optional[Dict[str, Any]]:
  """Trains through the progressive schedule, resuming from `workdir`; returns the final
  evaluation (None if stopped by a signal)."""
  return runner.run_program(config, workdir, build, _train)


def _train(exp: StyleExperiment, workdir: str, preempted, report, cache_dir: str):
  config = exp.config
  with loop.resumed(config, workdir, exp.state, report) as (run, state):
    total = exp.total_steps
    logging.info('Training the style variant on %s from step %d to %d on %d device(s): %s.',
                 config.dataset, run.start, total, jax.device_count(),
                 ', '.join(f'{p.name} x{p.steps} (batch {p.batch})' for p in exp.phases))
    r_state = loop.train(run, _phase_segments(exp, run), parallel.replicate(state), total,
                         preempted, report, cache_dir,
                         'Try a lower style_lod_learning_rate or smaller betas.')
    if r_state is None:
      return None
    final = parallel.unreplicate(r_state)
    results = evaluate(exp, final)
    evaluator = create_fid_evaluator(exp, workdir)
    if evaluator:
      fid_results = evaluator(parallel.replicate(final))
      run.log.write_fid(total, fid_results)
      results.update(fid_results)
    outputs.write_results(run.log, run.writer, workdir, total, results)
    return results


def _phase_segments(exp: StyleExperiment, run: loop.Run) -> Iterator[loop.Segment]:
  """The schedule from the run's start, one loop segment per phase (each ends in a checkpoint,
  so a resume starts at a phase boundary exactly), built when the loop reaches it: that phase's
  data stream and compiled step; at the start of a resolution, fresh optimiser states."""
  config = exp.config
  for phase in exp.phases:
    if phase.end <= run.start:
      continue
    begin = max(run.start, phase.start)
    host_batches = tf_images.progressive_batches(config, phase.resolution, phase.batch,
                                                 phase.index, begin - phase.start)
    first = next(host_batches)
    real = np.asarray(inference.to_unit_range(first[:config.num_grid_images]))
    p_step = _phase_program(exp, phase)
    logging.info('Phase %s: steps %d to %d, global batch %d, learning rate %g, beta_neg %g.',
                 phase.name, begin + 1, phase.end, phase.batch, phase.learning_rate,
                 phase.beta_neg)

    def steps(r_state, phase=phase, begin=begin, batches=runner.chain(first, host_batches),
              p_step=p_step):
      if begin == phase.start and progressive.starts_lod(exp.phases, phase):
        logging.info('Resolution %d px: fresh optimiser states (as the reference at a switch).',
                     phase.resolution)
        r_state = parallel.replicate(style_step.reset_optimizers(
            parallel.unreplicate(r_state), phase, exp.coefficients))
      batches = parallel.prefetch(batches)
      for step in range(begin + 1, phase.end + 1):
        with jax.profiler.StepTraceAnnotation('train', step_num=step):
          r_state, metrics = p_step(r_state, next(batches))
        yield step, metrics, r_state

    yield loop.Segment(
        last=phase.end, run=steps, data=host_batches,
        pictures=lambda state, step, phase=phase, real=real: write_pictures(
            exp, state, phase, step, real, run.writer, run.workdir))


def evaluate(exp: StyleExperiment, state: StyleTrainState) -> Dict[str, float]:
  """Mean per-image squared reconstruction error (images in [0, 1], z = mu, noise off) on the
  evaluation images at full size, of the trained networks and of the EMA ('ema/...')."""
  images = tf_images.eval_images(exp.config)

  def mean_error(view: StyleTrainState):
    per_image = evaluation.batched(
        lambda x: _squared_errors(exp.model, view.encoder_params, view.decoder_params, x),
        images, 64)
    return {'rec_error_deterministic': float(per_image.mean())}

  return runner.on_each_network(mean_error, state)


def create_fid_evaluator(exp: StyleExperiment, workdir: str) -> Optional[fid_eval.FidEvaluator]:
  """FID/KID of the EMA model's samples (full size, noise on, no truncation or mixing, as the
  reference's FID) and of its reconstructions; None without Inception weights."""
  config = exp.config
  if not config.fid_inception_weights:
    logging.info('FID and KID are off: set --config.fid_inception_weights=PATH to measure them.')
    return None
  model = exp.model
  key = jax.random.fold_in(jax.random.PRNGKey(config.eval_seed), 0xF1D)

  def generate(state, indices):  # sample i's latent and noise depend on (eval_seed, i) alone
    dec = ema_view(state).decoder_params
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(indices)
    z = jax.vmap(lambda k: jax.random.normal(k, (model.latent,)))(keys)
    noise_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    images = model.decode(dec, z, model.layer_count - 1, None, noise_keys)
    return fid.quantize_8bit(style_step.to_unit(images))

  def reconstruct(state, images):
    view = ema_view(state)
    return fid.quantize_8bit(style_step.reconstruct(model, view.encoder_params,
                                                    view.decoder_params, images))

  return fid_eval.FidEvaluator(config, model, *standard.fid_image_passes(config),
                               standard.fid_cache_dir(config, workdir), generate=generate,
                               reconstruct=reconstruct)


def fid_from_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """FID, KID and reconstruction FID of the latest checkpoint's EMA model (fid_results.json)."""
  exp = build(config)
  if not config.fid_inception_weights:
    raise config_lib.ConfigError('--mode=fid needs the Inception weights: pass '
                                 '--inception_weights=PATH (README, "FID and KID").')
  state = workdir_lib.latest_checkpoint_state(exp, workdir, 'evaluate')
  results = dict(create_fid_evaluator(exp, workdir)(parallel.replicate(state)),
                 step=int(state.step))
  outputs.write_fid_results(workdir, results)
  return results


def sample_from_checkpoint(config: ml_collections.ConfigDict, workdir: str, num: int = 64,
                           interpolation_steps: int = 10) -> List[str]:
  """Sample grids of the latest checkpoint's EMA model: plain, truncated (psi, cutoff from the
  config), style-mixed, and an interpolation strip; at the resolution the run has reached."""
  exp = build(config)
  state = workdir_lib.latest_checkpoint_state(exp, workdir, 'sample from')
  step = int(state.step)
  lod = progressive.phase_at(exp.phases, max(step - 1, 0)).lod
  dec = ema_view(state).decoder_params
  model, key = exp.model, jax.random.PRNGKey(config.eval_seed)
  k_mix, k_ends = jax.random.split(jax.random.fold_in(key, 1))
  columns = max(1, int(math.sqrt(num)))
  grids = {
      'samples': _sample(model, dec, state.dlatent_avg, key, num, lod),
      'samples_truncated': _sample(model, dec, state.dlatent_avg, key, num, lod,
                                   psi=config.style_truncation_psi,
                                   cutoff=config.style_truncation_cutoff),
      'samples_mixed': _sample(model, dec, state.dlatent_avg, key, num, lod, mix_key=k_mix),
  }
  ends = jax.random.normal(k_ends, (2, model.latent))
  files = {f'{name}_{step:08d}.png': plotting.image_grid(np.asarray(images), columns=columns)
           for name, images in grids.items()}
  strip = _interpolate(model, dec, ends[0], ends[1], interpolation_steps, lod)
  files[f'interpolation_{step:08d}.png'] = plotting.image_grid(np.asarray(strip),
                                                               columns=interpolation_steps)
  return outputs.write_samples(workdir, files)
