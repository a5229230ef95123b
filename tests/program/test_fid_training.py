"""FID in the training program: 4 devices equal 1, and two hosts share the work and its errors.

(A tiny image run that writes fid, kid and fid_rec during training and in its final evaluation,
and --mode=fid from its checkpoint, is tests/program/test_main.py's image folder run.)"""

import json
import sys

import numpy as np

from devices import cpu_devices_env
import processes
from runs import ROOT, free_port, run_check


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
  procs = [processes.Popen([sys.executable, 'tests/fid_hosts_check.py', address, str(i)],
                           cwd=ROOT, env=cpu_devices_env(2), text=True,
                           stdout=processes.PIPE, stderr=processes.PIPE) for i in range(2)]
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
