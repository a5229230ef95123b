"""Importing the PyTorch reference's style Soft-IntroVAE checkpoints (style_checkpoint.py, VARIANTS.md
1.9) and the imported networks' agreement with the reference's forward pass.

The reference is restated here in NumPy float64, in its NCHW layout, on the torch-layout state
dicts themselves (net.py, lreq.py: Encoder_old.encode/encode2, Generator.decode/decode2 with
noise=False, the two mappings), with convolutions written out as loops over kernel taps. The
synthetic checkpoint is a small architecture (16 px: 3 blocks) with the fused convolutions moved
down to 16 px (the reference: 128), so that both the fused (transposed / strided, built by
transform_kernel) and the plain convolutions occur.
"""

import collections
import json
import math
import os
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import torch_files
from sintrovae_jax.families.style import progressive, model as style_model, step as style_step
from sintrovae_jax.interop import style_checkpoint, torch_archive
from sintrovae_jax.program import workdir as workdir_lib

IMAGE_SIZE, LATENT, START, MAXF, MAPPING, FUSED_FROM, CHANNELS = 16, 16, 8, 16, 2, 16, 3
LAYERS = int(math.log2(IMAGE_SIZE)) - 1


def _model(**kw):
  return style_model.StyleVAE(image_size=IMAGE_SIZE, latent=LATENT, start_channels=START,
                              max_channels=MAXF, mapping_layers=MAPPING, image_channels=CHANNELS,
                              fused_from=FUSED_FROM, precision=jax.lax.Precision.HIGHEST, **kw)


# ---------------------------------------------------------------------------------------------
# A synthetic checkpoint with the reference's key layout (the constructors of net.py / model.py).


def _blur_buffer(c):
  f = np.array([1, 2, 1], np.float32)
  f = f[:, None] * f[None, :]
  return np.tile((f / f.sum())[None, None], (c, 1, 1, 1))


class _Weights:
  def __init__(self, rng):
    self.rng = rng

  def __call__(self, *shape, std=1.0):
    return (self.rng.normal(size=shape) * std).astype(np.float32)

  def conv(self, o, i, k=3):
    return self(o, i, k, k, std=1 / math.sqrt(k * k * i))

  def linear(self, o, i):
    return self(o, i, std=1 / math.sqrt(i))


def _generator(w):
  sd = collections.OrderedDict()
  mul = 2 ** (LAYERS - 1)
  inputs = min(MAXF, START * mul)
  sd['const'] = 1 + w(1, inputs, 4, 4, std=0.5)
  resolution = 2
  for i in range(LAYERS):
    out = min(MAXF, START * mul)
    fused = resolution * 2 >= FUSED_FROM
    p = f'decode_block.{i}.'
    for name in ('noise_weight_1', 'bias_1', 'noise_weight_2', 'bias_2'):
      sd[p + name] = w(1, out, 1, 1, std=0.3)
    if i:  # ConvTranspose2d keeps [in, out, kh, kw], Conv2d [out, in, kh, kw]
      sd[p + 'conv_1.weight'] = (w(inputs, out, 3, 3, std=1 / math.sqrt(9 * inputs)) if fused
                                 else w.conv(out, inputs))
    sd[p + 'blur.weight'] = _blur_buffer(out)
    sd[p + 'style_1.weight'], sd[p + 'style_1.bias'] = w.linear(2 * out, LATENT), w(2 * out,
                                                                                    std=0.3)
    sd[p + 'conv_2.weight'] = w.conv(out, out)
    sd[p + 'style_2.weight'], sd[p + 'style_2.bias'] = w.linear(2 * out, LATENT), w(2 * out,
                                                                                    std=0.3)
    resolution *= 2
    inputs = out
    mul //= 2
  for i in range(LAYERS):
    out = min(MAXF, START * 2 ** (LAYERS - 1 - i))
    sd[f'to_rgb.{i}.to_rgb.weight'] = w.conv(CHANNELS, out, 1)
    sd[f'to_rgb.{i}.to_rgb.bias'] = w(CHANNELS, std=0.3)
  return sd


