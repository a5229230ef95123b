"""A stand-in bucket for tests: TensorFlow's in-memory `ram://` filesystem, made known to etils.epath.

Everything we read or write goes through etils.epath (sintrovae_jax.io.fs, orbax, JAX's compilation
cache) or tf.io.gfile (TFDS, TensorBoard, tf.data), which is the route a `gs://` path takes when
TensorFlow is installed: epath sends gs:// to tf.io.gfile. `ram://` is served by that same
tf.io.gfile in memory, so a run whose workdir and data are `ram://...` uses exactly the code a
bucket run uses, and any file written around that layer (plain `open`, `os`, PIL, NumPy on a path)
either fails or lands on the local disk, where the tests look for it. The memory belongs to one
process: runs of several processes need a store they all see (test_pod.py says which).

One layer cannot be stood in for: orbax writes checkpoint arrays through TensorStore, which has a
gs:// driver of its own and none for ram://; `keep_checkpoint_arrays_in` says how the tests
handle that.
"""

import os

from etils.epath import backend, gpath, register


def register_ram() -> None:
  """Teaches etils.epath the `ram://` scheme, served by tf.io.gfile (as it serves gs://)."""
  if 'ram://' in register._URI_PREFIXES_TO_CLS:  # pylint: disable=protected-access
    return
  gpath._URI_PREFIXES = gpath._URI_PREFIXES + ('ram://',)  # pylint: disable=protected-access
  gpath._URI_SCHEMES = gpath._URI_SCHEMES | {'ram'}  # pylint: disable=protected-access
  gpath._URI_MAP_ROOT['ram://'] = '/ram/'  # pylint: disable=protected-access
  gpath._PREFIX_TO_BACKEND['ram'] = backend.tf_backend  # pylint: disable=protected-access
  register._URI_PREFIXES_TO_CLS['ram://'] = gpath.PosixGPath  # pylint: disable=protected-access


def listing(root: str):
  """Every file under `root` in the ram:// store, relative to it, sorted."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = []
  for directory, _, names in tf.io.gfile.walk(root):
    files.extend(f'{directory}/{n}'[len(root):].lstrip('/') for n in names)
  return sorted(files)


def keep_checkpoint_arrays_in(folder: str):
  """Orbax writes checkpoint arrays with TensorStore, whose drivers are its own (gs:// has one,
  ram:// has none). So in the stand-in, a checkpoint manager asked for `ram://X` keeps its files
  in `folder/X` instead (a private folder the test owns, outside the working directory). Returns
  the list of directories the managers were asked for, to check they were the bucket's."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  asked = []
  original = ocp.CheckpointManager.__init__

  def init(self, directory, *args, **kwargs):
    asked.append(str(directory))
    if str(directory).startswith('ram://'):
      directory = os.path.join(folder, str(directory)[len('ram://'):])
    original(self, directory, *args, **kwargs)

  ocp.CheckpointManager.__init__ = init
  return asked
