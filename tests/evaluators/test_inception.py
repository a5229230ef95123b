"""The FID Inception and scripts/fid.py against pytorch-fid and torch-fidelity (tests/golden).

tests/golden/fid_golden.npz was made by tests/golden/make_fid_golden.py with pytorch-fid's own
network and code, torch-fidelity's KID and the same weights, outside this project (see there).
"""

import contextlib
import io
import json
import os

import jax
import numpy as np
import pytest
from flax import traverse_util
from PIL import Image

import fid_images
import torch_files as tfiles
from runs import ROOT
from sintrovae_jax.evaluators import fid, inception
from sintrovae_jax.interop import torch_archive

GOLDEN = np.load(os.path.join(ROOT, 'tests', 'golden', 'fid_golden.npz'))


@pytest.fixture(scope='module')
def variables(fid_weights):
  return inception.load_params(fid_weights)


@pytest.fixture(scope='module')
def golden_set_features(variables):
  """Our pool3 features of the 100 faces and 100 photo crops (the golden FID's two sets)."""
  extractor = fid.FeatureExtractor(variables, rows_per_call=25)
  return {name: fid.extract(extractor, (images[i:i + 25] for i in range(0, len(images), 25)))
          for name, images in (('faces', fid_images.faces()), ('crops', fid_images.crops()))}


def _assert_features_close(ours, golden):
  np.testing.assert_allclose(ours, golden, rtol=1e-4, atol=1e-4 * np.abs(golden).max())


def test_parameter_names_and_shapes_are_pytorch_fids(variables):
  """Every tensor of pytorch-fid's state dict (fc excepted) has its Flax twin, same shape."""
  flat = traverse_util.flatten_dict(variables)
  ours = {}
  for path, value in flat.items():
    layer, leaf = '.'.join(path[1:-2]), path[-1]
    torch_leaf = {'kernel': 'conv.weight', 'scale': 'bn.weight', 'bias': 'bn.bias',
                  'mean': 'bn.running_mean', 'var': 'bn.running_var'}[leaf]
    shape = value.shape[::-1] if leaf == 'kernel' else value.shape
    shape = (shape[0], shape[1], shape[3], shape[2]) if leaf == 'kernel' else shape  # HWIO->OIHW
    ours[f'{layer}.{torch_leaf}'] = str(tuple(shape))
  golden = dict(zip(GOLDEN['pytorch_fid_names'].tolist(), GOLDEN['pytorch_fid_shapes'].tolist()))
  golden = {k: v for k, v in golden.items() if not k.startswith('fc.')}
  assert ours == golden


def test_pool3_features_match_pytorch_fid_on_real_photos(variables):
  """Three photos of three sizes (down-sampled to 299 with and without a change of aspect)."""
  run = jax.jit(inception.features)
  for i, name in enumerate(fid_images.PHOTOS):
    _assert_features_close(np.asarray(run(variables, fid_images.photo(name)))[0],
                           GOLDEN['photo_features'][i])


@pytest.mark.default_python_only
def test_pool3_features_and_fid_kid_match_pytorch_fid(golden_set_features):
  faces, crops = golden_set_features['faces'], golden_set_features['crops']
  assert faces.shape == crops.shape == (fid_images.SET_SIZE, 2048)
  _assert_features_close(faces[:8], GOLDEN['face_features'])  # 25 px grey, up-sampled
  _assert_features_close(crops[:8], GOLDEN['crop_features'])  # 48 px colour, up-sampled
  a, b = fid.FeatureSet.from_features(faces), fid.FeatureSet.from_features(crops)
  result = fid.compare(a, b, int(GOLDEN['kid_subsets']), int(GOLDEN['kid_subset_size']))
  assert abs(result['fid'] - float(GOLDEN['fid'])) < 1e-3, (result['fid'], float(GOLDEN['fid']))
  eigh = fid.frechet_distance(a.mu, a.sigma, b.mu, b.sigma, matrix_sqrt='eigh')
  assert abs(eigh - float(GOLDEN['fid'])) < 1e-3, (eigh, float(GOLDEN['fid']))
  from_features = fid.compare(a, b, matrix_sqrt='eigh')['fid']  # 100 < 2048: from the features
  assert abs(from_features - float(GOLDEN['fid'])) < 1e-3, (from_features, float(GOLDEN['fid']))
  np.testing.assert_allclose([result['kid'], result['kid_std']],
                             [float(GOLDEN['kid']), float(GOLDEN['kid_std'])], rtol=1e-4)