def _discriminator(w):
  sd = collections.OrderedDict()
  inputs, mul = START, 2
  for i in range(LAYERS):
    out = min(MAXF, START * mul)
    sd[f'from_rgb.{i}.from_rgb.weight'] = w.conv(inputs, CHANNELS, 1)
    sd[f'from_rgb.{i}.from_rgb.bias'] = w(inputs, std=0.3)
    inputs, mul = out, mul * 2
  inputs, mul = START, 2
  for i in range(LAYERS):
    out = min(MAXF, START * mul)
    p = f'encode_block.{i}.'
    sd[p + 'bias_1'], sd[p + 'bias_2'] = w(1, inputs, 1, 1, std=0.3), w(1, out, 1, 1, std=0.3)
    sd[p + 'conv_1.weight'] = w.conv(inputs, inputs)
    sd[p + 'blur.weight'] = _blur_buffer(inputs)
    sd[p + 'conv_2.weight'] = w.conv(out, inputs)  # the fused one too: a stored 3x3 Conv2d
    sd[p + 'style_1.weight'], sd[p + 'style_1.bias'] = w.linear(LATENT, 2 * inputs), w(LATENT)
    sd[p + 'style_2.weight'], sd[p + 'style_2.bias'] = w.linear(LATENT, 2 * out), w(LATENT)
    inputs, mul = out, mul * 2
  return sd


def _mapping(w, outputs):
  sd = collections.OrderedDict()
  for i, out in enumerate(outputs):
    sd[f'map_blocks.{i}.fc.weight'] = w.linear(out, LATENT)
    sd[f'map_blocks.{i}.fc.bias'] = w(out, std=0.3)
  return sd


def _modules(seed):
  w = _Weights(np.random.default_rng(seed))
  return {'discriminator': _discriminator(w), 'generator': _generator(w),
          'mapping_tl': _mapping(w, [LATENT, LATENT, 2 * LATENT]),
          'mapping_fl': _mapping(w, [LATENT] * MAPPING)}


def _reference_models():
  """{'models': ...} contents as NumPy state dicts: trained and EMA (`_s`) networks differ."""
  models = dict(_modules(1))
  models['dlatent_avg'] = collections.OrderedDict(
      buff=np.random.default_rng(2).normal(size=(2 * LAYERS, LATENT)).astype(np.float32))
  models.update({k + '_s': v for k, v in _modules(3).items()})
  return models


def _state_dicts(models):
  """Tensor records of every module, storages keyed apart across the file."""
  return {module: torch_files.state_dict(sd, storage_prefix=f'{module}_')
          for module, sd in models.items()}


def _parameter_shapes(models, *modules):
  """One optimiser parameter group per module: its tensors' shapes, the blur buffers left out."""
  return [[v.shape for k, v in models[m].items() if not k.endswith('blur.weight')]
          for m in modules]


def _save(models, path, save=torch_files.save_zip):
  """The file as the reference's Checkpointer.save writes it: the state dicts under 'models', the
  optimisers, scheduler and tracker (RunningMeanTorch objects) under 'auxiliary'."""
  auxiliary = torch_files.reference_auxiliary(
      np.random.default_rng(4), _parameter_shapes(models, 'discriminator', 'mapping_tl'),
      _parameter_shapes(models, 'generator', 'mapping_fl'))
  save({'models': _state_dicts(models), 'auxiliary': auxiliary}, path)
  return path


# ---------------------------------------------------------------------------------------------
# The reference's forward pass in NumPy float64, NCHW, on the state dicts.


def _lrelu(x):
  return np.where(x >= 0, x, 0.2 * x)


def _linear(sd, name, x):
  return x @ sd[name + '.weight'].astype(np.float64).T + sd[name + '.bias']


