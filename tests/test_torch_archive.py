"""The PyTorch file reader: tensors come back exact, code in a pickle is refused and never runs."""

import collections
import os

import numpy as np
import pytest

import torch_files as tfiles
from sintrovae_jax import torch_archive


def _tensors(rng):
  return collections.OrderedDict(
      conv=rng.normal(size=(4, 3, 2, 2)).astype(np.float32),
      double=rng.normal(size=(5,)),
      half=rng.normal(size=(2, 3)).astype(np.float16),
      count=np.array(7, np.int64),
      empty=np.zeros((0, 3), np.float32))


@pytest.mark.parametrize('save', [tfiles.save_zip, tfiles.save_legacy], ids=['zip', 'legacy'])
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


@pytest.mark.parametrize('save', [tfiles.save_zip, tfiles.save_legacy], ids=['zip', 'legacy'])
def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path, save):
  marker = tmp_path / 'pwned'
  payload = tfiles.Call(tfiles.Global('os', 'system'), f'touch {marker}')
  path = str(tmp_path / 'evil.pth')
  save({'weights': tfiles.state_dict({'w': np.ones(2, np.float32)}), 'hook': payload}, path)
  with pytest.raises(torch_archive.UnsafeArchiveError, match='os.system'):
    torch_archive.load(path)
  assert not marker.exists()


def test_builtins_eval_is_refused_too(tmp_path):
  path = str(tmp_path / 'evil.pth')
  tfiles.save_zip([tfiles.Call(tfiles.Global('builtins', 'eval'), '1 + 1')], path)
  with pytest.raises(torch_archive.UnsafeArchiveError, match='builtins.eval'):
    torch_archive.load(path)


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
