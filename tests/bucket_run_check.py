"""Run in a subprocess from an empty folder: a whole tiny image run in the stand-in bucket.

Data (an image folder, an OOD folder) and the FID weights are put in `ram://bucket`, then, with
`--workdir` there: train, resume to a later step, sample from the saved config, FID, OOD, each
through the library's own entry points (in this one process: the ram:// store is its memory).
Prints one JSON line: what the bucket holds, the results, and every file found under the
current folder (which must stay empty).

  python tests/bucket_run_check.py FID_WEIGHTS CHECKPOINT_ARRAYS_FOLDER
"""

import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bucket  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
from PIL import Image  # pylint: disable=g-import-not-at-top

from configs import default, image_folder  # pylint: disable=g-import-not-at-top
from sintrovae_jax.io import fs  # pylint: disable=g-import-not-at-top
from sintrovae_jax.program import ood_run, standard, train, workdir as workdir_lib
from tiny import TINY_IMAGE  # pylint: disable=g-import-not-at-top

ROOT = 'ram://bucket'
WORKDIR = f'{ROOT}/run'
# test_main's tiny image-folder run (the same compiled step, served by the compilation cache).
TINY = dict(TINY_IMAGE, image_size=16, fid_num_samples=4, fid_num_reference=8, fid_batch_size=8,
            kid_subset_size=3, fid_matrix_sqrt='eigh', likelihood_samples=2)


def _png(rng, shape) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(buffer, format='PNG')
  return buffer.getvalue()


def main(weights: str, arrays: str) -> None:
  bucket.register_ram()
  managers = bucket.keep_checkpoint_arrays_in(arrays)
  rng = np.random.default_rng(0)
  for i in range(6):  # nested, as image folders often are
    fs.write_bytes(f'{ROOT}/images/part{i % 2}/{i}.png', _png(rng, (20, 24, 3)))
  for i in range(4):
    fs.write_bytes(f'{ROOT}/ood/{i}.png', _png(rng, (16, 16, 3)) if i % 2 else
                   _png(np.random.default_rng(i), (16, 16)))
  with open(weights, 'rb') as f:
    fs.write_bytes(f'{ROOT}/weights/default_1.pt', f.read())

  config = image_folder.get_config()
  config.update(dict(TINY, data_dir=f'{ROOT}/images',
                     fid_inception_weights=f'{ROOT}/weights/default_1.pt'))
  first = train.train_and_evaluate(config, WORKDIR)
  config.num_train_steps = 6  # a resumed run, restored from the bucket's checkpoint at 4
  resumed = train.train_and_evaluate(config, WORKDIR)
  saved = workdir_lib.load_config(WORKDIR, default.get_config())  # as --mode=sample without --config
  samples = standard.sample_from_checkpoint(saved, WORKDIR, num=4)
  fid_results = standard.fid_from_checkpoint(saved, WORKDIR)
  saved.ood_dataset, saved.ood_data_dir = 'image_folder', f'{ROOT}/ood'
  ood_results = ood_run.ood_from_checkpoint(saved, WORKDIR)
  final = json.loads(fs.read_text(f'{WORKDIR}/eval_results.json'))  # the resumed run's
  fid_keys = ('fid', 'kid', 'fid_rec')
  local = [os.path.join(d, n) for d, _, names in os.walk('.') for n in names]
  print(json.dumps({
      'bucket': bucket.listing(WORKDIR),
      'first': sorted(first), 'resumed_fid': resumed['fid'], 'samples': samples,
      'returned': {k: resumed[k] for k in fid_keys}, 'saved': {k: final[k] for k in fid_keys},
      'fid_step': fid_results['step'], 'ood_auroc': ood_results['kl']['auroc'],
      'num_out': ood_results['num_out'],
      'history': [json.loads(l)['step'] for l in
                  fs.read_text(f'{WORKDIR}/history.jsonl').splitlines() if 'loss_rec' in l],
      'managers': sorted(set(managers)), 'local': local}))


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2])