def _conv2d(x, w, stride=1, pad=0, bias=None):
  """F.conv2d: x [B, I, H, W], w [O, I, kh, kw]."""
  w = w.astype(np.float64)
  b, _, h, wd = x.shape
  o, _, kh, kw = w.shape
  xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
  out = np.zeros((b, o, ho, wo))
  for dy in range(kh):
    for dx in range(kw):
      patch = xp[:, :, dy:dy + stride * (ho - 1) + 1:stride, dx:dx + stride * (wo - 1) + 1:stride]
      out += np.einsum('bihw,oi->bohw', patch, w[:, :, dy, dx])
  return out if bias is None else out + bias[None, :, None, None]


def _conv_transpose2d(x, w, stride, pad):
  """F.conv_transpose2d by its definition: every input pixel scatters w [I, O, kh, kw] into the
  output at stride `stride`; `pad` rows and columns are then cut from each border."""
  w = w.astype(np.float64)
  b, _, h, wd = x.shape
  _, o, kh, kw = w.shape
  full = np.zeros((b, o, (h - 1) * stride + kh, (wd - 1) * stride + kw))
  for dy in range(kh):
    for dx in range(kw):
      full[:, :, dy:dy + stride * (h - 1) + 1:stride, dx:dx + stride * (wd - 1) + 1:stride] += (
          np.einsum('bihw,io->bohw', x, w[:, :, dy, dx]))
  return full[:, :, pad:full.shape[2] - pad, pad:full.shape[3] - pad]


def _transform_kernel(w, down):
  """lreq.py: F.pad(w, (1, 1, 1, 1)), the four one-pixel shifts summed (x0.25 for Conv2d)."""
  w = np.pad(w.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
  w = w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]
  return w * 0.25 if down else w


def _blur(x, weight):
  """Blur: F.conv2d(x, weight [C, 1, 3, 3], groups=C, padding=1)."""
  h, w = x.shape[2:]
  xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
  return sum(xp[:, :, dy:dy + h, dx:dx + w] * weight[None, :, 0, dy, dx, None, None]
             for dy in range(3) for dx in range(3))


def _instance_norm(x, eps):
  m = x.mean(axis=(2, 3), keepdims=True)
  return (x - m) / np.sqrt(((x - m) ** 2).mean(axis=(2, 3), keepdims=True) + eps)


def _stats(x):
  m = x.mean(axis=(2, 3), keepdims=True)
  std = np.sqrt(((x - m) ** 2).mean(axis=(2, 3), keepdims=True))
  return np.concatenate([m, std], axis=1)[:, :, 0, 0]


def _style_mod(x, style):
  style = style.reshape(style.shape[0], 2, x.shape[1], 1, 1)
  return style[:, 1] + x * (style[:, 0] + 1)


def _pixel_norm(x):
  return x / np.sqrt(np.mean(x ** 2, axis=1, keepdims=True) + 1e-8)


