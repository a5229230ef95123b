"""`--mode=ood`: score a run's evaluation split and an out-of-distribution set, write the results.

`python main.py --mode=ood --workdir=DIR --config.ood_dataset=NAME` scores the run's evaluation
split (in-distribution) and the OOD set with every score of ood.py (likelihood, ELBO, KL,
reconstruction error, input complexity, likelihood regret), and
writes `DIR/ood_results.json` (AUROC, AUPR and FPR at 95% TPR per score) and
`DIR/ood/histogram_SCORE.png`.
"""

import logging
from typing import Any, Dict

import jax
import ml_collections
import numpy as np

from sintrovae_jax.core.train_state import ema_view
from sintrovae_jax.data import kinds, pipeline as input_pipeline, tf_images
from sintrovae_jax.evaluators import likelihood, regret
from sintrovae_jax.evaluators.ood import Scorer, detection_metrics, histograms, score_images
from sintrovae_jax.io import fs, hosts
from sintrovae_jax.program import config_lib, registry as programs, standard, workdir as workdir_lib


def ood_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The run's config pointed at the OOD set (same image size and channels)."""
  ood = ml_collections.ConfigDict(config.to_dict())
  ood.dataset = config.ood_dataset
  ood.data_dir = config.ood_data_dir if config.ood_dataset == 'image_folder' else config.data_dir
  return ood


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for an OOD request that cannot run, before anything loads or compiles."""
  no_ood = programs.of(config).no_ood
  if no_ood:
    raise config_lib.ConfigError(f'--mode=ood is for the networks of ALGORITHM.md; {no_ood}.')
  if not kinds.is_image_data(config):
    raise config_lib.ConfigError('--mode=ood is for image runs; this run trained on '
                                 f'dataset={config.dataset!r}.')
  if not config.ood_dataset:
    raise config_lib.ConfigError('--mode=ood needs the out-of-distribution set: '
                                 '--config.ood_dataset=NAME (a TFDS name such as svhn_cropped, '
                                 'or image_folder with --config.ood_data_dir=DIR).')
  config_lib.validate_ood(config)


def ood_from_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Scores the evaluation split and the OOD set with the latest checkpoint; writes the results."""
  check_config(config)
  exp = standard.build(config)
  input_pipeline.check_data(config)
  # The weight EMA, when the run kept one, is the model (as for sampling and pictures).
  state = ema_view(workdir_lib.latest_checkpoint_state(exp, workdir, 'score with'))
  sigma = (config.likelihood_sigma if config.likelihood_sigma > 0 else
           likelihood.default_sigma(config.recon_loss, config.beta_rec, config.beta_kl,
                                    config.recon_reduction, exp.shape))
  batch = max(1, config.fid_batch_size // jax.process_count())
  regret_options = (regret.RegretOptions(config.ood_regret_steps, config.ood_regret_learning_rate,
                                         config.ood_regret_weight_decay)
                    if config.ood_regret_steps else None)
  scorer = Scorer(exp.model, state, jax.random.PRNGKey(config.eval_seed),
                  config.likelihood_samples, config.recon_loss, sigma, rows_per_call=batch,
                  regret_options=regret_options, compressor=config.ood_compressor)
  limit = config.num_eval_examples
  in_scores = score_images(scorer, tf_images.image_pass(
      config, config.eval_split or config.train_split, limit, batch))
  ood = ood_config(config)
  out_scores = score_images(scorer, tf_images.image_pass(
      ood, config.ood_split, limit, batch, channels=exp.shape[-1]))
  for name, s in (('in-distribution', in_scores), ('OOD', out_scores)):
    if not len(s['kl']):
      raise kinds.DataError(f'The {name} set gave no images to score.')
  results: Dict[str, Any] = {k: detection_metrics(in_scores[k], out_scores[k])
                             for k in scorer.names}
  images = {'in': len(in_scores['kl']), 'out': len(out_scores['kl'])}
  bpd = {n: float(np.mean(likelihood.bits_per_dim(-s['neg_log_px'], exp.shape, images=True)))
         for n, s in (('in', in_scores), ('out', out_scores))}
  results.update(step=int(state.step), likelihood_samples=config.likelihood_samples,
                 likelihood_sigma=sigma, num_in=images['in'], num_out=images['out'],
                 ood_dataset=config.ood_dataset, bits_per_dim_in=bpd['in'],
                 bits_per_dim_out=bpd['out'],
                 mean_neg_log_px_in=float(np.mean(in_scores['neg_log_px'])),
                 mean_neg_log_px_out=float(np.mean(out_scores['neg_log_px'])),
                 ood_regret_steps=config.ood_regret_steps, ood_compressor=config.ood_compressor)
  if hosts.is_leader():
    fs.write_json(fs.join(workdir, 'ood_results.json'), results, indent=2, sort_keys=True)
    histograms(in_scores, out_scores, results, fs.join(workdir, 'ood'),
               {'in': f'{config.dataset} (in)', 'out': f'{config.ood_dataset} (OOD)'})
  logging.info('OOD results (AUROC): %s', {k: results[k]['auroc'] for k in scorer.names})
  return results
