"""Out-of-distribution detection with a trained model: score images, compare two sets, plot.

`Scorer` and `score_images` give every score of `likelihood.scores` per image (on every local
device, example i's draws keyed by its index), the input-complexity score (complexity.py: -log2
p(x) less the image's compressed length, bits per dimension) and, when asked, the likelihood
regret (regret.py: what refitting the encoder to the image alone gains); `detection_metrics`
compares two sets (AUROC, AUPR and FPR at 95% TPR, from scikit-learn); `histograms` draws them. TensorFlow-free: the data comes
in as NumPy batches (`ood_run.py` is the `--mode=ood` program that reads it).

Conventions: every score is larger for less likely inputs. AUROC and `aupr_out` treat OOD as the
positive class; `aupr_in` treats in-distribution as positive; `fpr_at_95_tpr` is the fraction of
OOD inputs accepted when the threshold accepts 95% of in-distribution inputs (in-distribution
positive, as in Liang et al. 2018). AUROC 0.5 is chance.
"""

from typing import Any, Dict, Iterable, Optional, Tuple

import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
from sklearn import metrics

from sintrovae_jax.core import inference, parallel
from sintrovae_jax.core.train_state import TrainState
from sintrovae_jax.core.vae import SoftIntroVAE
from sintrovae_jax.evaluators import complexity, fid, likelihood, regret
from sintrovae_jax.io import fs, plotting

SCORES = ('neg_log_px', 'neg_elbo', 'kl', 'rec_error')  # likelihood.scores'
IMAGE_SCORES = SCORES + ('complexity',)                 # and the input-complexity score


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
               recon_loss: str, sigma: float, rows_per_call: int,
               regret_options: Optional[regret.RegretOptions] = None,
               compressor: str = 'png'):
    mesh = parallel.data_mesh(jax.local_devices())
    self._devices = mesh.size
    self._rows = -(-rows_per_call // mesh.size) * mesh.size
    self._state = jax.device_put(state, NamedSharding(mesh, P()))
    split = NamedSharding(mesh, P(parallel.AXIS))
    self.compressor = compressor
    self.names: Tuple[str, ...] = IMAGE_SCORES + (('regret',) if regret_options else ())

    def score(state, images, index):  # this device's rows
      x = inference.to_unit_range(images)
      # Example i's draws depend on its index alone, not on the batch it came in.
      keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(index)
      out = jax.vmap(lambda xi, k: likelihood.scores(model, state, xi[None], k, num_samples,
                                                     recon_loss, sigma))(x, keys)
      if regret_options:  # one row at a time: each refit is the same program on any device count
        out['regret'] = jax.lax.map(lambda a: regret.regret(
            model, state, a[0][None], jax.random.fold_in(a[1], 1), num_samples, recon_loss,
            sigma, regret_options), (x, keys))
      return jax.tree.map(lambda v: v[:, 0], out)

    # Each device scores its own rows as a local program (shard_map): the refit encoders (one per
    # row) then never pass through XLA's partitioner, which computes batched-kernel convolutions
    # differently from one device (by ~1e-4 of -log p(x), the size of a regret).
    self._score = jax.jit(jax.shard_map(score, mesh=mesh, in_specs=(P(), P(parallel.AXIS),
                                                                    P(parallel.AXIS)),
                                        out_specs=P(parallel.AXIS)))
    self._split = split

  def __call__(self, images: np.ndarray, first_index: int) -> Dict[str, np.ndarray]:
    n = len(images)
    pad = -(-max(n, self._rows) // self._devices) * self._devices - n
    images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)]) if pad else images
    index = np.arange(first_index, first_index + len(images))
    out = self._score(self._state, jax.device_put(images, self._split),
                      jax.device_put(index, self._split))
    out = {k: np.asarray(v)[:n] for k, v in out.items()}
    out['complexity'] = complexity.complexity_score(
        out['neg_log_px'], complexity.compressed_bits(images[:n], self.compressor),
        images.shape[1:])
    return out


def score_images(scorer: Scorer, batches: Iterable[np.ndarray]) -> Dict[str, np.ndarray]:
  """Every score of every image of `batches` (this host's), gathered over hosts in order."""
  parts, seen = [], 0
  for batch in batches:
    parts.append(scorer(batch, seen))
    seen += len(batch)
  if not parts:
    return {k: np.zeros((0,)) for k in scorer.names}
  local = {k: np.concatenate([p[k] for p in parts]) for k in scorer.names}
  return {k: fid.gather_hosts(v[:, None])[:, 0] for k, v in local.items()}


def histograms(in_scores: Dict[str, np.ndarray], out_scores: Dict[str, np.ndarray],
               results: Dict[str, Any], folder: str, names: Dict[str, str]) -> None:
  for k in in_scores:
    title = f'{k}: AUROC {results[k]["auroc"]:.3f}, FPR@95 {results[k]["fpr_at_95_tpr"]:.3f}'
    image = plotting.histograms({names['in']: in_scores[k], names['out']: out_scores[k]}, title)
    plotting.save_png(image, fs.join(folder, f'histogram_{k}.png'))