def _avg_pool(x):
  b, c, h, w = x.shape
  return x.reshape(b, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


def _upscale(x):
  return x.repeat(2, axis=2).repeat(2, axis=3)


def _encode_block(sd, i, x):
  p = f'encode_block.{i}.'
  fused = 2 ** (LAYERS + 1 - i) >= FUSED_FROM  # Encoder_old: resolution >= 128 in the reference
  x = _lrelu(_conv2d(x, sd[p + 'conv_1.weight'], 1, 1) + sd[p + 'bias_1'])
  style_1 = _stats(x)
  x = _blur(_instance_norm(x, 1e-5), sd[p + 'blur.weight'])
  if fused:
    x = _conv2d(x, _transform_kernel(sd[p + 'conv_2.weight'], True), 2, 1)
  else:
    x = _avg_pool(_conv2d(x, sd[p + 'conv_2.weight'], 1, 1))
  x = _lrelu(x + sd[p + 'bias_2'])
  style_2 = _stats(x)
  x = _instance_norm(x, 1e-5)
  return x, _linear(sd, p + 'style_1', style_1), _linear(sd, p + 'style_2', style_2)


def _from_rgb(sd, i, x):
  return _lrelu(_conv2d(x, sd[f'from_rgb.{i}.from_rgb.weight'],
                        bias=sd[f'from_rgb.{i}.from_rgb.bias']))


def np_encoder(sd, x, lod, blend=1.0):
  """Encoder_old.forward: encode (blend == 1) or encode2; [B, latent]."""
  styles = np.zeros((x.shape[0], LATENT))
  first = LAYERS - lod - 1
  h = _lrelu(_from_rgb(sd, first, x))
  h, s1, s2 = _encode_block(sd, first, h)
  if blend == 1:
    styles += s1 + s2
  else:
    styles += s1 * blend + s2 * blend
    prev = _lrelu(_from_rgb(sd, first + 1, _avg_pool(x)))
    h = prev + blend * (h - prev)  # torch.lerp(x_prev, x, blend)
  for i in range(first + 1, LAYERS):
    h, s1, s2 = _encode_block(sd, i, h)
    styles += s1 + s2
  return styles


def np_mapping_tl(sd, x):
  for i in range(3):
    x = _lrelu(_linear(sd, f'map_blocks.{i}.fc', x))
  y = x.reshape(x.shape[0], 2, -1)
  return y[:, 0], y[:, 1]


def np_mapping_fl(sd, z):
  x = _pixel_norm(z)
  for i in range(MAPPING):
    x = _lrelu(_linear(sd, f'map_blocks.{i}.fc', x))
  return np.repeat(x[:, None], 2 * LAYERS, axis=1)


def _no_noise(x, layer):
  s = math.pow(layer + 1, 0.5)
  return x + s * np.exp(-x * x / (2.0 * s * s)) / math.sqrt(2 * math.pi) * 0.8


def _decode_block(sd, i, x, s1, s2):
  p = f'decode_block.{i}.'
  if i:
    if 2 ** (i + 2) >= FUSED_FROM:  # Generator: resolution * 2 >= 128 in the reference
      x = _conv_transpose2d(x, _transform_kernel(sd[p + 'conv_1.weight'], False), 2, 1)
    else:
      x = _conv2d(_upscale(x), sd[p + 'conv_1.weight'], 1, 1)
    x = _blur(x, sd[p + 'blur.weight'])
  x = _lrelu(_no_noise(x, i) + sd[p + 'bias_1'])
  x = _style_mod(_instance_norm(x, 1e-8), _linear(sd, p + 'style_1', s1))
  x = _conv2d(x, sd[p + 'conv_2.weight'], 1, 1)
  x = _lrelu(_no_noise(x, i) + sd[p + 'bias_2'])
  return _style_mod(_instance_norm(x, 1e-8), _linear(sd, p + 'style_2', s2))


def _to_rgb(sd, i, x):
  return _conv2d(x, sd[f'to_rgb.{i}.to_rgb.weight'], bias=sd[f'to_rgb.{i}.to_rgb.bias'])


def np_generator(sd, styles, lod, blend=1.0):
  """Generator.forward(styles, lod, blend, noise=False): decode or decode2; NCHW."""
  x = sd['const'].astype(np.float64)
  for i in range(lod):
    x = _decode_block(sd, i, x, styles[:, 2 * i], styles[:, 2 * i + 1])
  if blend == 1:
    return _to_rgb(sd, lod, _decode_block(sd, lod, x, styles[:, 2 * lod], styles[:, 2 * lod + 1]))
  prev = _upscale(_to_rgb(sd, lod - 1, x))  # F.interpolate(size=...): nearest
  x = _to_rgb(sd, lod, _decode_block(sd, lod, x, styles[:, 2 * lod], styles[:, 2 * lod + 1]))
  return prev + blend * (x - prev)


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  models = _reference_models()
  path = _save(models, str(tmp_path_factory.mktemp('ref') / 'model_tmp_lod2.pth'))
  return models, path, style_checkpoint.load_reference_checkpoint(path, _model())


def _max_diff(ours, want, what, diffs):
  ours = np.asarray(ours, np.float64)
  diffs[what] = float(np.max(np.abs(ours - want)))
  np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-4, err_msg=what)


