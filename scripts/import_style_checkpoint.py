"""Imports a style Soft-IntroVAE checkpoint of the PyTorch reference into a workdir.

  python scripts/import_style_checkpoint.py ffhq_fid_17.55_epoch_270.pth --workdir=/tmp/ffhq \
      --config.data_dir=/data/ffhq
  python main.py --mode=sample --workdir=/tmp/ffhq

PATH is a reference training checkpoint (`{'models': ..., 'auxiliary': ...}`, VARIANTS.md 1.9: the
released ffhq_fid_17.55_epoch_270.pth / celebahq_fid_18.63_epoch_230.pth, or a model_tmp_*.pth),
read without torch and without running any pickled code (sintrovae_jax/interop/torch_archive.py).
--config (default configs/ffhq256.py; configs/celebahq256_style.py for CelebA-HQ) must describe
the file's architecture: a difference is reported with the values to set.

The workdir gets an orbax checkpoint of the style train state holding the file's networks, its
EMA networks (the sampling model; where the file has none, a copy of the trained networks) and
its running average of w, with fresh optimiser states, at the schedule's last step so that the
run counts as finished; and the config as config.json (main.py's other modes read it and check
its data_dir, hence --config.data_dir above). Errors print one line and exit 1 (2 for
bad flags); the workdir must not hold checkpoints yet.
"""

import logging
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import flags  # pylint: disable=g-import-not-at-top
import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

# pylint: disable=g-import-not-at-top
from sintrovae_jax.families.style import progressive, model as style_model, step as style_step
from sintrovae_jax.interop import style_checkpoint, torch_archive
from sintrovae_jax.program import config_lib
from sintrovae_jax.io import fs  # pylint: disable=g-import-not-at-top
from sintrovae_jax.program import lease
from sintrovae_jax.program import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
from sintrovae_jax.program.config_lib import ConfigError  # pylint: disable=g-import-not-at-top

DEFAULT_CONFIG = os.path.join(ROOT, 'configs', 'ffhq256.py')
REFERENCE_FUSED_FROM = 128  # net.py: fused_scale = resolution >= 128, hard-coded
# Architecture fields (style_checkpoint.ARCHITECTURE_FIELDS) -> the config fields that set them.
CONFIG_FIELDS = {'image_size': 'image_size', 'latent': 'z_dim',
                 'start_channels': 'style_start_channels', 'max_channels': 'style_max_channels',
                 'mapping_layers': 'style_mapping_layers', 'image_channels': 'image_channels'}
REQUIRED_FIELDS = ('variant', 'seed', 'image_size', 'image_channels', 'z_dim',
                   'style_start_channels', 'style_max_channels', 'style_mapping_layers',
                   'style_fused_from', 'style_lod_images', 'style_lod_batch',
                   'style_lod_learning_rate', 'style_lod_beta_neg', 'style_fade_images',
                   'style_vae_images', 'keep_checkpoints')
USER_ERRORS = (OSError, ConfigError, style_checkpoint.StyleCheckpointError,
               torch_archive.ArchiveFormatError, torch_archive.UnsafeArchiveError,
               lease.WorkdirLocked, lease.WorkdirError)
log = logging.getLogger(__name__)


def _field(config, name: str):
  if name not in config:
    raise ConfigError(f'--config has no field {name!r}: use a style config such as '
                      'configs/ffhq256.py.')
  return config[name]


def style_model_from_config(config) -> style_model.StyleVAE:
  """The config's StyleVAE, as training builds it (config_lib.create_style_model)."""
  for name in REQUIRED_FIELDS:
    _field(config, name)
  return config_lib.create_style_model(config)


def _check_architecture(path: str, models, model: style_model.StyleVAE) -> dict:
  found = style_checkpoint.infer_architecture(models)
  want = style_checkpoint.model_architecture(model)
  differing = [k for k in style_checkpoint.ARCHITECTURE_FIELDS if found[k] != want[k]]
  if differing:
    lines = '; '.join(f'{k}: file {found[k]}, config {want[k]}' for k in differing)
    fix = ' '.join(f'--config.{CONFIG_FIELDS[k]}={found[k]}' for k in differing)
    raise style_checkpoint.StyleCheckpointError(
        f'{path!r} holds another architecture than the config ({lines}): pass {fix}, or use the '
        "config the file was trained with (configs/ffhq256.py, configs/celebahq256_style.py).")
  return found


def _existing_checkpoints(workdir: str):
  folder = fs.join(workdir, 'checkpoints')
  return fs.listdir(folder) if fs.isdir(folder) else []


