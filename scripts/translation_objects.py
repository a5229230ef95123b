"""Unsupervised image translation on generated objects with known factors (docs/translation.md).

Renders the proving ground (data/rendered_objects.py: 4 shapes x 4 colours = 16 identities by
default, --shapes and --colours, each in 16 poses, 32 px), writes its training images and its
held-out images (one in four, pose = identity mod 4) as two folders, trains the translation family
on the training folder through the library's training program (configs/translation.py with a
CPU-sized network), then scores the final model on held-out pairs: translation error with both
baselines, and code purity. Writes WORKDIR/translation_results.json and
WORKDIR/translation_grid.png (held-out identities down the left, held-out poses along the top); a
rerun with the same --workdir resumes.

  python scripts/translation_objects.py --workdir=/tmp/translation --steps=4000
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from configs import translation  # pylint: disable=g-import-not-at-top
from sintrovae_jax.core.train_state import ema_view  # pylint: disable=g-import-not-at-top
from sintrovae_jax.data import rendered_objects  # pylint: disable=g-import-not-at-top
from sintrovae_jax.evaluators import translation as scores  # pylint: disable=g-import-not-at-top
from sintrovae_jax.families.translation import inference  # pylint: disable=g-import-not-at-top
from sintrovae_jax.io import fs, plotting  # pylint: disable=g-import-not-at-top
from sintrovae_jax.program import standard, train  # pylint: disable=g-import-not-at-top
from sintrovae_jax.program import workdir as workdir_lib  # pylint: disable=g-import-not-at-top


def config_for(data_dir: str, steps: int, size: int, class_dim: int, content_dim: int):
  """configs/translation.py at CPU size: encoders 8-16-32, AdaIN 64-32-16, the given codes."""
  c = translation.get_config('cars3d')
  c.data_dir, c.image_size = data_dir, size
  c.channels = (8, 16, 32)
  c.translation_class_dim, c.translation_content_dim = class_dim, content_dim
  c.z_dim = class_dim + content_dim
  c.translation_generator_channels = (64, 32, 16)
  c.translation_modulation_width = 64
  c.batch_size = 16
  c.beta_kl, c.beta_rec, c.beta_neg = 1.0, 1.0, 256.0
  c.learning_rate = 3e-4
  c.num_train_steps, c.num_vae_steps = steps, min(500, steps)
  c.log_every_steps, c.sample_every_steps = 250, 1000
  c.checkpoint_every_steps = 1000
  c.shuffle_buffer, c.num_grid_images, c.num_eval_examples = 256, 16, 64
  c.compilation_cache_dir = ''
  return c


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--steps', type=int, default=4000)
  parser.add_argument('--size', type=int, default=32)
  parser.add_argument('--pairs', type=int, default=512)
  parser.add_argument('--shapes', type=int, default=4, help='identities: shapes x colours')
  parser.add_argument('--colours', type=int, default=4)
  parser.add_argument('--class_dim', type=int, default=16)
  parser.add_argument('--content_dim', type=int, default=16)
  args = parser.parse_args()
  images = rendered_objects.proving_ground(args.shapes, args.colours, 16, args.size)
  heldout = rendered_objects.heldout_mask(*images.shape[:2])
  train_dir, _ = rendered_objects.write_folders(images, heldout, fs.join(args.workdir, 'data'))
  config = config_for(train_dir, args.steps, args.size, args.class_dim, args.content_dim)
  run = fs.join(args.workdir, 'run')
  start = time.time()
  if train.train_and_evaluate(config, run) is None:
    sys.exit('Stopped by a signal; its step is saved: rerun the same command to go on.')
  seconds = time.time() - start
  exp = standard.build(config)
  state = ema_view(workdir_lib.latest_checkpoint_state(exp, run, 'score'))
  results = scores.evaluate(exp.model, state, images, heldout, num_pairs=args.pairs)
  results.update(steps=int(state.step), train_seconds=round(seconds, 1),
                 devices=jax.device_count(), class_dim=args.class_dim,
                 content_dim=args.content_dim)
  # The grid: held-out images of 5 identities (rows) and of 5 poses (columns), spread over the
  # identities (shape-major: 0, 5, 10, 15, 3 of 16 show four shapes in four colours).
  n = len(images)
  picks = [0, 5, 10, 15, 3] if n >= 16 else list(range(min(n, 5)))
  rows = [(i, int(np.flatnonzero(heldout[i])[0])) for i in picks]
  cols = [(j, int(np.flatnonzero(heldout[j])[1])) for j in picks[1:] + picks[:1]]
  grid = inference.translation_grid(exp.model, state, np.stack([images[i, p] for i, p in rows]),
                                    np.stack([images[j, q] for j, q in cols]))
  truth = np.concatenate([np.ones_like(images[0, :1]),
                          np.stack([images[j, q] for j, q in cols])])
  truth = np.concatenate([truth] + [np.concatenate([images[i, p][None]] +
                                                   [images[i, q][None] for _, q in cols])
                                    for i, p in rows])
  plotting.save_png(plotting.stack_panels([plotting.image_grid(grid, columns=6),
                                           plotting.image_grid(truth, columns=6)]),
                    fs.join(args.workdir, 'translation_grid.png'))
  fs.write_json(fs.join(args.workdir, 'translation_results.json'), results, indent=2,
                sort_keys=True)
  print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == '__main__':
  main()