@pytest.mark.parametrize('lod,alpha', [(2, None), (2, 0.3), (1, 0.3), (0, None)])
def test_imported_networks_reproduce_the_reference_forward_pass(reference, lod, alpha):
  models, _, converted = reference
  model = _model()
  rng = np.random.default_rng(10 + lod)
  size = 2 ** (lod + 2)
  x = rng.uniform(-1, 1, (2, CHANNELS, size, size))  # NCHW, as the reference
  z = rng.normal(size=(2, LATENT))
  blend = 1.0 if alpha is None else alpha
  diffs = {}
  with jax.default_matmul_precision('highest'):
    for name, params in (('', converted), ('_s', converted['ema'])):
      mu, logvar = model.encode(params['encoder_params'],
                                np.transpose(x, (0, 2, 3, 1)).astype(np.float32), lod, alpha)
      want_mu, want_logvar = np_mapping_tl(models['mapping_tl' + name],
                                           np_encoder(models['discriminator' + name], x, lod,
                                                      blend))
      _max_diff(mu, want_mu, f'mu{name}', diffs)
      _max_diff(logvar, want_logvar, f'logvar{name}', diffs)
      image = model.decode(params['decoder_params'], z.astype(np.float32), lod, alpha, None)
      want = np_generator(models['generator' + name],
                          np_mapping_fl(models['mapping_fl' + name], z), lod, blend)
      assert image.shape == (2, size, size, CHANNELS)
      _max_diff(np.transpose(np.asarray(image), (0, 3, 1, 2)), want, f'image{name}', diffs)
  print(f'lod {lod} alpha {alpha}: max |ours - reference|', diffs)


def test_every_leaf_is_converted_with_the_model_shapes(reference):
  models, _, converted = reference
  model = _model()
  enc, dec, _ = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  for got in (converted, converted['ema']):
    for half, want in (('encoder_params', enc), ('decoder_params', dec)):
      assert jax.tree.structure(got[half]) == jax.tree.structure(want)
      for g, w in zip(jax.tree.leaves(got[half]), jax.tree.leaves(want)):
        assert g.shape == w.shape and g.dtype == np.float32
  np.testing.assert_array_equal(converted['dlatent_avg'], models['dlatent_avg']['buff'])
  # Parameters no forward pass with noise=False reads: the noise weights; and the layouts.
  block = converted['decoder_params']['decoder']['decode_block_1']
  np.testing.assert_array_equal(block['noise_weight_2'],
                                models['generator']['decode_block.1.noise_weight_2'][0, :, 0, 0])
  np.testing.assert_array_equal(
      converted['ema']['decoder_params']['decoder']['decode_block_2']['conv_1']['kernel'],
      models['generator_s']['decode_block.2.conv_1.weight'].transpose(2, 3, 0, 1))
  np.testing.assert_array_equal(converted['decoder_params']['decoder']['const'],
                                models['generator']['const'].transpose(0, 2, 3, 1))
  assert style_checkpoint.infer_architecture(models) == dict(
      image_size=IMAGE_SIZE, latent=LATENT, start_channels=START, max_channels=MAXF,
      mapping_layers=MAPPING, image_channels=CHANNELS)
  # Without the `_s` modules there is no EMA.
  plain = {k: v for k, v in models.items() if not k.endswith('_s')}
  assert style_checkpoint.convert_models(plain, model)['ema'] is None


@pytest.mark.parametrize('save', [torch_files.save_zip, torch_files.save_legacy],
                         ids=['zip', 'legacy'])
