"""Reads the PyTorch reference's style Soft-IntroVAE checkpoints into our parameter trees.

The reference saves `torch.save({'models': {...}, 'auxiliary': {...}})` (VARIANTS.md 1.9):
`models` maps `discriminator` (the encoder), `generator` (the decoder), `mapping_tl`,
`mapping_fl` and `dlatent_avg` to state dicts, and on rank 0 also the EMA copies
`discriminator_s`, `generator_s`, `mapping_fl_s`, `mapping_tl_s` (the sampling model, which the
reference's figure scripts load). Files are read with torch_archive (no torch, no pickled code):
`auxiliary` (optimisers, scheduler, and the tracker's `tracker.RunningMeanTorch` objects, inert
records there) is not used.

Weights are stored at their effective scale (implicit equalised learning rate), so importing is a
renaming and a transposition, checked leaf by leaf against `model.init`'s shapes:

| reference | ours |
|---|---|
| conv weight [out, in, kh, kw] (OIHW) | kernel [kh, kw, in, out] (HWIO) |
| decoder's fused transposed `conv_1` [in, out, 3, 3] | kernel [3, 3, in, out] (forward flips) |
| Linear weight [out, in] | kernel [in, out] |
| `bias_1/2`, `noise_weight_1/2` [1, C, 1, 1] | [C] |
| `const` [1, C, 4, 4] | [1, 4, 4, C] |
| `dlatent_avg.buff` [num_styles, latent] | `dlatent_avg` |

The constant `blur.weight` buffers are skipped (our blur is fixed). Anything else the file holds,
or anything the model needs that it lacks, is an error naming the tensors.
"""

import re
from typing import Any, Dict, List, Sequence, Tuple

import jax
import numpy as np

from sintrovae_jax.families.style import model as style_model, networks as style_nets
from sintrovae_jax.interop import torch_archive

NETWORKS = ('discriminator', 'generator', 'mapping_tl', 'mapping_fl')
EMA_SUFFIX = '_s'
MODULES = NETWORKS + ('dlatent_avg',)
EMA_MODULES = tuple(name + EMA_SUFFIX for name in NETWORKS)
# (our parameter half, our network) of each reference module.
_OURS = {'discriminator': ('encoder_params', 'encoder'),
         'mapping_tl': ('encoder_params', 'mapping_tl'),
         'generator': ('decoder_params', 'decoder'),
         'mapping_fl': ('decoder_params', 'mapping_fl')}
# Reference sub-module names of our numbered modules.
_NUMBERED = {'encode_block': 'encode_block.{}', 'decode_block': 'decode_block.{}',
             'from_rgb': 'from_rgb.{}.from_rgb', 'to_rgb': 'to_rgb.{}.to_rgb',
             'map_blocks': 'map_blocks.{}.fc'}
_PER_CHANNEL = ('bias_1', 'bias_2', 'noise_weight_1', 'noise_weight_2')
ARCHITECTURE_FIELDS = ('image_size', 'latent', 'start_channels', 'max_channels', 'mapping_layers',
                       'image_channels')
_SHOWN = 5  # names listed per kind of problem


class StyleCheckpointError(ValueError):
  """The file is not a reference style Soft-IntroVAE checkpoint of the model's architecture."""


def _state_dict(models: Dict[str, Any], module: str) -> Dict[str, np.ndarray]:
  if module not in models:
    raise StyleCheckpointError(
        f"the checkpoint's models hold no {module!r} (they hold {sorted(models)}); a "
        "style_soft_intro_vae checkpoint has 'discriminator', 'generator', 'mapping_tl', "
        "'mapping_fl' and 'dlatent_avg'.")
  sd = models[module]
  if not isinstance(sd, dict):
    raise StyleCheckpointError(f"models[{module!r}] is {type(sd).__name__}, not a state dict "
                               '(the reference saves None for a module it did not have).')
  bad = [k for k, v in sd.items() if not isinstance(v, np.ndarray)]
  if bad:
    raise StyleCheckpointError(f'models[{module!r}] holds non-tensor entries {bad[:_SHOWN]}.')
  return sd


