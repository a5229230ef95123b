"""Run as one of two processes: each host's FID rows gathered, in process order, on every host.

Usage: python tests/fid_hosts_check.py COORDINATOR_ADDRESS PROCESS_ID (two processes, 2 devices
each); prints JSON. tests/test_fid_training.py starts both and checks what they print.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sintrovae_jax import fid, parallel  # pylint: disable=g-import-not-at-top


def main(address, process_id):
  parallel.initialize_distributed(address, 2, process_id)
  share = fid.host_share(11)
  # Rows made from the global indices this host owns: 6 rows on host 0, 5 on host 1.
  rows = np.stack([share, share * 10.0], axis=1).astype(np.float32)
  gathered = fid.gather_hosts(rows)
  print(json.dumps({'process': process_id, 'share': share.tolist(),
                    'gathered': gathered.tolist()}))


if __name__ == '__main__':
  main(sys.argv[1], int(sys.argv[2]))
