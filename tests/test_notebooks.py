"""The tutorial notebooks (notebooks/): executed headless in tiny mode, their committed full-mode
outputs, the README's Colab badges, and the 2D notebook's own loop against main.py."""

import json
import os
import re
import subprocess
import sys

import nbformat
import numpy as np
import pytest

from configs import toy2d
from sintrovae_jax.program import standard, train
from runs import ROOT, restored  # pylint: disable=g-bad-import-order

sys.path.insert(0, os.path.join(ROOT, 'scripts'))
import run_notebooks  # pylint: disable=g-import-not-at-top,wrong-import-position

NOTEBOOKS = {name: os.path.join(run_notebooks.NOTEBOOK_DIR, name)
             for name in run_notebooks.NOTEBOOKS}

# Appended to the 2D notebook: what its loop trained on 8Gaussians, for the comparison with main.py.
_DUMP_2D = '''
import json as _json
from flax import traverse_util as _tu
_run = runs['8gaussians']
_params = {'encoder': _run['state'].encoder_params, 'decoder': _run['state'].decoder_params}
np.savez(PATH, **{'/'.join(k): np.asarray(v)
                 for k, v in _tu.flatten_dict(jax.device_get(_params)).items()})
with open(PATH + '.json', 'w') as _f:
  _json.dump(dict(run=RUN, seed=SEED, results=_run['results'], step=int(_run['state'].step)), _f)
'''


def _all_outputs(nb):
  return [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]


def _outputs(nb, output_type):
  return [o for o in _all_outputs(nb) if o.output_type == output_type]


def _images(nb):
  return [o for o in _all_outputs(nb) if 'image/png' in o.get('data', {})]


def _printed(nb):
  return ''.join(o.get('text', '') for o in _outputs(nb, 'stream'))


@pytest.fixture(scope='module')
def tiny_2d(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('notebook_2d') / 'eight_gaussians.npz')
  nb = run_notebooks.execute(NOTEBOOKS['soft_intro_vae_2d.ipynb'], {'TINY': True},
                             extra_cells=[_DUMP_2D.replace('PATH', repr(path))], timeout=600)
  return nb, path


def test_2d_notebook_runs_headless_in_tiny_mode(tiny_2d):
  nb, _ = tiny_2d
  assert not _outputs(nb, 'error')
  # The expELBO curve, a scatter and a density per data set, the KL curves.
  assert len(_images(nb)) >= 4
  text = _printed(nb)
  assert 'by hand from the terms' in text and '| 8gaussians | 40 |' in text


def test_2d_notebook_loop_trains_what_main_py_trains(tiny_2d, tmp_path):
  """The notebook's loop (jit of make_train_step, fed by toy_data.batches) and main.py (pmapped
  phase steps, fed by input_pipeline) end with the same parameters and evaluation."""
  _, path = tiny_2d
  with open(path + '.json') as f:
    saved = json.load(f)
  run = saved['run']
  assert saved['step'] == run['steps'] == 40 and run['vae_steps'] > 0
  config = toy2d.get_config('8gaussians')
  config.update(dict(mlp_hidden=tuple(run['hidden']), batch_size=run['batch_size'],
                     num_train_steps=run['steps'], num_vae_steps=run['vae_steps'],
                     lr_decay_steps=tuple(run['lr_decay_steps']),
                     num_eval_points=run['num_eval_points'], seed=saved['seed'],
                     log_every_steps=10, checkpoint_every_steps=run['steps'],
                     sample_every_steps=run['steps']))
  workdir = str(tmp_path / 'main')
  results = train.train_and_evaluate(config, workdir)
  exp = standard.build(config)
  state = restored(workdir, config, exp.state)
  assert int(state.step) == run['steps']
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  want = traverse_util.flatten_dict({'encoder': state.encoder_params,
                                     'decoder': state.decoder_params})
  with np.load(path) as got:
    assert sorted(got.files) == sorted('/'.join(k) for k in want)
    initial = traverse_util.flatten_dict({'encoder': exp.state.encoder_params,
                                          'decoder': exp.state.decoder_params})
    for k, v in want.items():
      assert not np.allclose(v, initial[k])  # trained, so equality below means something
      np.testing.assert_allclose(got['/'.join(k)], v, rtol=1e-5, atol=1e-6, err_msg=str(k))
  for k in ('kl', 'jsd', 'gnelbo', 'modes_covered', 'rec_error_deterministic'):
    np.testing.assert_allclose(saved['results'][k], results[k], rtol=1e-4, err_msg=k)


@pytest.mark.long
@pytest.mark.default_python_only
def test_images_notebook_runs_headless_in_tiny_mode():
  nb = run_notebooks.execute(NOTEBOOKS['soft_intro_vae_images.ipynb'], {'TINY': True},
                             timeout=900)
  assert not _outputs(nb, 'error')
  text = _printed(nb)
  for expected in ('main.py:', 'eval_results.json', 'FID', 'AUROC', 'bits/dim',
                   'complexity: AUROC', 'regret: AUROC'):
    assert expected in text, expected
  # One figure each: real digits; real | rec | samples; interpolation; KL curves; main.py's grid;
  # main.py's two curves; trained vs EMA samples; the three OOD histograms; complexity and regret.
  assert len(_images(nb)) == 9


@pytest.mark.parametrize('name', sorted(NOTEBOOKS))
def test_committed_notebook_keeps_a_full_run_with_pictures(name):
  """What the repository page shows: every cell run once, in order, by scripts/run_notebooks.py
  in full mode (no injected parameters), with pictures and without errors."""
  nb = nbformat.read(NOTEBOOKS[name], as_version=4)
  code = [c for c in nb.cells if c.cell_type == 'code']
  assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
  assert not _outputs(nb, 'error')
  assert len(_images(nb)) >= 4
  tags = [t for c in code for t in c.metadata.get('tags', [])]
  assert tags.count('parameters') == 1 and 'injected-parameters' not in tags
  assert re.search(r'^TINY = False\b', code[0].source, re.M)


def test_readme_links_each_notebook_with_a_colab_badge():
  with open(os.path.join(ROOT, 'pyproject.toml')) as f:
    repository = re.search(r'^Repository = "(.+)"$', f.read(), re.M).group(1)
  owner_repo = repository.removeprefix('https://github.com/')
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  for name, path in NOTEBOOKS.items():
    colab = f'https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{name}'
    assert f'[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})' in readme
    nb = nbformat.read(path, as_version=4)
    assert colab in nb.cells[0].source  # the notebook's own badge
    assert f"REPOSITORY = '{repository}'" in ''.join(c.source for c in nb.cells)


def test_plotting_leaves_the_matplotlib_backend_alone():
  """A notebook's inline backend survives importing the library's plotting (it once forced Agg,
  which silenced every plt.show() after it)."""
  code = ('import matplotlib; matplotlib.use("svg"); import numpy as np; '
          'from sintrovae_jax.io import plotting; '
          'image = plotting.curves([0, 1], {"a": [1.0, 2.0]}); '
          'assert image.ndim == 3 and image.shape[-1] == 3, image.shape; '
          'print(matplotlib.get_backend())')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == 'svg'