def _names_list(names: Sequence[str]) -> str:
  names = sorted(names)
  more = f' and {len(names) - _SHOWN} more' if len(names) > _SHOWN else ''
  return ', '.join(repr(n) for n in names[:_SHOWN]) + more


# ---------------------------------------------------------------------------------------------
# Architecture read from the shapes.


def _indices(sd: Dict[str, np.ndarray], pattern: str) -> List[int]:
  return sorted({int(m.group(1)) for k in sd for m in [re.fullmatch(pattern, k)] if m})


def _shape_of(sd, module: str, name: str) -> Tuple[int, ...]:
  if name not in sd:
    raise StyleCheckpointError(f'models[{module!r}] has no {name!r}: is it a '
                               'style_soft_intro_vae checkpoint?')
  return tuple(sd[name].shape)


def infer_architecture(models: Dict[str, Any]) -> Dict[str, int]:
  """The architecture a checkpoint's `models` were built with, read from its shapes:
  image_size, latent, start_channels, max_channels, mapping_layers, image_channels.

  `max_channels` is the widest layer in the file: a larger setting that the widths never reach
  (start_channels * 2^layer_count) builds the same networks. The resolution from which the convs
  are fused (128 px in the reference) leaves no trace in the shapes and is not read.
  """
  gen = _state_dict(models, 'generator')
  disc = _state_dict(models, 'discriminator')
  fl = _state_dict(models, 'mapping_fl')
  blocks = _indices(gen, r'decode_block\.(\d+)\.conv_2\.weight')
  if not blocks or blocks != list(range(len(blocks))):
    raise StyleCheckpointError("models['generator'] has no decode_block.0 .. decode_block.N "
                               'conv_2 weights: is it a style_soft_intro_vae checkpoint?')
  layer_count = len(blocks)
  enc_blocks = _indices(disc, r'encode_block\.(\d+)\.conv_2\.weight')
  if enc_blocks != blocks:
    raise StyleCheckpointError(
        f"models['discriminator'] has {len(enc_blocks)} encode_block conv_2 weights, the "
        f'generator {layer_count} decode blocks: the file mixes two architectures.')
  mapping = _indices(fl, r'map_blocks\.(\d+)\.fc\.weight')
  return {
      'image_size': 2 ** (layer_count + 1),
      'latent': _shape_of(gen, 'generator', 'decode_block.0.style_1.weight')[1],
      'start_channels': _shape_of(disc, 'discriminator', 'from_rgb.0.from_rgb.weight')[0],
      'max_channels': max(_shape_of(disc, 'discriminator', f'encode_block.{i}.conv_2.weight')[0]
                          for i in blocks),
      'mapping_layers': len(mapping),
      'image_channels': _shape_of(gen, 'generator', 'to_rgb.0.to_rgb.weight')[0],
  }


def model_architecture(model: style_model.StyleVAE) -> Dict[str, int]:
  """`model`'s architecture as infer_architecture reads it from a file (max_channels capped at
  the widest layer the model has)."""
  return {
      'image_size': model.image_size, 'latent': model.latent,
      'start_channels': model.start_channels,
      'max_channels': min(model.max_channels, model.start_channels * 2 ** model.layer_count),
      'mapping_layers': model.mapping_layers, 'image_channels': model.image_channels}


def architecture_differences(found: Dict[str, int], model: style_model.StyleVAE) -> List[str]:
  """'field: file X, model Y' for each field where a file's architecture differs from `model`'s."""
  want = model_architecture(model)
  return [f'{k}: file {found[k]}, model {want[k]}' for k in ARCHITECTURE_FIELDS
          if found.get(k) != want[k]]


# ---------------------------------------------------------------------------------------------
# Conversion.


def _torch_name(path: Tuple[str, ...]) -> str:
  """Our parameter path inside a network -> the reference's state-dict name."""
  parts = []
  for i, part in enumerate(path):
    m = re.fullmatch(r'(.+)_(\d+)', part) if i == 0 else None
    if m and m.group(1) in _NUMBERED:
      parts.append(_NUMBERED[m.group(1)].format(m.group(2)))
    elif part == 'kernel':
      parts.append('weight')
    else:
      parts.append(part)
  return '.'.join(parts)