def test_the_reference_checkpointer_layout_imports_without_touching_its_classes(
    reference, tmp_path, save, monkeypatch, caplog):
  """Every file the reference's training writes holds its tracker's RunningMeanTorch objects
  (issue 31): it imports, with the tensors of its state dicts, and the `tracker` module is
  neither imported nor looked into."""
  models = reference[0]
  torch_files.ModuleTrap.looked_up.clear()
  monkeypatch.setitem(sys.modules, 'tracker', torch_files.ModuleTrap('tracker'))
  path = _save(models, str(tmp_path / 'model_tmp_lod2.pth'), save)
  with caplog.at_level('WARNING'):
    converted = style_checkpoint.load_reference_checkpoint(path, _model())
  assert not torch_files.ModuleTrap.looked_up and not caplog.records
  want = style_checkpoint.convert_models(models, _model())
  assert jax.tree.structure(converted) == jax.tree.structure(want)
  for got, expected in zip(jax.tree.leaves(converted), jax.tree.leaves(want)):
    np.testing.assert_array_equal(got, expected)
  auxiliary = torch_archive.load(path)['auxiliary']
  assert sorted(auxiliary) == ['decoder_optimizer', 'encoder_optimizer', 'scheduler', 'tracker']
  track = auxiliary['tracker']['tracks']['loss_e']
  assert isinstance(track, torch_archive.Foreign) and type(track).__name__ == (
      'tracker.RunningMeanTorch')


def _broken(change):
  models = {k: collections.OrderedDict(v) for k, v in _reference_models().items()}
  change(models)
  return models


@pytest.mark.parametrize('change,match', [
    # The fused transposed kernel saved as a Conv2d's [out, in, 3, 3].
    (lambda m: m['generator'].update({'decode_block.2.conv_1.weight': np.zeros((8, 16, 3, 3),
                                                                               np.float32)}),
     r"'decode_block\.2\.conv_1\.weight' has shape \(8, 16, 3, 3\) where the model needs "
     r'\(16, 8, 3, 3\)'),
    (lambda m: m['discriminator_s'].pop('encode_block.1.style_2.bias'),
     r"models\['discriminator_s'\].*lacks 'encode_block\.1\.style_2\.bias'"),
    (lambda m: m['mapping_fl'].update({'map_blocks.2.fc.weight': np.zeros((16, 16), np.float32)}),
     r"'map_blocks\.2\.fc\.weight'.*mapping_layers: file 3, model 2"),
    (lambda m: m.pop('mapping_tl'), r"no 'mapping_tl'"),
    (lambda m: m.pop('generator_s'), r"not \['generator_s'\]"),
    (lambda m: m['dlatent_avg'].update(buff=np.zeros((4, 16), np.float32)),
     r"'buff'\] has shape \(4, 16\) where the model needs \(6, 16\)"),
])
def test_a_checkpoint_that_does_not_fit_names_the_tensor(change, match):
  with pytest.raises(style_checkpoint.StyleCheckpointError, match=match):
    style_checkpoint.convert_models(_broken(change), _model())


def test_a_plain_state_dict_is_not_a_training_checkpoint(tmp_path):
  path = str(tmp_path / 'generator.pth')
  torch_files.save_zip(torch_files.state_dict(_reference_models()['generator']), path)
  with pytest.raises(style_checkpoint.StyleCheckpointError, match="plain state dict.*no 'models'"):
    style_checkpoint.load_reference_checkpoint(path, _model())
  # A pickled model object (torch.save(model)) loads as an inert record, named in the error.
  model = torch_files.Object(torch_files.Global('model', 'SoftIntroVAEModelTL'), {'training': True})
  torch_files.save_zip(model, path)
  with pytest.raises(style_checkpoint.StyleCheckpointError,
                     match="a pickled model.SoftIntroVAEModelTL object, with no 'models'"):
    style_checkpoint.load_reference_checkpoint(path, _model())


_CONFIG = '''
from configs import default


def get_config():
  c = default.get_config()
  c.variant = 'style'
  c.dataset = 'image_folder'
  c.image_size = {image_size}
  c.z_dim = {latent}
  c.scale = 1e-3
  c.keep_checkpoints = 1
  # Assigned whether or not configs/default.py has the style fields yet.
  c.style_start_channels = {start}
  c.style_max_channels = {maxf}
  c.style_mapping_layers = {mapping}
  c.style_fused_from = {fused_from}
  c.style_lod_images = (64, 96, 96)
  c.style_lod_batch = (8, 8, 4)
  c.style_lod_learning_rate = (0.0015, 0.0015, 0.002)
  c.style_lod_beta_neg = (2048.0, 2048.0, 1024.0)
  c.style_fade_images = 32
  c.style_vae_images = 16
  return c
'''


