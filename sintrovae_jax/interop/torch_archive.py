"""Reads PyTorch weight files without torch and without running code from the file.

`load(path)` returns the tensors of a `torch.save` file (zip or the legacy pre-1.6 format: state
dicts, training checkpoints) or of a TorchScript archive (`torch.jit.save`: its module tree, with
each module's attributes), as NumPy arrays in nested dicts and lists.

Pickle can call any importable function while loading, so a weight file from elsewhere is a
program. `RestrictedUnpickler` calls only the few functions that rebuild tensors and plain
containers. Every other global the pickle names is neither imported nor called: TorchScript
module classes (`__torch__.*`) become inert `ScriptModule` records (the archive's code files are
never read), anything else an inert `Foreign` record (see there for why such files still load).
"""

import collections
import io
import logging
import pickle
import reprlib
import struct
from typing import Any, Dict, List, Tuple
import zipfile

import ml_dtypes
import numpy as np

from sintrovae_jax.io import fs

_STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_SHOWN = 5  # calls named in a warning
log = logging.getLogger(__name__)


class UnsafeArchiveError(pickle.UnpicklingError):
  """The file is a call rather than data, or names an unknown storage or persistent object."""


class ArchiveFormatError(ValueError):
  """The file is not a PyTorch archive this reader understands."""


class ScriptModule(dict):
  """A TorchScript module's attributes (sub-modules, tensors, numbers); `type_name` its class."""
  type_name = ''

  def __setstate__(self, state):  # pickle's BUILD: the module's attribute dict
    self.update(state)


def _script_class(type_name: str) -> type:
  """An inert stand-in for a TorchScript class: pickle's NEWOBJ and BUILD fill a dict."""
  return type('ScriptModule', (ScriptModule,), {'type_name': type_name})


class Foreign:
  """What the pickle builds from a global outside the allow-list, kept as data: never imported,
  never called. `module`.`name` is the global; `args`, `kwargs` what pickle would pass it;
  `state` what BUILD would give its `__setstate__` (an object's `__dict__`); `items`, `entries`
  what APPENDS and SETITEMS would add. `called` tells a call (REDUCE: `module.name(*args)`, not
  made) from an object rebuilt as protocol 2 stores instances of plain classes (NEWOBJ: only
  `cls.__new__(cls)`, then its state), such as the reference tracker's `RunningMeanTorch`.

  Why records, not refusal: the reader is safe because it calls nothing, whatever the file
  names; refusing every foreign global would add no safety, yet lose training checkpoints whose
  tensors are intact (their tracker objects, a numpy scalar, a `Counter`), and an allow-list
  cannot tell a harmless call from a harmful one. So a call deep in a file is kept as a record,
  and `load` logs a warning naming it (a planted `os.system` does not pass silently). A file
  whose top-level object is itself a foreign call holds nothing but that call: a program, not
  weights, so `load` refuses it with UnsafeArchiveError naming the call, which tells the user
  more than "this file has no 'models'".
  """
  __slots__ = ('args', 'kwargs', 'called', 'state', 'items', 'entries')
  module = name = ''

  def __new__(cls, *args, **kwargs):  # NEWOBJ(_EX): cls.__new__(cls, *args, **kwargs)
    record = super().__new__(cls)
    record.args, record.kwargs, record.called = args, kwargs, False
    record.state, record.items, record.entries = None, [], {}
    return record

  def __init__(self, *args):  # only calling the class (REDUCE) gets here, not NEWOBJ
    del args
    self.called = True

  def __setstate__(self, state):  # BUILD
    self.state = state

  def append(self, value):  # APPEND(S)
    self.items.append(value)

  def extend(self, values):
    self.items.extend(values)

  def __setitem__(self, key, value):  # SETITEM(S)
    self.entries[key] = value

  def __repr__(self):
    return (f'Foreign({self.module}.{self.name}, args={reprlib.repr(self.args)}, '
            f'called={self.called}, state={reprlib.repr(self.state)})')


def _foreign_class(module: str, name: str) -> type:
  """An inert stand-in for the global `module.name` (a type, as pickle's NEWOBJ requires)."""
  return type(f'{module}.{name}', (Foreign,), {'__slots__': (), 'module': module, 'name': name})