def test_pytorch_fid_state_dict_file_gives_the_same_network(tmp_path, fid_weights, variables):
  """A .pth in pytorch-fid's layout (legacy torch.save format) converts to the same variables."""
  flat = torch_archive.flatten(torch_archive.load(fid_weights))
  arrays = {}
  for ts, name in inception.torchscript_to_pytorch_fid_names().items():
    arrays[f'{name}.conv.weight'] = flat[f'{ts}.weight']
    arrays[f'{name}.bn.weight'] = np.ones_like(flat[f'{ts}.beta'])
    arrays[f'{name}.bn.bias'] = flat[f'{ts}.beta']
    arrays[f'{name}.bn.running_mean'] = flat[f'{ts}.mean']
    arrays[f'{name}.bn.running_var'] = flat[f'{ts}.var']
    arrays[f'{name}.bn.num_batches_tracked'] = np.zeros((), np.int64)
  arrays['fc.weight'] = np.zeros((1008, 2048), np.float32)
  path = str(tmp_path / 'pt_inception-2015-12-05-6726825d.pth')
  tfiles.save_legacy(tfiles.state_dict(arrays), path)
  converted = inception.load_params(path, cache_dir=str(tmp_path / 'cache'))
  cached = inception.load_params(path, cache_dir=str(tmp_path / 'cache'))
  assert len(os.listdir(tmp_path / 'cache')) == 1
  for other in (converted, cached):
    for a, b in zip(jax.tree.leaves(other), jax.tree.leaves(variables)):
      np.testing.assert_array_equal(a, b)


def test_files_that_are_not_the_fid_network_are_refused_clearly(tmp_path):
  path = str(tmp_path / 'resnet.pth')
  tfiles.save_zip(tfiles.state_dict({'layer1.conv.weight': np.ones((2, 2, 1, 1), np.float32)}),
                  path)
  with pytest.raises(inception.WeightsError, match='not the FID Inception'):
    inception.load_params(path)
  with pytest.raises(inception.WeightsError, match='No Inception weights file'):
    inception.load_params(str(tmp_path / 'missing.pth'))
  # A file that is only a call: the user's error (one line from main.py), and the call not made.
  marker = tmp_path / 'pwned'
  tfiles.save_zip(tfiles.Call(tfiles.Global('os', 'system'), f'touch {marker}'), path)
  with pytest.raises(inception.WeightsError, match='only the call os.system'):
    inception.load_params(path)
  assert not marker.exists()


def _run_script(*args):
  """scripts/fid.py's main on `args`, in this process (a new one would add its imports' CPU
  seconds); its exit code, and the JSON line it prints."""
  from scripts import fid as fid_script  # pylint: disable=g-import-not-at-top
  stdout, stderr = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
    code = fid_script.main(list(args))
  assert code == 0, stderr.getvalue()[-3000:]
  return json.loads(stdout.getvalue().strip().splitlines()[-1])


def test_script_on_npz_and_folder_equals_the_library(tmp_path, fid_weights, variables):
  faces, crops = fid_images.faces(24), fid_images.crops(24)
  np.savez(tmp_path / 'faces.npz', images=faces)  # float in [0, 1]
  folder = tmp_path / 'crops'
  folder.mkdir()
  for i, image in enumerate(crops):  # 8-bit photo pixels: the PNG round trip is exact
    Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / f'{i:03d}.png')
  result = _run_script(str(tmp_path / 'faces.npz'), str(folder), f'--inception_weights={fid_weights}',
                       '--batch_size=12', '--kid_subset_size=10', '--matrix_sqrt=eigh',
                       f'--save_stats_a={tmp_path / "faces_stats.npz"}',
                       f'--save_stats_b={tmp_path / "crops_stats.npz"}')
  # The library on the same images (its own features: the golden fixture's 200 images would be
  # extracted again on whichever test worker runs this test).
  extractor = fid.FeatureExtractor(variables, rows_per_call=12)
  expected = fid.compare(*[fid.FeatureSet.from_features(fid.extract(extractor, [x[:12], x[12:]]))
                           for x in (faces, crops)], 100, 10, matrix_sqrt='eigh')
  assert (result['n_a'], result['n_b']) == (24, 24)
  np.testing.assert_allclose([result['fid'], result['kid']], [expected['fid'], expected['kid']],
                             rtol=1e-4)
  again = _run_script(str(tmp_path / 'faces_stats.npz'), str(tmp_path / 'crops_stats.npz'),
                      f'--inception_weights={fid_weights}', '--batch_size=12',
                      '--kid_subset_size=10', '--matrix_sqrt=eigh')
  np.testing.assert_allclose([again['fid'], again['kid']], [result['fid'], result['kid']],
                             rtol=1e-9)
