"""The metric log: per-step device metrics summarised every `log_every_steps`, written to
TensorBoard and kept in history.jsonl (rewritten whole at each checkpoint)."""

import json
import logging
from typing import Any, Dict, List

import jax
import numpy as np

from sintrovae_jax.core import parallel
from sintrovae_jax.io import fs, hosts
from sintrovae_jax.program import workdir as workdir_lib
from sintrovae_jax.program.errors import TrainingDiverged


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
