"""Runs the 4-devices-equal-1-device checks N times while other processes keep every core busy.

Not collected by pytest (it takes many minutes); the robustness check behind the XLA flags in
`cpu_devices_env`, run by hand:

  python tests/loaded_multidevice_check.py --runs=10 --kinds=2d,image
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests'))
from devices import cpu_devices_env  # pylint: disable=g-import-not-at-top


def _spin():
  while True:
    pass


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--runs', type=int, default=10)
  parser.add_argument('--kinds', default='2d,image')
  parser.add_argument('--busy', type=int, default=os.cpu_count(), help='spinning processes')
  parser.add_argument('--xla_defaults', action='store_true',
                      help='XLA\'s own rendezvous limits (20 s warning, 40 s more to abort)')
  args = parser.parse_args()
  env = cpu_devices_env(4)
  if args.xla_defaults:
    env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=4'
  spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
  for p in spinners:
    p.start()
  passed, failures = 0, []
  try:
    for run in range(args.runs):
      for kind in args.kinds.split(','):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, 'tests/multidevice_check.py', kind], cwd=ROOT,
                             env=env, text=True, capture_output=True,
                             timeout=1800)
        ok = out.returncode == 0 and json.loads(out.stdout.strip().splitlines()[-1])['devices'] == 4
        passed += ok
        if not ok:
          failures.append((run, kind, out.stderr[-500:]))
        print(f'run {run + 1} {kind}: {"pass" if ok else "FAIL"} in '
              f'{time.perf_counter() - t0:.0f} s', flush=True)
  finally:
    for p in spinners:
      p.terminate()
  total = args.runs * len(args.kinds.split(','))
  print(f'{passed} of {total} passed with {args.busy} busy processes on {os.cpu_count()} cores')
  for f in failures:
    print('failure:', f)
  sys.exit(0 if passed == total else 1)


if __name__ == '__main__':
  main()
