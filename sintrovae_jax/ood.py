"""Out-of-distribution detection with a trained model: score two data sets, compare, plot.

`python main.py --mode=ood --workdir=DIR --config.ood_dataset=NAME` scores the run's evaluation
split (in-distribution) and the OOD set with every score of `likelihood.scores`, and writes
`DIR/ood_results.json` (AUROC, AUPR and FPR at 95% TPR per score, from scikit-learn) and
`DIR/ood/histogram_SCORE.png`.

Conventions: every score is larger for less likely inputs. AUROC and `aupr_out` treat OOD as the
positive class; `aupr_in` treats in-distribution as positive; `fpr_at_95_tpr` is the fraction of
OOD inputs accepted when the threshold accepts 95% of in-distribution inputs (in-distribution
positive, as in Liang et al. 2018). AUROC 0.5 is chance.
"""

import json
import logging
import os
from typing import Any, Dict, Iterable

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from sklearn import metrics

from sintrovae_jax import (config_lib, fid, input_pipeline, likelihood, parallel, plotting,
                           train)
from sintrovae_jax.train_state import TrainState, ema_view
from sintrovae_jax.vae import SoftIntroVAE

SCORES = ('neg_log_px', 'neg_elbo', 'kl', 'rec_error')


def detection_metrics(in_scores: np.ndarray, out_scores: np.ndarray) -> Dict[str, float]:
  """AUROC, AUPR (OOD positive and in-distribution positive) and FPR at 95% TPR."""
  in_scores, out_scores = np.asarray(in_scores, np.float64), np.asarray(out_scores, np.float64)
  scores = np.concatenate([in_scores, out_scores])
  is_out = np.concatenate([np.zeros(len(in_scores)), np.ones(len(out_scores))])
  # In-distribution positive; every threshold kept, so the 95% point is not dropped as collinear.
  fpr, tpr, _ = metrics.roc_curve(1 - is_out, -scores, drop_intermediate=False)
  return {'auroc': float(metrics.roc_auc_score(is_out, scores)),
          'aupr_out': float(metrics.average_precision_score(is_out, scores)),
          'aupr_in': float(metrics.average_precision_score(1 - is_out, -scores)),
          'fpr_at_95_tpr': float(fpr[np.searchsorted(tpr, 0.95, side='left')])}


class Scorer:
  """Per-example scores of host batches, the batch split over this host's devices.

  Every call is padded to `rows_per_call` rows (rounded up to the device count), as
  fid.FeatureExtractor does, so one compiled program serves every batch; padding is dropped.
  """

  def __init__(self, model: SoftIntroVAE, state: TrainState, key: jax.Array, num_samples: int,
               recon_loss: str, sigma: float, rows_per_call: int):
    mesh = parallel.data_mesh(jax.local_devices())
    self._devices = mesh.size
    self._rows = -(-rows_per_call // mesh.size) * mesh.size
    self._state = jax.device_put(state, NamedSharding(mesh, P()))
    split = NamedSharding(mesh, P(parallel.AXIS))

    def score(state, images, index):
      # Example i's draws depend on its index alone, not on the batch it came in.
      x = train.to_unit_range(images)
      per_example = jax.vmap(lambda xi, i: likelihood.scores(
          model, state, xi[None], jax.random.fold_in(key, i), num_samples, recon_loss, sigma))
      return jax.tree.map(lambda v: v[:, 0], per_example(x, index))

    self._score = jax.jit(score, in_shardings=(None, split, split), out_shardings=split)
    self._split = split

  def __call__(self, images: np.ndarray, first_index: int) -> Dict[str, np.ndarray]:
    n = len(images)
    pad = -(-max(n, self._rows) // self._devices) * self._devices - n
    images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)]) if pad else images
    index = np.arange(first_index, first_index + len(images))
    out = self._score(self._state, jax.device_put(images, self._split),
                      jax.device_put(index, self._split))
    return {k: np.asarray(v)[:n] for k, v in out.items()}


def score_images(scorer: Scorer, batches: Iterable[np.ndarray]) -> Dict[str, np.ndarray]:
  """Every score of every image of `batches` (this host's), gathered over hosts in order."""
  parts, seen = [], 0
  for batch in batches:
    parts.append(scorer(batch, seen))
    seen += len(batch)
  if not parts:
    return {k: np.zeros((0,)) for k in SCORES}
  local = {k: np.concatenate([p[k] for p in parts]) for k in SCORES}
  return {k: fid.gather_hosts(v[:, None])[:, 0] for k, v in local.items()}