class _StorageType:
  """Stands for `torch.FloatStorage` and friends inside a persistent id."""

  def __init__(self, name: str):
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
  """`torch._utils._rebuild_tensor_v2` as NumPy: a strided view of the storage, copied."""
  size, stride = tuple(size), tuple(stride)
  if not size:
    return np.array(storage[storage_offset])
  needed = storage_offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
  if any(n == 0 for n in size):
    return np.zeros(size, storage.dtype)
  if needed > storage.size:
    raise ArchiveFormatError(f'A tensor of size {size} and stride {stride} at offset '
                             f'{storage_offset} runs past its storage of {storage.size} elements.')
  view = np.lib.stride_tricks.as_strided(storage[storage_offset:], size,
                                         [s * storage.itemsize for s in stride])
  return np.array(view)


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *unused):
  del requires_grad, backward_hooks
  return data


class _Deferred:
  """A legacy storage whose bytes come after the object pickle."""

  def __init__(self, key):
    self.key = key


class _DeferredTensor:

  def __init__(self, storage, *args):
    self.storage, self.args = storage, args


def _rebuild_maybe_deferred(storage, *args):
  if isinstance(storage, _Deferred):
    return _DeferredTensor(storage, *args)
  return _rebuild_tensor(storage, *args)


def _build_list(values):
  return list(values)


_ALLOWED = {
    ('torch._utils', '_rebuild_tensor'): _rebuild_maybe_deferred,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_maybe_deferred,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch.jit._pickle', 'build_intlist'): _build_list,
    ('torch.jit._pickle', 'build_doublelist'): _build_list,
    ('torch.jit._pickle', 'build_boollist'): _build_list,
    ('torch.jit._pickle', 'build_tensorlist'): _build_list,
}


class RestrictedUnpickler(pickle.Unpickler):
  """Unpickles tensors and plain containers only; `storage(key, dtype, numel)` supplies data."""

  def __init__(self, file, storage, source: str = 'the file'):
    super().__init__(file)
    self._storage = storage
    self._source = source
    self._foreign: Dict[Tuple[str, str], type] = {}

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if module.startswith('__torch__.'):  # a TorchScript class: record its attributes only
      return _script_class(f'{module}.{name}')
    if (module, name) not in self._foreign:  # anything else: an inert record, nothing imported
      self._foreign[(module, name)] = _foreign_class(module, name)
    return self._foreign[(module, name)]

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or not pid or pid[0] != 'storage':
      raise UnsafeArchiveError(f'{self._source} holds an unknown persistent object {pid!r}.')
    _, storage_type, key, _, numel = pid[:5]
    if not isinstance(storage_type, _StorageType):
      raise UnsafeArchiveError(f'{self._source} names an unknown storage type {storage_type!r}.')
    storage = self._storage(str(key), storage_type.dtype, int(numel))
    if len(pid) > 5 and pid[5] is not None:  # a legacy storage view: (view_key, offset, size)
      raise ArchiveFormatError(f'{self._source} uses legacy storage views, which are not '
                               'supported; re-save it with a current torch.save.')
    return storage


def _load_zip(path: str, data: bytes) -> Any:
  with zipfile.ZipFile(io.BytesIO(data)) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith('/data.pkl') or n == 'data.pkl']
    if not pickles:
      raise ArchiveFormatError(f'{path!r} is a zip file without data.pkl: not a PyTorch archive.')
    root = pickles[0][:-len('data.pkl')]
    cache: Dict[str, np.ndarray] = {}

    def storage(key, dtype, numel):
      if key not in cache:
        raw = archive.read(f'{root}data/{key}')
        if len(raw) < numel * dtype.itemsize:
          raise ArchiveFormatError(f'{path!r}: storage {key} holds {len(raw)} bytes, '
                                   f'{numel * dtype.itemsize} expected (truncated file?).')
        cache[key] = np.frombuffer(raw, dtype, numel)
      return cache[key]

    with archive.open(pickles[0]) as f:
      return RestrictedUnpickler(io.BytesIO(f.read()), storage, repr(path)).load()


