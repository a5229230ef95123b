"""Run as one of two processes: each host's FID rows gathered, in process order, on every host;
batch counts made equal over hosts; a failure on one host raised on both (hosts.together).

Usage: python tests/fid_hosts_check.py COORDINATOR_ADDRESS PROCESS_ID (two processes, 2 devices
each); prints JSON. tests/program/test_fid_training.py starts both and checks what they print.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sintrovae_jax.evaluators import fid  # pylint: disable=g-import-not-at-top
from sintrovae_jax.io import hosts


def main(address, process_id):
  hosts.initialize(address, 2, process_id)
  share = fid.host_share(11)
  # Rows made from the global indices this host owns: 6 rows on host 0, 5 on host 1.
  rows = np.stack([share, share * 10.0], axis=1).astype(np.float32)
  gathered = fid.gather_hosts(rows)
  # Unequal batch counts (3 on host 0, 1 on host 1): both run as many pmapped calls.
  batches = [np.full((2, 3), process_id, np.float32)] * (3 if process_id == 0 else 1)
  counts = [len(b) for b in fid.equal_counts(batches)]
  # A failure on host 1 only: both hosts raise it (as its own class, or HostError).
  def fail_on_1():
    if process_id == 1:
      raise fid.FidError('host 1 has no images')
    return 'fine'
  raised = []
  for errors in ((fid.FidError,), ()):
    try:
      hosts.together(fail_on_1, errors=errors)
    except Exception as e:  # pylint: disable=broad-except
      raised.append([type(e).__name__, str(e)])
  print(json.dumps({'process': process_id, 'share': share.tolist(),
                    'gathered': gathered.tolist(), 'counts': counts, 'raised': raised,
                    'broadcast': hosts.broadcast({'from': process_id}),
                    'all': [hosts.all_hosts(True), hosts.all_hosts(process_id == 0)]}))


if __name__ == '__main__':
  main(sys.argv[1], int(sys.argv[2]))