def ood_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The run's config pointed at the OOD set (same image size and channels)."""
  ood = ml_collections.ConfigDict(config.to_dict())
  ood.dataset = config.ood_dataset
  ood.data_dir = config.ood_data_dir if config.ood_dataset == 'image_folder' else config.data_dir
  return ood


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for an OOD request that cannot run, before anything loads or compiles."""
  if config.get('variant') == 'style':
    raise config_lib.ConfigError('--mode=ood is for the networks of ALGORITHM.md; the style '
                                 'variant has no likelihood estimate here (its decoder draws '
                                 'noise inputs that the estimate would have to integrate out).')
  if not config_lib.is_image_data(config):
    raise config_lib.ConfigError('--mode=ood is for image runs; this run trained on '
                                 f'dataset={config.dataset!r}.')
  if not config.ood_dataset:
    raise config_lib.ConfigError('--mode=ood needs the out-of-distribution set: '
                                 '--config.ood_dataset=NAME (a TFDS name such as svhn_cropped, '
                                 'or image_folder with --config.ood_data_dir=DIR).')
  config_lib.validate_ood(config)


def histograms(in_scores: Dict[str, np.ndarray], out_scores: Dict[str, np.ndarray],
               results: Dict[str, Any], folder: str, names: Dict[str, str]) -> None:
  os.makedirs(folder, exist_ok=True)
  for k in SCORES:
    title = f'{k}: AUROC {results[k]["auroc"]:.3f}, FPR@95 {results[k]["fpr_at_95_tpr"]:.3f}'
    image = plotting.histograms({names['in']: in_scores[k], names['out']: out_scores[k]}, title)
    plotting.save_png(image, os.path.join(folder, f'histogram_{k}.png'))


def ood_from_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Scores the evaluation split and the OOD set with the latest checkpoint; writes the results."""
  check_config(config)
  exp = train.build(config)
  input_pipeline.check_data(config)
  # The weight EMA, when the run kept one, is the model (as for sampling and pictures).
  state = ema_view(train.latest_checkpoint_state(exp, workdir, 'score with'))
  sigma = (config.likelihood_sigma if config.likelihood_sigma > 0 else
           likelihood.default_sigma(config.recon_loss, config.beta_rec, config.beta_kl,
                                    config.recon_reduction, exp.shape))
  batch = max(1, config.fid_batch_size // jax.process_count())
  scorer = Scorer(exp.model, state, jax.random.PRNGKey(config.eval_seed),
                  config.likelihood_samples, config.recon_loss, sigma, rows_per_call=batch)
  limit = config.num_eval_examples
  in_scores = score_images(scorer, input_pipeline.image_pass(
      config, config.eval_split or config.train_split, limit, batch))
  ood = ood_config(config)
  out_scores = score_images(scorer, input_pipeline.image_pass(
      ood, config.ood_split, limit, batch, channels=exp.shape[-1]))
  for name, s in (('in-distribution', in_scores), ('OOD', out_scores)):
    if not len(s['kl']):
      raise input_pipeline.DataError(f'The {name} set gave no images to score.')
  results: Dict[str, Any] = {k: detection_metrics(in_scores[k], out_scores[k]) for k in SCORES}
  images = {'in': len(in_scores['kl']), 'out': len(out_scores['kl'])}
  bpd = {n: float(np.mean(likelihood.bits_per_dim(-s['neg_log_px'], exp.shape, images=True)))
         for n, s in (('in', in_scores), ('out', out_scores))}
  results.update(step=int(state.step), likelihood_samples=config.likelihood_samples,
                 likelihood_sigma=sigma, num_in=images['in'], num_out=images['out'],
                 ood_dataset=config.ood_dataset, bits_per_dim_in=bpd['in'],
                 bits_per_dim_out=bpd['out'],
                 mean_neg_log_px_in=float(np.mean(in_scores['neg_log_px'])),
                 mean_neg_log_px_out=float(np.mean(out_scores['neg_log_px'])))
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'ood_results.json'), 'w') as f:
      json.dump(results, f, indent=2, sort_keys=True)
    histograms(in_scores, out_scores, results, os.path.join(workdir, 'ood'),
               {'in': f'{config.dataset} (in)', 'out': f'{config.ood_dataset} (OOD)'})
  logging.info('OOD results: %s', {k: results[k]['auroc'] for k in SCORES})
  return results
