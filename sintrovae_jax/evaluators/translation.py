"""Translation error and code purity on data with known factors (docs/translation.md).

`images[i, v]` is identity i in pose v (data/rendered_objects.py). Translating x_i = images[a, p]
with the pose of x_j = images[b, q] should give images[a, q]: the translation error is the mean
squared error to it over held-out pairs, next to two baselines (return x_i unchanged: right
identity, wrong pose; return x_j unchanged: right pose, wrong identity). Code purity: linear probes
from each code to each factor, fitted on the training images and scored on the held-out ones; a
clean split predicts identity from the class code and pose from the content code, and neither from
the other (accuracy near chance).
"""

from typing import Callable, Dict

import jax
import numpy as np

from sintrovae_jax.core.train_state import TrainState
from sintrovae_jax.core.vae import SoftIntroVAE
from sintrovae_jax.families.translation import inference

PROBE_RIDGE = 1e-2  # the probes' ridge penalty, relative to the features' mean variance


def heldout_pairs(heldout: np.ndarray, num: int, seed: int) -> np.ndarray:
  """[num, 4] rows (a, p, b, q): two held-out images (a, p) and (b, q) with a != b and p != q."""
  cells = np.argwhere(heldout)
  other = (cells[:, None, 0] != cells[None, :, 0]) & (cells[:, None, 1] != cells[None, :, 1])
  if not other.any():  # (else the draws below would never end)
    raise ValueError('translation pairs need two held-out images that differ in both identity '
                     'and pose')
  rng = np.random.default_rng(seed)
  rows = []
  while len(rows) < num:
    (a, p), (b, q) = cells[rng.choice(len(cells), 2, replace=False)]
    if a != b and p != q:
      rows.append((a, p, b, q))
  return np.array(rows)


def translation_error(translate: Callable[[np.ndarray, np.ndarray], np.ndarray],
                      images: np.ndarray, pairs: np.ndarray, batch: int = 64) -> Dict[str, float]:
  """Mean squared error (per pixel) of `translate(x_class, x_content)` to the true images, and of
  the two baselines."""
  a, p, b, q = pairs.T
  x_i, x_j, truth = images[a, p], images[b, q], images[a, q]
  out = np.concatenate([np.asarray(translate(x_i[s:s + batch], x_j[s:s + batch]))
                        for s in range(0, len(pairs), batch)])
  mse = lambda x: float(np.mean(np.square(np.asarray(x, np.float64) - truth)))
  return {'translation_mse': mse(np.clip(out, 0.0, 1.0)), 'baseline_class_image_mse': mse(x_i),
          'baseline_content_image_mse': mse(x_j)}


def probe_accuracy(train_x, train_y, test_x, test_y, num_classes: int) -> float:
  """A linear probe: ridge regression from standardised features to one-hot labels (closed form),
  the class of the largest output; its accuracy on the test set."""
  mean, std = train_x.mean(0), train_x.std(0) + 1e-8
  f = lambda x: np.concatenate([(x - mean) / std, np.ones((len(x), 1))], axis=1)
  a = f(np.asarray(train_x, np.float64))
  target = np.eye(num_classes)[train_y]
  w = np.linalg.solve(a.T @ a + PROBE_RIDGE * len(a) * np.eye(a.shape[1]), a.T @ target)
  return float(np.mean(np.argmax(f(np.asarray(test_x, np.float64)) @ w, axis=1) == test_y))


def code_purity(codes: Callable[[np.ndarray], tuple], images: np.ndarray,
                heldout: np.ndarray) -> Dict[str, float]:
  """Probe accuracies `probe_<code>_to_<factor>` for both codes and both factors, and chance."""
  num_ids, num_poses = heldout.shape
  ids, poses = np.meshgrid(np.arange(num_ids), np.arange(num_poses), indexing='ij')
  flat = images.reshape((-1,) + images.shape[2:])
  class_codes, content_codes = (np.asarray(c) for c in codes(flat))
  held = heldout.ravel()
  results = {}
  for code_name, code in (('class', class_codes), ('content', content_codes)):
    for factor, labels, n in (('identity', ids.ravel(), num_ids), ('pose', poses.ravel(),
                                                                    num_poses)):
      results[f'probe_{code_name}_to_{factor}'] = probe_accuracy(
          code[~held], labels[~held], code[held], labels[held], n)
  results.update(chance_identity=1.0 / num_ids, chance_pose=1.0 / num_poses)
  return results


# The state is an argument, not a constant: another state reuses the compiled programs.
_translate = jax.jit(inference.translate, static_argnums=(0, 4))
_codes = jax.jit(inference.codes, static_argnums=0)


def evaluate(model: SoftIntroVAE, state: TrainState, images: np.ndarray, heldout: np.ndarray,
             recon_loss: str = 'mse', num_pairs: int = 256, seed: int = 0) -> Dict[str, float]:
  """Translation error with both baselines, and code purity, of a trained translation model."""
  translate = lambda xi, xj: _translate(model, state, xi, xj, recon_loss)
  codes = lambda x: _codes(model, state, x)
  scores = translation_error(translate, images, heldout_pairs(heldout, num_pairs, seed))
  scores.update(code_purity(codes, images, heldout))
  return scores