def test_the_script_writes_a_finished_run_that_restores(reference, tmp_path, capsys, caplog):
  from scripts import import_style_checkpoint as script  # pylint: disable=g-import-not-at-top
  models, path, converted = reference
  config_file = tmp_path / 'tiny_style.py'
  config_file.write_text(_CONFIG.format(image_size=IMAGE_SIZE, latent=LATENT, start=START,
                                        maxf=MAXF, mapping=MAPPING, fused_from=FUSED_FROM))
  workdir = str(tmp_path / 'run')
  caplog.set_level('INFO')
  assert script.main([path, f'--workdir={workdir}', f'--config={config_file}']) == 0
  config = script._parse(['x', path, f'--workdir={workdir}', f'--config={config_file}'])[2]
  step = progressive.total_steps(progressive.phases_from_config(config))
  assert step == 2 + 6 + 4 + 8 + 8 + 16  # vae 16/8, 48/8; fade 32/8, 64/8; fade 32/4, 64/4
  assert capsys.readouterr().out.strip() == os.path.join(workdir, 'checkpoints', str(step))
  # Restored into the train state's structure (abstract: no second initialisation).
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                        jax.eval_shape(lambda key: style_step.create_style_state(_model(), key),
                                       jax.random.PRNGKey(config.seed))[0])
  with workdir_lib.checkpoint_manager(workdir, config) as manager:
    assert manager.all_steps() == [step]
    restored = manager.restore(step, args=ocp.args.StandardRestore(target))
  assert int(restored.step) == step
  for got, want in ((restored.encoder_params, converted['encoder_params']),
                    (restored.decoder_params, converted['decoder_params']),
                    (restored.ema, converted['ema']),
                    (restored.dlatent_avg, models['dlatent_avg']['buff'])):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_array_equal(np.asarray(g), w)
  saved = json.loads((tmp_path / 'run' / 'config.json').read_text())
  assert saved['image_size'] == IMAGE_SIZE and saved['variant'] == 'style'

  # A second import into the same workdir is refused; so is a config of another architecture.
  assert script.main([path, f'--workdir={workdir}', f'--config={config_file}']) == 1
  assert 'already holds checkpoints' in capsys.readouterr().err
  other = str(tmp_path / 'other')
  assert script.main([path, f'--workdir={other}', f'--config={config_file}',
                      '--config.style_max_channels=8', '--config.z_dim=32']) == 1
  err = capsys.readouterr().err
  assert 'latent: file 16, config 32' in err and '--config.z_dim=16' in err, err
  assert '--config.style_max_channels=16' in err and len(err.strip().splitlines()) == 1, err
  assert not os.path.exists(os.path.join(other, 'checkpoints'))

  # Without EMA modules the trained networks are the sampling model, and the log says so.
  plain = _save({k: v for k, v in models.items() if not k.endswith('_s')},
                str(tmp_path / 'plain.pth'))
  caplog.clear()
  assert script.main([plain, f'--workdir={tmp_path / "plain"}', f'--config={config_file}']) == 0
  assert 'holds no EMA networks' in caplog.text
  with workdir_lib.checkpoint_manager(str(tmp_path / 'plain'), config) as manager:
    restored = manager.restore(step, args=ocp.args.StandardRestore(target))
  for g, w in zip(jax.tree.leaves(restored.ema['decoder_params']),
                  jax.tree.leaves(converted['decoder_params'])):
    np.testing.assert_array_equal(np.asarray(g), w)
  # Bad flags: exit 2, with the usage.
  assert script.main([path, f'--config={config_file}']) == 2
  assert '--workdir is required' in capsys.readouterr().err
