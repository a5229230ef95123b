"""Train Soft-IntroVAE: `python main.py --config=configs/toy2d.py:8gaussians --workdir=/tmp/run`.

`--mode=sample` writes generated examples and an interpolation strip from the latest checkpoint
in --workdir; `--mode=fid` measures its FID, KID and reconstruction FID (fid_results.json);
`--mode=ood --ood_dataset=NAME` scores the evaluation split against an out-of-distribution set
(ood_results.json); `--mode=translate` writes the translation family's grid (identities from
--source_dir, poses from --target_dir). All use the run's saved config unless --config is given.
"""

import json
import logging
import sys

from absl import app, flags, logging as absl_logging
import jax
from ml_collections import config_flags

from configs import default as default_config
from sintrovae_jax.io import hosts
from sintrovae_jax.program import (errors, lease, ood_run, registry as programs, translate_run,
                                   workdir as workdir_lib)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'A configs/*.py file (e.g. configs/celebahq.py).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Where checkpoints, logs, pictures and results go.')
flags.DEFINE_enum('mode', 'train', ['train', 'sample', 'fid', 'ood', 'translate'],
                  'Train (and evaluate), sample, measure FID/KID, score out-of-distribution '
                  'data, or translate (the translation family) with the latest checkpoint.')
flags.DEFINE_integer('num_samples', 64, '--mode=sample: how many examples to generate.')
flags.DEFINE_string('inception_weights', '', '--mode=fid: the FID Inception weights file '
                    '(overrides config.fid_inception_weights).')
flags.DEFINE_string('ood_dataset', '', '--mode=ood: the OOD set, a TFDS name or image_folder '
                    '(overrides config.ood_dataset).')
flags.DEFINE_string('ood_data_dir', '', '--mode=ood: the OOD image folder (overrides '
                    'config.ood_data_dir).')
flags.DEFINE_integer('ood_regret_steps', -1, '--mode=ood: likelihood regret refit steps per image '
                     '(0 = off; the authors: 100; -1 = the config\'s).')
flags.DEFINE_string('source_dir', '', '--mode=translate: images whose identity (class) is kept, '
                    'one per row ("" = the evaluation images).')
flags.DEFINE_string('target_dir', '', '--mode=translate: images whose pose (content) is taken, '
                    'one per column ("" = the evaluation images).')
flags.DEFINE_string('coordinator_address', '', 'Multi-process GPU/CPU runs: host:port of process 0.')
flags.DEFINE_integer('num_processes', 0, 'Multi-process runs: how many processes.')
flags.DEFINE_integer('process_id', -1, 'Multi-process runs: this process, 0..num_processes-1.')
flags.DEFINE_bool('verbose', False, 'Show the Python traceback of configuration, data, '
                  'checkpoint and divergence errors too.')
flags.mark_flags_as_required(['workdir'])


class _QuietLibraries(logging.Filter):
  """Keeps orbax's per-save INFO chatter out of the training log (its warnings still show)."""

  def filter(self, record):
    return record.levelno >= logging.WARNING or '/orbax/' not in record.pathname


def _fail(message: str, code: int) -> None:
  # One write, its newline included: print() writes the line and its end apart, and a background
  # thread's output (Gloo's, on several hosts) could land between them, inside the error line.
  sys.stderr.write(f'error: {message}\n')
  sys.stderr.flush()
  sys.exit(code)


def _parse_flags(argv):
  """absl's flag parsing, with the config file loaded here: its errors end in one message."""
  try:
    argv = FLAGS(argv)
    if FLAGS.config is not None:
      FLAGS.config.keys()  # loads it: a missing or broken file, a misspelled --config.FIELD
    return argv
  except Exception as e:  # pylint: disable=broad-except
    if '--verbose' in argv:
      raise
    text = str(e)
    if 'Traceback (most recent call last)' in text:  # the config file's own error: its last line
      text = text.rstrip().splitlines()[-1]
    if isinstance(e, (AttributeError, KeyError)):  # ConfigDict's "'x'\nDid you mean ..."
      text = '--config has no field ' + text.strip('\'"').replace('\\n', ' ').replace("\\'", "'")
    _fail(f'{" ".join(text.split())} (add --verbose for the traceback)', 2)


def main(argv):
  try:
    _main(argv)
  except errors.USER_ERRORS as e:
    if FLAGS.verbose:
      raise
    _fail(str(e), 1)
  except Exception as e:  # pylint: disable=broad-except  # storage faults: which, why, the fix
    failure = lease.storage_failure(e)
    if FLAGS.verbose or failure is None:
      raise
    where = f': {failure.filename}' if failure.filename else f' (under {FLAGS.workdir})'
    _fail(f'{failure.strerror or failure}{where}. {lease.fix_for(failure)} The checkpoints '
          'written so far are kept.', 1)


def _main(argv):
  del argv
  workdir_lib.SHOW_STORAGE_TRACEBACKS = FLAGS.verbose
  for handler in logging.getLogger().handlers:
    handler.addFilter(_QuietLibraries())
  # First of all (before any other JAX call or signal handler): find the other hosts.
  hosts.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if not hosts.is_leader():  # process 0 tells the story; the others speak up for problems only
    logging.getLogger().setLevel(logging.WARNING)
    absl_logging.set_verbosity(absl_logging.WARNING)
  if FLAGS.mode in ('sample', 'fid', 'ood', 'translate'):
    config = FLAGS.config or workdir_lib.load_config(FLAGS.workdir, default_config.get_config())
    if FLAGS.mode == 'translate':
      for path in translate_run.translate_from_checkpoint(config, FLAGS.workdir, FLAGS.source_dir,
                                                          FLAGS.target_dir):
        logging.info('Wrote %s', path)
      return
    if FLAGS.mode == 'ood':
      config.ood_dataset = FLAGS.ood_dataset or config.ood_dataset
      config.ood_data_dir = FLAGS.ood_data_dir or config.ood_data_dir
      if FLAGS.ood_regret_steps >= 0:
        config.ood_regret_steps = FLAGS.ood_regret_steps
      results = ood_run.ood_from_checkpoint(config, FLAGS.workdir)
      if jax.process_index() == 0:
        print(json.dumps({k: v for k, v in results.items() if isinstance(v, dict)},
                         sort_keys=True))
      return
    if FLAGS.mode == 'sample':
      for path in programs.sample_from_checkpoint(config, FLAGS.workdir, FLAGS.num_samples):
        logging.info('Wrote %s', path)
      return
    if FLAGS.inception_weights:
      config.fid_inception_weights = FLAGS.inception_weights
    results = programs.fid_from_checkpoint(config, FLAGS.workdir)
    if jax.process_index() == 0:
      print(json.dumps(results, sort_keys=True))
    return
  if FLAGS.config is None:
    raise app.UsageError('--config is required to train, e.g. --config=configs/toy2d.py:8gaussians')
  programs.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