def _layout(network: str, path: Tuple[str, ...], ndim: int, model: style_model.StyleVAE) -> str:
  """How the reference stores the parameter at `path` of `network` (one of ours)."""
  leaf = path[-1]
  if leaf == 'kernel' and ndim == 4:
    m = re.fullmatch(r'decode_block_(\d+)', path[0])
    if network == 'decoder' and m and path[1] == 'conv_1' and style_nets.decoder_block_fused(
        int(m.group(1)), model.fused_from):
      return 'iohw'  # ConvTranspose2d: [in, out, kh, kw]
    return 'oihw'
  if leaf == 'kernel' and ndim == 2:
    return 'linear'
  if leaf == 'const':
    return 'const'
  if leaf in _PER_CHANNEL:
    return 'channel'
  return 'same'


def _torch_shape(layout: str, shape: Tuple[int, ...]) -> Tuple[int, ...]:
  if layout == 'oihw':
    kh, kw, i, o = shape
    return (o, i, kh, kw)
  if layout == 'iohw':
    kh, kw, i, o = shape
    return (i, o, kh, kw)
  if layout == 'linear':
    return tuple(shape[::-1])
  if layout == 'const':
    return (shape[0], shape[3], shape[1], shape[2])
  if layout == 'channel':
    return (1, shape[0], 1, 1)
  return tuple(shape)


def _to_ours(layout: str, value: np.ndarray) -> np.ndarray:
  if layout == 'oihw':
    value = value.transpose(2, 3, 1, 0)
  elif layout == 'iohw':
    value = value.transpose(2, 3, 0, 1)
  elif layout == 'linear':
    value = value.T
  elif layout == 'const':
    value = value.transpose(0, 2, 3, 1)
  elif layout == 'channel':
    value = value.reshape(-1)
  return np.ascontiguousarray(value, np.float32)


def _is_blur(name: str) -> bool:
  return name == 'blur.weight' or name.endswith('.blur.weight')


def _float_array(module: str, name: str, value: np.ndarray) -> np.ndarray:
  if not (np.issubdtype(value.dtype, np.floating) or value.dtype.name == 'bfloat16'):
    raise StyleCheckpointError(f'models[{module!r}][{name!r}] has dtype {value.dtype}; weights '
                               'are floating point.')
  return np.asarray(value, np.float32)


def _convert_network(models, module: str, network: str, template, model) -> Any:
  """One reference module -> our parameter tree shaped like `template` (ShapeDtypeStructs)."""
  sd = _state_dict(models, module)
  used, missing, mismatched = set(), [], []

  def convert(path, leaf):
    path = tuple(p.key for p in path)
    name = _torch_name(path)
    layout = _layout(network, path, len(leaf.shape), model)
    want = _torch_shape(layout, tuple(leaf.shape))
    if name not in sd:
      missing.append(name)
      return None
    used.add(name)
    value = sd[name]
    if tuple(value.shape) != want:
      mismatched.append(f'{name!r} has shape {tuple(value.shape)} where the model needs {want}')
      return None
    return _to_ours(layout, _float_array(module, name, value))

  params = jax.tree_util.tree_map_with_path(convert, template)
  unexpected = [k for k in sd if k not in used and not _is_blur(k)]
  problems = []
  if missing:
    problems.append(f'it lacks {_names_list(missing)}')
  if unexpected:
    problems.append(f'it holds tensors the model does not have: {_names_list(unexpected)}')
  if mismatched:
    more = f' (and {len(mismatched) - _SHOWN} more)' if len(mismatched) > _SHOWN else ''
    problems.append('; '.join(mismatched[:_SHOWN]) + more)
  if problems:
    raise StyleCheckpointError(f'models[{module!r}] does not fit the model: '
                               + '; '.join(problems) + '.' + _architecture_hint(models, model))
  return params


def _architecture_hint(models, model) -> str:
  try:
    found = infer_architecture(models)
  except StyleCheckpointError:
    return ' Is it a style_soft_intro_vae checkpoint?'
  differences = architecture_differences(found, model)
  if not differences:
    return (' The file\'s layer sizes are the model\'s otherwise: was it saved by the reference\'s '
            'style_soft_intro_vae, and is style_fused_from 128 as there?')
  return (' The file holds another architecture (' + '; '.join(differences) + '): set the '
          'config to the file\'s values.')