def _load_legacy(path: str, data: bytes) -> Any:
  """The pre-1.6 `torch.save` format: magic, protocol, sys info, object, keys, raw storages."""
  stream = io.BytesIO(data)

  def plain():
    return RestrictedUnpickler(stream, lambda *a: None, repr(path)).load()

  if plain() != _LEGACY_MAGIC:
    raise ArchiveFormatError(f'{path!r} is neither a zip archive nor a legacy torch.save file.')
  plain()  # protocol version
  plain()  # sys info
  requests: Dict[str, Tuple[np.dtype, int]] = {}

  def record(key, dtype, numel):
    requests[key] = (dtype, numel)
    return _Deferred(key)

  obj = RestrictedUnpickler(stream, record, repr(path)).load()
  keys = plain()
  storages = {}
  for key in keys:
    (numel,) = struct.unpack('<q', stream.read(8))
    dtype = requests.get(key, (np.dtype(np.uint8), 0))[0]
    raw = stream.read(numel * dtype.itemsize)
    if len(raw) != numel * dtype.itemsize:
      raise ArchiveFormatError(f'{path!r} ends inside storage {key} (truncated file?).')
    storages[key] = np.frombuffer(raw, dtype, numel)
  return _resolve(obj, storages)


def _resolve(obj, storages):
  if isinstance(obj, _DeferredTensor):
    return _rebuild_tensor(storages[obj.storage.key], *obj.args)
  if isinstance(obj, Foreign):
    for field in Foreign.__slots__:
      setattr(obj, field, _resolve(getattr(obj, field), storages))
    return obj
  if isinstance(obj, dict):
    out = type(obj)()
    out.update((k, _resolve(v, storages)) for k, v in obj.items())
    return out
  if isinstance(obj, (list, tuple)):
    return type(obj)(_resolve(v, storages) for v in obj)
  return obj


def _foreign_calls(tree: Any) -> List[Foreign]:
  """The calls (`Foreign` records with `called`) anywhere in `tree`, each once."""
  found, seen, stack = [], set(), [tree]
  while stack:  # iterative, and each container once: pickles may nest deeply or loop
    obj = stack.pop()
    if not isinstance(obj, (Foreign, dict, list, tuple)) or id(obj) in seen:
      continue
    seen.add(id(obj))
    if isinstance(obj, Foreign):
      if obj.called:
        found.append(obj)
      stack += [obj.args, obj.kwargs, obj.state, obj.items, obj.entries]
    elif isinstance(obj, dict):
      stack += list(obj.keys()) + list(obj.values())
    else:
      stack += obj
  return found


def _check_calls(path: str, obj: Any) -> None:
  """Refuses a file that is one foreign call; warns of calls inside one (see `Foreign`)."""
  if isinstance(obj, Foreign) and obj.called:
    args = ', '.join(map(reprlib.repr, obj.args))
    raise UnsafeArchiveError(
        f'{path!r} holds no weights, only the call {obj.module}.{obj.name}({args}), which '
        'torch.load would make and which may run code. It was not made; the file is refused.')
  calls = _foreign_calls(obj)
  if calls:
    names = sorted({f'{c.module}.{c.name}' for c in calls})
    more = f' and {len(names) - _SHOWN} more' if len(names) > _SHOWN else ''
    log.warning('%r holds %d call(s) of %s%s, which torch.load would make; this reader kept them '
                'as inert records, never made, and reads only tensors.', path, len(calls),
                ', '.join(names[:_SHOWN]), more)


def load(path: str) -> Any:
  """The contents of a PyTorch file with tensors as NumPy arrays and every other object the file
  names as an inert record; runs nothing from the file (see the module doc and `Foreign`).
  `path` may be a local path or a URL (read whole through `fs`)."""
  data = fs.read_bytes(path)
  if zipfile.is_zipfile(io.BytesIO(data)):
    obj = _load_zip(path, data)
  else:
    try:
      obj = _load_legacy(path, data)
    except (EOFError, struct.error, pickle.UnpicklingError) as e:
      if isinstance(e, UnsafeArchiveError):
        raise
      raise ArchiveFormatError(f'{path!r} is not a PyTorch archive this reader understands ({e}).'
                               ) from e
  _check_calls(path, obj)
  return obj


def flatten(tree: Any, prefix: str = '') -> Dict[str, np.ndarray]:
  """Dotted names -> arrays, as `module.state_dict()` names them (TorchScript modules included)."""
  out = {}
  if isinstance(tree, dict):
    for key, value in tree.items():
      out.update(flatten(value, f'{prefix}{key}.'))
  elif isinstance(tree, np.ndarray):
    out[prefix[:-1]] = tree
  return out
