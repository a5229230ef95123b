"""FID in the training program: a small image run writes fid, kid and fid_rec; devices agree."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import mnist
from devices import cpu_devices_env
from sintrovae_jax.program import standard, train
from runs import ROOT, free_port, run_check
from tiny import TINY_IMAGE

TINY = dict(TINY_IMAGE, fid_every_steps=2, fid_num_samples=6, fid_num_reference=8,
            fid_batch_size=8, kid_subset_size=5, fid_matrix_sqrt='eigh')


@pytest.mark.long
@pytest.mark.default_python_only
def test_image_run_writes_fid_kid_and_fid_rec(tmp_path, fid_weights):
  workdir = str(tmp_path / 'run')
  with tfds.testing.mock_data(num_examples=12):
    config = mnist.get_config()
    config.update(dict(TINY, fid_inception_weights=fid_weights))
    results = train.train_and_evaluate(config, workdir)
    for key in ('fid', 'kid', 'kid_std', 'fid_rec'):
      assert np.isfinite(results[key]) and results[key] >= 0 or key == 'kid', (key, results)
    assert (results['fid_num_samples'], results['fid_num_reference'],
            results['fid_num_reconstructions']) == (6, 8, 6)
    saved = json.load(open(os.path.join(workdir, 'eval_results.json')))
    assert {k: saved[k] for k in ('fid', 'kid', 'fid_rec')} == {
        k: results[k] for k in ('fid', 'kid', 'fid_rec')}
    rows = [json.loads(l) for l in open(os.path.join(workdir, 'history.jsonl'))]
    assert [r['step'] for r in rows if 'fid' in r] == [2, 4]
    assert os.path.exists(os.path.join(workdir, 'pictures', 'fid_curves.png'))
    cache = os.listdir(os.path.join(workdir, 'fid_cache'))
    assert len([c for c in cache if c.startswith('reference_')]) == 1

    # --mode=fid's path on the same checkpoint, from the cached reference statistics: the same
    # numbers. (That generation does not depend on the batch is shown by 4 devices == 1 below.)
    again = standard.fid_from_checkpoint(config, workdir)
  assert again['step'] == 4
  for key in ('fid', 'kid', 'fid_rec'):
    np.testing.assert_allclose(again[key], results[key], rtol=1e-6)
  assert json.load(open(os.path.join(workdir, 'fid_results.json')))['fid'] == again['fid']


def test_four_devices_equal_one_device(fid_weights):
  """4 devices in a process of their own; 1 device in this one (the same XLA flags otherwise)."""
  import fid_multidevice_check  # pylint: disable=g-import-not-at-top
  four = run_check('fid_multidevice_check.py', fid_weights, env=cpu_devices_env(4))
  one = fid_multidevice_check.results(fid_weights)
  assert (one['devices'], four['devices']) == (1, 4)
  for key in ('fid', 'kid', 'kid_std', 'fid_rec'):
    np.testing.assert_allclose(four[key], one[key], rtol=1e-6)


def test_two_hosts_gather_rows_agree_on_batch_counts_and_fail_together():
  address = f'127.0.0.1:{free_port()}'
  procs = [subprocess.Popen([sys.executable, 'tests/fid_hosts_check.py', address, str(i)],
                            cwd=ROOT, env=cpu_devices_env(2), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
  outs = [p.communicate(timeout=240) for p in procs]
  assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
  results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
  assert results[0]['share'] == list(range(6)) and results[1]['share'] == list(range(6, 11))
  expected = [[float(i), 10.0 * i] for i in range(11)]
  assert results[0]['gathered'] == results[1]['gathered'] == expected
  assert results[0]['counts'] == [2, 2, 2] and results[1]['counts'] == [2, 0, 0]
  for r in results:  # host 1's error on both hosts; rebuilt as its class when it is known
    assert r['broadcast'] == {'from': 0} and r['all'] == [True, False]
    assert r['raised'][0] == ['FidError', 'host 1 has no images']
  assert results[0]['raised'][1] == ['HostError',
                                     'process 1 failed (FidError): host 1 has no images']
  assert results[1]['raised'][1] == ['FidError', 'host 1 has no images']  # its own, re-raised
