"""Imports a released 3D Soft-IntroVAE checkpoint (e.g. chair_01618_jsd_0.0175.pth) into a workdir.

  python scripts/import_points_checkpoint.py chair_01618_jsd_0.0175.pth --category=chair \\
      --workdir=/tmp/chair
  python main.py --mode=sample --workdir=/tmp/chair --num_samples=16

The file is the reference's plain `model.state_dict()` (VARIANTS.md 3.2), read without torch and
without running any pickled code (sintrovae_jax/interop/torch_archive.py). The workdir gets an orbax
checkpoint of configs/shapenet_points.py's state with those networks (Adam states fresh, step 0)
and its config.json, so `--mode=sample` works on it, and a later training run with the same config
continues from it. Errors print one line and exit 1.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

from configs import shapenet_points  # pylint: disable=g-import-not-at-top
from sintrovae_jax.interop import points_checkpoint  # pylint: disable=g-import-not-at-top
from sintrovae_jax.interop import torch_archive
from sintrovae_jax.io import fs
from sintrovae_jax.program import standard, workdir as workdir_lib


def import_checkpoint(path: str, category: str, workdir: str, data_dir: str = '') -> str:
  """Writes WORKDIR/checkpoints/0 and WORKDIR/config.json; returns the checkpoint folder."""
  config = shapenet_points.get_config(category)
  config.data_dir = data_dir
  enc, dec, stats = points_checkpoint.from_torch_state_dict(points_checkpoint.read_state_dict(path))
  exp = standard.build(config)
  state = exp.state.replace(
      encoder_params=enc, decoder_params=dec, batch_stats=dict(exp.state.batch_stats,
                                                               encoder=stats),
      encoder_opt_state=exp.state.tx.init(enc), decoder_opt_state=exp.state.tx.init(dec))
  # The imported shapes must be the config's: a different z or point count fails here, clearly.
  want = jax.tree.map(lambda a: a.shape, (exp.state.encoder_params, exp.state.decoder_params))
  got = jax.tree.map(lambda a: a.shape, (enc, dec))
  if want != got:
    raise points_checkpoint.StateDictError(f'{path!r} has layer shapes {got}, the config expects '
                                      f'{want}.')
  with workdir_lib.checkpoint_manager(workdir, config) as manager:
    manager.save(0, args=ocp.args.StandardSave(jax.device_get(state)), force=True)
    manager.wait_until_finished()
  fs.write_text(fs.join(workdir, 'config.json'), config.to_json_best_effort(indent=2))
  fs.write_json(fs.join(workdir, 'imported_from.json'),
                {'file': fs.absolute(path), 'category': category}, indent=2)
  return fs.join(fs.absolute(workdir), 'checkpoints', '0')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('path', help='the released .pth file (a plain state dict)')
  parser.add_argument('--category', required=True, help='e.g. chair, table, car, airplane')
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--data_dir', default='', help='the ShapeNet folder, for later training '
                      'or evaluation from this workdir (not needed to sample)')
  args = parser.parse_args(argv)
  try:
    folder = import_checkpoint(args.path, args.category, args.workdir, args.data_dir)
  except (OSError, points_checkpoint.StateDictError, torch_archive.ArchiveFormatError,
          torch_archive.UnsafeArchiveError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(folder)
  return 0


if __name__ == '__main__':
  sys.exit(main())
