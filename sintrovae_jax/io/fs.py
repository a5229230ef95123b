"""One filesystem layer for every file we read or write: local paths and URLs (gs://) alike.

Everything under a run's workdir and a config's data_dir goes through here, so a bucket works
wherever a folder does. URLs pass through untouched; only plain paths are made absolute (and
`~` expanded). It is etils.epath underneath, as for orbax, TFDS and JAX's compilation cache:
gs:// goes through tf.io.gfile when TensorFlow is installed, else through fsspec (gcsfs), so
this module itself never imports TensorFlow.

Whole-file writes (`write_bytes`, `write_text`, `write_json`, `save_npz`) never leave a half
file under the final name: on a local disk they write a temporary file and rename it; on an
object store an object appears whole when its upload ends. Nothing here appends: an object store
cannot, so a growing file (history.jsonl) is rewritten whole by its owner.
"""

import io
import json
import os
import posixpath
from typing import IO, Any, Dict, List

from etils import epath
import numpy as np


def is_url(path: str) -> bool:
  return '://' in str(path)


def absolute(path: str) -> str:
  """A URL as it is; a plain path made absolute."""
  path = os.fspath(path)
  return path if is_url(path) else os.path.abspath(os.path.expanduser(path))


def join(base: str, *parts: str) -> str:
  """`base`/`parts`, with '/' for URLs (whatever the local separator)."""
  base = os.fspath(base)
  return posixpath.join(base, *parts) if is_url(base) else os.path.join(base, *parts)


def dirname(path: str) -> str:
  return posixpath.dirname(path) if is_url(path) else os.path.dirname(path)


def path(p: str) -> epath.Path:
  """The epath.Path of `p` (absolute), for libraries that take one (orbax)."""
  return epath.Path(absolute(p))


def exists(p: str) -> bool:
  return path(p).exists()


def isdir(p: str) -> bool:
  return path(p).is_dir()


def isfile(p: str) -> bool:
  q = path(p)
  return q.exists() and not q.is_dir()


def makedirs(p: str) -> None:
  path(p).mkdir(parents=True, exist_ok=True)


def listdir(p: str) -> List[str]:
  """The names in folder `p`, sorted."""
  return sorted(child.name for child in path(p).iterdir())


def walk_files(folder: str) -> List[str]:
  """Every file under `folder`, recursively, as full paths (URLs for URLs), sorted."""
  root = absolute(folder)
  files = []
  for directory, _, names in path(root).walk():
    files.extend(join(os.fspath(directory), n) for n in names)
  return sorted(files)


def size(p: str) -> int:
  """A file's size in bytes."""
  return int(path(p).stat().length)


def open_file(p: str, mode: str = 'rb') -> IO[Any]:
  """An open file object (for readers that stream: zip archives, PLY headers)."""
  return path(p).open(mode)


def read_bytes(p: str) -> bytes:
  return path(p).read_bytes()


def read_text(p: str) -> str:
  return path(p).read_text()


def read_json(p: str) -> Any:
  return json.loads(read_text(p))


def write_bytes(p: str, data: bytes) -> None:
  """Writes the whole file at once (never half of it under its name); creates its folder."""
  target = path(p)
  target.parent.mkdir(parents=True, exist_ok=True)
  if is_url(os.fspath(target)):
    if target.exists():  # (replaced, not appended to: tf.io.gfile's ram:// appends otherwise)
      target.unlink()
    target.write_bytes(data)  # an object appears whole when its upload ends
    return
  tmp = epath.Path(f'{target}.tmp-{os.getpid()}')
  tmp.write_bytes(data)
  os.replace(tmp, target)


def write_text(p: str, text: str) -> None:
  write_bytes(p, text.encode())


def write_json(p: str, value: Any, **kwargs) -> None:
  write_text(p, json.dumps(value, **kwargs))


def remove(p: str) -> None:
  """Deletes a file or a whole folder; nothing if it is not there."""
  target = path(p)
  if target.is_dir():
    target.rmtree()
  elif target.exists():
    target.unlink()


def move(source: str, target: str) -> None:
  """Renames `source` (a file or folder) to `target`, replacing what is there. An object store
  has no folders to rename: a folder's files are copied one by one, then the source deleted."""
  source, target = absolute(source), absolute(target)
  remove(target)
  makedirs(dirname(target))
  if not (is_url(source) and isdir(source)):
    path(source).rename(path(target))
    return
  for file in walk_files(source):
    destination = target + file[len(source):]
    makedirs(dirname(destination))
    path(file).copy(path(destination))
  remove(source)


def save_npz(p: str, **arrays: np.ndarray) -> None:
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  write_bytes(p, buffer.getvalue())


def load_npz(p: str) -> Dict[str, np.ndarray]:
  with np.load(io.BytesIO(read_bytes(p)), allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


def save_npy(p: str, array: np.ndarray) -> None:
  buffer = io.BytesIO()
  np.save(buffer, array)
  write_bytes(p, buffer.getvalue())


def load_npy(p: str) -> np.ndarray:
  return np.load(io.BytesIO(read_bytes(p)), allow_pickle=False)
