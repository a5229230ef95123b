"""The PyTorch file reader: tensors come back exact, other objects as inert records, and code in a
pickle never runs."""

import collections
import os
import sys

import numpy as np
import pytest

import torch_files as tfiles
from sintrovae_jax.interop import torch_archive

FORMATS = pytest.mark.parametrize('save', [tfiles.save_zip, tfiles.save_legacy],
                                  ids=['zip', 'legacy'])


def _tensors(rng):
  return collections.OrderedDict(
      conv=rng.normal(size=(4, 3, 2, 2)).astype(np.float32),
      double=rng.normal(size=(5,)),
      half=rng.normal(size=(2, 3)).astype(np.float16),
      count=np.array(7, np.int64),
      empty=np.zeros((0, 3), np.float32))


@FORMATS
def test_state_dict_round_trip(tmp_path, rng, save):
  arrays = _tensors(rng)
  path = str(tmp_path / 'weights.pth')
  save({'epoch': 3, 'model': tfiles.state_dict(arrays), 'names': ['a', 'b']}, path)
  loaded = torch_archive.load(path)
  assert loaded['epoch'] == 3 and loaded['names'] == ['a', 'b']
  assert list(loaded['model']) == list(arrays)
  for name, array in arrays.items():
    assert loaded['model'][name].dtype == array.dtype
    np.testing.assert_array_equal(loaded['model'][name], array)


def test_views_share_a_storage_with_offset_and_strides(tmp_path):
  base = np.arange(24, dtype=np.float32)
  storage = tfiles.Storage('0', base)
  obj = {'transposed': tfiles.tensor(storage, (4, 6), stride=(1, 4)),
         'tail': tfiles.tensor(storage, (2, 3), offset=18)}
  path = str(tmp_path / 'views.pth')
  tfiles.save_zip(obj, path)
  loaded = torch_archive.load(path)
  np.testing.assert_array_equal(loaded['transposed'], base.reshape(6, 4).T)
  np.testing.assert_array_equal(loaded['tail'], base[18:].reshape(2, 3))


def _payloads(marker):
  """Calls that, if made, would create `marker`: os.system, and builtins.eval of Python."""
  return [tfiles.Call(tfiles.Global('os', 'system'), f'touch {marker}'),
          tfiles.Call(tfiles.Global('builtins', 'eval'),
                      f"__import__('os').system('touch {marker}')")]


@FORMATS
def test_a_call_inside_a_file_is_an_inert_record_never_made(tmp_path, save, caplog):
  marker = tmp_path / 'pwned'
  system, evaluate = _payloads(marker)
  path = str(tmp_path / 'evil.pth')
  save({'weights': tfiles.state_dict({'w': np.ones(2, np.float32)}), 'hook': system,
        'more': [evaluate]}, path)
  with caplog.at_level('WARNING', logger=torch_archive.__name__):
    loaded = torch_archive.load(path)
  assert not marker.exists()
  np.testing.assert_array_equal(loaded['weights']['w'], np.ones(2, np.float32))
  hook, more = loaded['hook'], loaded['more'][0]
  assert isinstance(hook, torch_archive.Foreign) and hook.called
  assert (hook.module, hook.name, hook.args) == ('os', 'system', (f'touch {marker}',))
  assert (more.module, more.name, more.called) == ('builtins', 'eval', True)
  assert '2 call(s) of builtins.eval, os.system' in caplog.text


@FORMATS
@pytest.mark.parametrize('which', [0, 1], ids=['os.system', 'builtins.eval'])
def test_a_file_that_is_a_call_is_refused_and_never_runs(tmp_path, save, which):
  marker = tmp_path / 'pwned'
  payload = _payloads(marker)[which]
  path = str(tmp_path / 'evil.pth')
  save(payload, path)
  with pytest.raises(torch_archive.UnsafeArchiveError,
                     match=f'only the call {payload.fn.module}.{payload.fn.name}'):
    torch_archive.load(path)
  assert not marker.exists()


@FORMATS
def test_objects_of_other_classes_are_inert_records(tmp_path, rng, save, monkeypatch, caplog):
  """A training checkpoint's optimiser, scheduler and tracker states (the style reference's:
  RunningMeanTorch objects of its `tracker` module) load as data; the module is neither
  imported nor touched, and neither is one that does not exist."""
  tfiles.ModuleTrap.looked_up.clear()
  monkeypatch.setitem(sys.modules, 'tracker', tfiles.ModuleTrap('tracker'))
  auxiliary = tfiles.reference_auxiliary(rng, [[(4, 3), (4,)]], [[(2, 2)], [(3,)]], epoch=5)
  weights = _tensors(rng)
  odd = tfiles.Object(tfiles.Global('sintrovae_absent_module', 'Thing'), {'n': 3})
  path = str(tmp_path / 'model_tmp_lod5.pth')
  save({'models': {'net': tfiles.state_dict(weights)}, 'auxiliary': auxiliary, 'odd': odd}, path)
  with caplog.at_level('WARNING', logger=torch_archive.__name__):
    loaded = torch_archive.load(path)
  assert not tfiles.ModuleTrap.looked_up and 'sintrovae_absent_module' not in sys.modules
  assert not caplog.records  # objects, not calls: nothing to warn of
  for name, array in weights.items():
    np.testing.assert_array_equal(loaded['models']['net'][name], array)
  tracks = loaded['auxiliary']['tracker']['tracks']
  assert list(tracks) == list(tfiles.TRACKED)
  for name, track in tracks.items():
    assert isinstance(track, torch_archive.Foreign) and not track.called
    assert (track.module, track.name, track.args) == ('tracker', 'RunningMeanTorch', ())
    want = [t.args[0].array for t in auxiliary['tracker']['tracks'][name].state['values']]
    np.testing.assert_array_equal(np.concatenate(track.state['values']), np.concatenate(want))
  assert loaded['auxiliary']['tracker']['epochs'] == [0.0, 1.0, 2.0, 3.0, 4.0]
  decoder = loaded['auxiliary']['decoder_optimizer']
  assert [g['params'] for g in decoder['param_groups']] == [[0], [1]]
  assert decoder['state'][1]['exp_avg_sq'].shape == (3,) and decoder['state'][1]['step'] == 5000
  assert loaded['auxiliary']['scheduler']['encoder_optimizer'] == {'last_epoch': 5}
  assert (loaded['odd'].module, loaded['odd'].state) == ('sintrovae_absent_module', {'n': 3})


def test_truncated_and_foreign_files_are_format_errors(tmp_path):
  text = tmp_path / 'notes.pth'
  text.write_text('not a checkpoint')
  with pytest.raises(torch_archive.ArchiveFormatError):
    torch_archive.load(str(text))
  path = str(tmp_path / 'cut.pth')
  tfiles.save_legacy(tfiles.state_dict({'w': np.ones(100, np.float32)}), path)
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) - 40)
  with pytest.raises(torch_archive.ArchiveFormatError, match='truncated'):
    torch_archive.load(path)


def test_torchscript_archive_gives_its_module_tree(fid_weights):
  tree = torch_archive.load(fid_weights)
  assert tree.type_name == '__torch__.wrap_net.WrapNet'
  assert tree['net']['layers']['mixed_10'].type_name.endswith('InceptionE')
  flat = torch_archive.flatten(tree)
  assert len(flat) == 94 * 4  # weight, beta, mean, var of each of the 94 conv layers
  assert flat['net.layers.conv.weight'].shape == (32, 3, 3, 3)
  assert flat['net.layers.conv.weight'].dtype == np.float32
