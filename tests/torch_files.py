"""Writes PyTorch-format files without torch, for the reader's tests: zip and legacy layouts.

Pickles name torch's functions by string (GLOBAL opcodes), so nothing of torch is imported.
"""

import collections
import io
import pickle
import struct
import types
import zipfile

import numpy as np

STORAGE_NAMES = {np.dtype(np.float32): 'FloatStorage', np.dtype(np.float64): 'DoubleStorage',
                 np.dtype(np.float16): 'HalfStorage', np.dtype(np.int64): 'LongStorage',
                 np.dtype(np.uint8): 'ByteStorage'}


class Global:
  """Pickled as GLOBAL 'module name': any function, importable here or not."""

  def __init__(self, module, name):
    self.module, self.name = module, name

  def __call__(self, *args):  # pickle checks that a reduce function is callable
    raise TypeError('a stand-in for a function, not the function')


class Call:
  """Pickled as `Global(...)(*args)` (REDUCE)."""

  def __init__(self, fn: Global, *args):
    self.fn, self.args = fn, args

  def __reduce__(self):
    return self.fn, self.args


class Object:
  """Pickled as protocol 2 pickles an instance of a plain class (`copyreg.__newobj__`): GLOBAL,
  NEWOBJ with no arguments, then BUILD with `state` (the instance's `__dict__`)."""

  def __init__(self, cls: Global, state):
    self.cls, self.state = cls, state


class ModuleTrap(types.ModuleType):
  """Put in sys.modules under a module's name: every attribute lookup is recorded in
  `ModuleTrap.looked_up` and fails, so a reader that imports or uses a class a file names shows."""
  looked_up = []

  def __getattribute__(self, name):
    ModuleTrap.looked_up.append(name)
    raise AssertionError(f'the reader looked up {name!r} of a module it must not use')


class Storage:
  def __init__(self, key, array):
    self.key, self.array = key, array


class _Pickler(pickle._Pickler):  # pylint: disable=protected-access
  dispatch = pickle._Pickler.dispatch.copy()  # pylint: disable=protected-access

  def __init__(self, file, legacy):
    super().__init__(file, protocol=2)
    self.legacy = legacy

  def save_fake_global(self, obj):
    self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())

  dispatch[Global] = save_fake_global

  def save_object(self, obj):
    self.save(obj.cls)
    self.save(())
    self.write(pickle.NEWOBJ)
    self.memoize(obj)
    self.save(obj.state)
    self.write(pickle.BUILD)

  dispatch[Object] = save_object

  def persistent_id(self, obj):
    if isinstance(obj, Storage):
      pid = ('storage', Global('torch', STORAGE_NAMES[obj.array.dtype]), obj.key, 'cpu',
             obj.array.size)
      return pid + (None,) if self.legacy else pid
    return None


def tensor(storage: Storage, shape, stride=None, offset=0):
  """A tensor record over `storage` (C-contiguous strides unless given)."""
  if stride is None:
    stride = tuple(int(s) for s in np.cumprod((1,) + tuple(shape[::-1]))[:-1][::-1]) if shape else ()
  return Call(Global('torch._utils', '_rebuild_tensor_v2'), storage, offset, tuple(shape),
              tuple(stride), False, collections.OrderedDict())


def state_dict(arrays, storage_prefix: str = ''):
  """{name: ndarray} -> an OrderedDict of tensor records, one storage each, keyed
  `storage_prefix` + index (give each state dict of one file its own prefix)."""
  return collections.OrderedDict(
      (k, tensor(Storage(f'{storage_prefix}{i}', np.ascontiguousarray(v).ravel()), v.shape))
      for i, (k, v) in enumerate(arrays.items()))


# The losses the style reference's training puts in its LossTracker.
TRACKED = ('loss_e', 'loss_d', 'rec_loss', 'real_kl', 'fake_kl', 'kl_diff', 'expelbo_f',
           'expelbo_r')


def reference_auxiliary(rng, encoder_groups, decoder_groups, epoch=270, pending=3):
  """The `auxiliary` part of the style reference's `Checkpointer.save`: each LREQAdam's
  `state_dict()` (per parameter `step` and an `exp_avg_sq` tensor; one group of shapes per list),
  ComboMultiStepLR's `{name: {'last_epoch': epoch}}`, and `LossTracker.state_dict()`, whose
  `tracks` hold `tracker.RunningMeanTorch` objects: protocol 2 instances of a class outside any
  allow-list, each `values` holding the `pending` [1]-tensors since the last `register_means`."""

  def optimiser(groups, name):
    state, param_groups, first = {}, [], 0
    for shapes in groups:
      ids = list(range(first, first + len(shapes)))
      for i, shape in zip(ids, shapes):
        sq = rng.uniform(size=shape).astype(np.float32)
        state[i] = {'step': 1000 * epoch, 'exp_avg_sq': tensor(Storage(f'{name}_{i}', sq.ravel()),
                                                               shape)}
      param_groups.append({'lr': 0.0015, 'beta_2': 0.99, 'eps': 1e-8, 'weight_decay': 0,
                           'initial_lr': 0.0015, 'params': ids})
      first += len(shapes)
    return {'state': state, 'param_groups': param_groups}

  def running_mean(name):
    values = [tensor(Storage(f'tracker_{name}_{i}', rng.normal(size=1).astype(np.float32)), (1,))
              for i in range(pending)]
    return Object(Global('tracker', 'RunningMeanTorch'), {'values': values})

  tracker = {
      'tracks': collections.OrderedDict((n, running_mean(n)) for n in TRACKED),
      'epochs': [float(e) for e in range(epoch)],
      'means_over_epochs': collections.OrderedDict(
          (n, [float(v) for v in rng.normal(size=epoch)]) for n in TRACKED)}
  return {'encoder_optimizer': optimiser(encoder_groups, 'encoder_optimizer'),
          'decoder_optimizer': optimiser(decoder_groups, 'decoder_optimizer'),
          'scheduler': {'encoder_optimizer': {'last_epoch': epoch},
                        'decoder_optimizer': {'last_epoch': epoch}},
          'tracker': tracker}


def _storages(obj, found):
  if isinstance(obj, Storage):
    found[obj.key] = obj.array
  elif isinstance(obj, Call):
    for a in obj.args:
      _storages(a, found)
  elif isinstance(obj, Object):
    _storages(obj.state, found)
  elif isinstance(obj, dict):
    for v in obj.values():
      _storages(v, found)
  elif isinstance(obj, (list, tuple)):
    for v in obj:
      _storages(v, found)
  return found


def dumps(obj, legacy=False) -> bytes:
  buffer = io.BytesIO()
  _Pickler(buffer, legacy).dump(obj)
  return buffer.getvalue()


def save_zip(obj, path, root='archive'):
  """torch.save's zip layout: ROOT/data.pkl and ROOT/data/KEY."""
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr(f'{root}/data.pkl', dumps(obj))
    for key, array in _storages(obj, {}).items():
      z.writestr(f'{root}/data/{key}', array.tobytes())
    z.writestr(f'{root}/version', '3\n')


def save_legacy(obj, path):
  """torch.save's pre-1.6 layout: magic, protocol, sys info, object, keys, raw storages."""
  storages = _storages(obj, {})
  with open(path, 'wb') as f:
    for header in (0x1950a86a20f9469cfc6c, 1001, {'little_endian': True}):
      pickle.dump(header, f, protocol=2)
    f.write(dumps(obj, legacy=True))
    pickle.dump(list(storages), f, protocol=2)
    for array in storages.values():
      f.write(struct.pack('<q', array.size))
      f.write(array.tobytes())