def import_checkpoint(path: str, workdir: str, config) -> str:
  """Writes WORKDIR/checkpoints/STEP and WORKDIR/config.json; returns the checkpoint folder."""
  model = style_model_from_config(config)
  if config.variant != 'style':
    raise ConfigError(f"--config has variant={config.variant!r}; a style checkpoint needs a style "
                      "config (variant='style'), such as configs/ffhq256.py.")
  existing = _existing_checkpoints(workdir)
  if existing:
    raise ConfigError(f'{workdir!r} already holds checkpoints ({", ".join(existing[:5])}); '
                      'importing would mix two runs. Use an empty --workdir.')
  for name in ('style_lod_images', 'style_lod_batch', 'style_lod_learning_rate',
               'style_lod_beta_neg'):
    if len(config[name]) != model.layer_count:
      raise ConfigError(f'--config.{name} has {len(config[name])} entries; image_size '
                        f'{model.image_size} needs {model.layer_count}, one per resolution.')
  step = progressive.total_steps(progressive.phases_from_config(config))
  models = style_checkpoint.read_models(path)
  architecture = _check_architecture(path, models, model)
  converted = style_checkpoint.convert_models(models, model)
  if config.style_fused_from != REFERENCE_FUSED_FROM:
    log.warning('style_fused_from is %d; the reference fuses its convolutions from %d px on, '
                    'so its networks compute otherwise than this model.', config.style_fused_from,
                    REFERENCE_FUSED_FROM)
  held = lease.Lease(workdir).acquire()
  try:
    state, _ = style_step.create_style_state(model, jax.random.PRNGKey(config.seed))
    as_jax = lambda tree: jax.tree.map(jnp.asarray, tree)
    ema = converted['ema']
    if ema is None:
      log.warning('%s holds no EMA networks (discriminator_s, generator_s, mapping_fl_s, '
                      'mapping_tl_s); the sampling model is a copy of its trained networks.',
                      path)
      ema = {'encoder_params': converted['encoder_params'],
             'decoder_params': converted['decoder_params']}
    state = state.replace(step=jnp.asarray(step, jnp.int32),
                          encoder_params=as_jax(converted['encoder_params']),
                          decoder_params=as_jax(converted['decoder_params']),
                          dlatent_avg=jnp.asarray(converted['dlatent_avg']), ema=as_jax(ema))
    log.info('Imported %s (%s) with fresh optimiser states at step %d, the end of the '
                 "config's schedule.", path,
                 ', '.join(f'{k} {v}' for k, v in architecture.items()), step)
    with workdir_lib.checkpoint_manager(workdir, config) as manager:
      manager.save(step, args=ocp.args.StandardSave(state), force=True)
      manager.wait_until_finished()
    fs.write_text(fs.join(workdir, 'config.json'), config.to_json_best_effort(indent=2))
    fs.write_json(fs.join(workdir, 'imported_from.json'),
                  {'file': fs.absolute(path), 'ema': converted['ema'] is not None,
                   'architecture': architecture, 'step': step}, indent=2)
  finally:
    held.release()
  return fs.join(fs.absolute(workdir), 'checkpoints', str(step))


def _parse(argv):
  """(path, workdir, config) from the command line; flags of their own, so that main() can be
  called more than once in a process."""
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', DEFAULT_CONFIG, 'A style config (configs/*.py).',
                                  flag_values=values, sys_argv=argv)
  flags.DEFINE_string('workdir', None, 'Where the checkpoint and config.json go.',
                      flag_values=values)
  rest = values(argv)
  if len(rest) != 2:
    raise flags.Error(f'expected one checkpoint PATH, got {rest[1:]}')
  if not values.workdir:
    raise flags.Error('--workdir is required')
  values.config.keys()  # loads the config file: a missing or broken one fails here
  return rest[1], values.workdir, values.config


def main(argv=None) -> int:
  argv = list(sys.argv if argv is None else [sys.argv[0]] + list(argv))
  try:
    path, workdir, config = _parse(argv)
  except Exception as e:  # pylint: disable=broad-except  # flags and config files: one line
    text = str(e).rstrip().splitlines()[-1] if str(e).strip() else type(e).__name__
    if isinstance(e, (AttributeError, KeyError)):  # ConfigDict's "'x'": an unknown override
      name = text.strip('\'"')
      text = f'--config has no field {name!r}'
    print(f'error: {" ".join(text.split())}\nusage: {os.path.basename(argv[0])} PATH '
          '--workdir=DIR [--config=configs/ffhq256.py]', file=sys.stderr)
    return 2
  try:
    folder = import_checkpoint(path, workdir, config)
  except USER_ERRORS as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(folder)
  return 0


if __name__ == '__main__':
  logging.basicConfig(format='%(levelname)s %(message)s', force=True)  # others: warnings only
  log.setLevel(logging.INFO)
  sys.exit(main())
