"""The authors' 3D Soft-IntroVAE state dict (VARIANTS.md 3.2) read into our point networks'
variables, through the restricted reader (nothing from the file is run)."""

from typing import Dict

import numpy as np

from sintrovae_jax.interop import torch_archive

# The reference's state dict (VARIANTS.md 3.2) -> our variables. PyTorch keeps Linear / Conv1d
# weights as [out, in(, 1)]; Flax kernels are [in, out].
_ENCODER_CONVS = (0, 3, 6, 9, 12)      # encoder.conv.{i}.weight, no bias
_ENCODER_NORMS = (2, 5, 8, 11, 14)     # encoder.conv.{i}: BatchNorm1d
_DECODER_LINEARS = (0, 2, 4, 6, 8)     # decoder.model.{i}


class StateDictError(ValueError):
  """A state dict that is not the reference's 3D Soft-IntroVAE (VARIANTS.md 3.2)."""


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
  """The flattened tensors of a `torch.save(model.state_dict(), path)` file, read with
  torch_archive (no torch, nothing from the file run). A pickled model object
  (`torch.save(model, path)`) comes back as an inert record, which is named in the error."""
  data = torch_archive.load(path)
  if isinstance(data, torch_archive.Foreign):
    raise StateDictError(f'{path!r} holds a pickled {data.module}.{data.name} object, not a state '
                         'dict: save one with torch.save(model.state_dict(), path).')
  return torch_archive.flatten(data)


def from_torch_state_dict(arrays: Dict[str, np.ndarray]):
  """`(encoder_params, decoder_params, encoder_batch_stats)` from the reference's
  `model.state_dict()` (flattened names -> arrays, as `read_state_dict` gives them).

  Names and shapes are checked: a missing or extra tensor raises StateDictError naming it. The
  running variance is PyTorch's (unbiased); Flax's BatchNorm would keep the biased one, which
  differs by n/(n-1) for n values per channel in a batch (here 2,048 x B): negligible.
  """
  arrays = {k[len('module.'):] if k.startswith('module.') else k: np.asarray(v)
            for k, v in arrays.items() if not k.endswith('num_batches_tracked')}
  used = set()

  def take(name, ndim):
    if name not in arrays:
      raise StateDictError(f'the state dict has no {name!r}: is it a soft_intro_vae_3d model?')
    used.add(name)
    value = arrays[name].astype(np.float32)
    if value.ndim != ndim:
      raise StateDictError(f'{name!r} has shape {value.shape}; expected {ndim} dimensions.')
    return value

  def dense(prefix):
    return {'kernel': take(f'{prefix}.weight', 2).T, 'bias': take(f'{prefix}.bias', 1)}

  enc, stats = {}, {}
  for i, (conv, norm) in enumerate(zip(_ENCODER_CONVS, _ENCODER_NORMS)):
    enc[f'conv_{i}'] = {'kernel': take(f'encoder.conv.{conv}.weight', 3)[:, :, 0].T}
    enc[f'bn_{i}'] = {'scale': take(f'encoder.conv.{norm}.weight', 1),
                      'bias': take(f'encoder.conv.{norm}.bias', 1)}
    stats[f'bn_{i}'] = {'mean': take(f'encoder.conv.{norm}.running_mean', 1),
                        'var': take(f'encoder.conv.{norm}.running_var', 1)}
  enc.update(fc=dense('encoder.fc.0'), mu=dense('encoder.mu_layer'),
             logvar=dense('encoder.std_layer'))
  names = [f'fc_{i}' for i in range(len(_DECODER_LINEARS) - 1)] + ['fc_out']
  dec = {name: dense(f'decoder.model.{i}') for name, i in zip(names, _DECODER_LINEARS)}
  extra = sorted(set(arrays) - used)
  if extra:
    raise StateDictError(f'the state dict holds tensors this model does not have: {extra[:5]}')
  return enc, dec, stats
