"""The image, 2D and 3D families' experiment: what a config builds, its pictures, its evaluation
(2D/3D metrics, image metrics, FID/KID) and its sample and FID modes from a checkpoint."""

import dataclasses
import logging
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sintrovae_jax.core import inference, parallel
from sintrovae_jax.core.train_state import (TrainState, create_train_state, ema_view,
                                            learning_rate_schedule, make_optimizer)
from sintrovae_jax.core.vae import SoftIntroVAE
from sintrovae_jax.data import (kinds, numpy_batches, point_files as point_data, tf_images,
                                toy as toy_data)
from sintrovae_jax.evaluators import fid_evaluator as fid_eval, quality as evaluation
from sintrovae_jax.families import registry as families
from sintrovae_jax.families.translation import inference as translation
from sintrovae_jax.io import fs, plotting
from sintrovae_jax.program import config_lib
from sintrovae_jax.program.outputs import write_fid_results, write_samples
from sintrovae_jax.program.runner import on_each_network
from sintrovae_jax.program.workdir import latest_checkpoint_state


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
  points = numpy_batches.load_points(config.data_file) if config.dataset == 'npy' else None
  shape = kinds.data_shape(config, None if points is None else points.shape[1])
  model = config_lib.create_model(config, shape)
  tx = make_optimizer(learning_rate_schedule(config.learning_rate, tuple(config.lr_decay_steps),
                                             config.lr_decay_factor))
  state = create_train_state(model, jax.random.PRNGKey(config.seed), shape, tx,
                             **config_lib.state_options(config))
  return Experiment(config, shape, model, state, points)


def eval_points(exp: Experiment, num: int, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  if exp.points is not None:
    return exp.points[rng.choice(len(exp.points), min(num, len(exp.points)), replace=False)]
  return toy_data.sample(exp.config.dataset, num, rng)


def grid_range(exp: Experiment) -> float:
  if exp.points is None:
    return toy_data.GRID_RANGE[exp.config.dataset]
  return float(np.abs(exp.points).max() * 1.1)


def write_pictures(exp: Experiment, state: TrainState, step: int, real: np.ndarray, writer,
                   workdir: str) -> None:
  """Real / reconstruction / sample grids (images; the translation grid too for the translation
  family) or scatter and density plots (2D); host 0.

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
    r = grid_range(exp)
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
    if families.of(config.variant).class_and_content:
      pictures['translation'] = translation_picture(exp, state, real, real)
  writer.write_images(step, {k: v[None] for k, v in pictures.items()})
  for name, image in pictures.items():
    plotting.save_png(image, fs.join(workdir, 'pictures', f'{name}_{step:08d}.png'))


def translation_picture(exp: Experiment, state: TrainState, identities: np.ndarray,
                        poses: np.ndarray) -> np.ndarray:
  """The translation grid of up to `translation_grid_size` identities (rows) and poses (columns);
  from one set of images, the identities are its first images and the poses the next ones."""
  g = exp.config.translation_grid_size
  if identities is poses and len(poses) >= 2 * g:
    poses = poses[g:]
  identities, poses = identities[:g], poses[:g]
  cells = translation.translation_grid(exp.model, state, identities, poses, exp.config.recon_loss)
  return plotting.image_grid(cells, columns=len(poses) + 1)


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
        exp.model, state, eval_points(exp, config.num_eval_points, config.eval_seed),
        eval_points(exp, 12_800, config.eval_seed + 1), grid_range(exp), config.eval_seed,
        toy_data.MODE_CENTRES.get(config.dataset))
  return evaluation.evaluate_images(exp.model, state, tf_images.eval_images(config),
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
  return (lambda: tf_images.image_pass(config, config.train_split, config.fid_num_reference,
                                            per_host),
          lambda: tf_images.image_pass(config, heldout_split, config.fid_num_samples,
                                            per_host))


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
      real = eval_points(exp, num, config.eval_seed)
      outputs[f'scatter_{step:08d}.png'] = plotting.scatter_2d(real, fake, grid_range(exp),
                                                               f'step {step}')
    return write_samples(workdir, outputs)
  ends = jax.random.normal(key_ends, (2, exp.model.z_dim))
  t = jnp.linspace(0.0, 1.0, interpolation_steps)[:, None]
  strip = inference.decode(exp.model, state, (1 - t) * ends[0] + t * ends[1], config.recon_loss)
  return write_samples(workdir, {
      f'samples_{step:08d}.png': plotting.image_grid(fake, columns=8),
      f'interpolation_{step:08d}.png': plotting.image_grid(np.asarray(strip),
                                                           columns=interpolation_steps)})
