"""What a run writes for people: config.json and the metric writer, curves, samples, FID and
final results (files from process 0)."""

import logging
from typing import Any, Dict, List

from clu import metric_writers
import jax
import ml_collections
import numpy as np

from sintrovae_jax.io import fs, hosts, plotting
from sintrovae_jax.program.metric_log import MetricLog


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


def write_fid_results(workdir: str, results: Dict[str, Any]) -> None:
  if hosts.is_leader():
    fs.write_json(fs.join(workdir, 'fid_results.json'), results, indent=2, sort_keys=True)


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