def _convert_half(models, suffix: str, templates, model) -> Dict[str, Any]:
  out = {'encoder_params': {}, 'decoder_params': {}}
  for module in NETWORKS:
    half, network = _OURS[module]
    out[half][network] = _convert_network(models, module + suffix, network,
                                          templates[half][network], model)
  return out


def convert_models(models: Dict[str, Any], model: style_model.StyleVAE) -> Dict[str, Any]:
  """The reference checkpoint's `models` dict -> `{'encoder_params', 'decoder_params',
  'dlatent_avg', 'ema'}` as float32 NumPy arrays in `model`'s parameter trees; `ema` holds the
  `_s` modules' `{'encoder_params', 'decoder_params'}`, or is None when the file has none.

  Raises StyleCheckpointError naming missing, unknown or misshapen tensors and modules.
  """
  if not isinstance(models, dict):
    raise StyleCheckpointError(f"the checkpoint's 'models' is {type(models).__name__}, not a dict "
                               'of state dicts.')
  unknown = sorted(set(models) - set(MODULES) - set(EMA_MODULES))
  if unknown:
    raise StyleCheckpointError(f"the checkpoint's models hold modules a style Soft-IntroVAE does "
                               f'not have: {unknown} (expected {list(MODULES + EMA_MODULES)}).')
  enc, dec, _ = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  templates = {'encoder_params': enc, 'decoder_params': dec}
  out = _convert_half(models, '', templates, model)

  present = [m for m in EMA_MODULES if m in models]
  if present and len(present) != len(EMA_MODULES):
    absent = [m for m in EMA_MODULES if m not in models]
    raise StyleCheckpointError(f"the checkpoint holds the EMA modules {present} but not {absent}; "
                               'the EMA model needs all four.')
  out['ema'] = _convert_half(models, EMA_SUFFIX, templates, model) if present else None

  avg = _state_dict(models, 'dlatent_avg')
  want = (model.num_styles, model.latent)
  extra = sorted(set(avg) - {'buff'})
  if 'buff' not in avg or extra:
    raise StyleCheckpointError(f"models['dlatent_avg'] should hold only 'buff' {want}; it holds "
                               f'{sorted(avg)}.')
  if tuple(avg['buff'].shape) != want:
    raise StyleCheckpointError(f"models['dlatent_avg']['buff'] has shape {tuple(avg['buff'].shape)}"
                               f' where the model needs {want} (2 x layer_count style slots of '
                               'the latent size).' + _architecture_hint(models, model))
  out['dlatent_avg'] = _float_array('dlatent_avg', 'buff', avg['buff'])
  return out


def read_models(path: str) -> Dict[str, Any]:
  """The `models` dict of a reference checkpoint file (read without torch or pickled code)."""
  data = torch_archive.load(path)
  if isinstance(data, dict) and 'models' in data:
    return data['models']
  if isinstance(data, dict) and data and all(isinstance(v, np.ndarray) for v in data.values()):
    what = f'a plain state dict ({len(data)} tensors, e.g. {next(iter(data))!r})'
  elif isinstance(data, dict):
    what = f'a dict with keys {sorted(map(str, data))[:_SHOWN]}'
  elif isinstance(data, torch_archive.Foreign):  # e.g. torch.save(model): kept as a record
    what = f'a pickled {data.module}.{data.name} object'
  else:
    what = f'a {type(data).__name__}'
  raise StyleCheckpointError(
      f"{path!r} is {what}, with no 'models': not a style_soft_intro_vae training checkpoint. "
      "Those are torch.save({'models': {...}, 'auxiliary': {...}}) files (checkpointer.py): "
      'model_tmp_lod*.pth, model_final.pth, or the released ffhq_fid_17.55_epoch_270.pth / '
      'celebahq_fid_18.63_epoch_230.pth.')


def load_reference_checkpoint(path: str, model: style_model.StyleVAE) -> Dict[str, Any]:
  """`convert_models` of the reference checkpoint file at `path` (see the module doc)."""
  return convert_models(read_models(path), model)


def has_ema(models: Dict[str, Any]) -> bool:
  return any(m in models for m in EMA_MODULES)

