"""--mode=translate: the translation grid of a trained translation-family run (docs/translation.md).

Identities come from the first images of --source_dir (one per row), poses from the first images of
--target_dir (one per column); either defaults to the run's evaluation images (from one folder, its
first images are the identities and the next ones the poses). Written to
WORKDIR/samples/translation_<step>.png.
"""

from typing import List

import ml_collections
import numpy as np

from sintrovae_jax.core.train_state import ema_view
from sintrovae_jax.data import image_files, tf_images
from sintrovae_jax.families import registry as families
from sintrovae_jax.program import config_lib, standard
from sintrovae_jax.program.outputs import write_samples
from sintrovae_jax.program.workdir import latest_checkpoint_state


def folder_images(config: ml_collections.ConfigDict, folder: str, num: int) -> np.ndarray:
  """The first `num` images (file order) of `folder` ('' = the run's evaluation split), at the
  run's size and channels, float32 in [0, 1]."""
  if folder:
    if not image_files.has_image_files(folder):
      raise config_lib.ConfigError(f'{folder!r} holds no image files '
                                   f'{image_files.IMAGE_EXTENSIONS}: give a folder of images '
                                   '(searched recursively).')
    config = ml_collections.ConfigDict(config.to_dict())
    config.dataset, config.data_dir, config.eval_split = 'image_folder', folder, ''
  split = config.eval_split or config.train_split
  return np.concatenate(list(tf_images.image_pass(config, split, num, batch_per_host=num,
                                                  shard=False)))


def translate_from_checkpoint(config: ml_collections.ConfigDict, workdir: str,
                              source_dir: str = '', target_dir: str = '') -> List[str]:
  """Writes the grid of the latest checkpoint (its weight EMA, when the run kept one)."""
  if not families.of(config.variant).class_and_content:
    raise config_lib.ConfigError(
        f'--mode=translate needs a run of the translation family (variant=\'translation\', '
        f'configs/translation.py); this run is variant={config.variant!r}.')
  exp = standard.build(config)
  state = ema_view(latest_checkpoint_state(exp, workdir, 'translate with'))
  num = config.translation_grid_size
  if source_dir == target_dir:  # one set: its first images are the identities, the next the poses
    identities = poses = folder_images(config, source_dir, 2 * num)
  else:
    identities = folder_images(config, source_dir, num)
    poses = folder_images(config, target_dir, num)
  picture = standard.translation_picture(exp, state, identities, poses)
  return write_samples(workdir, {f'translation_{int(state.step):08d}.png': picture})
