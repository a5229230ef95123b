"""How much of a 2D KL/JSD figure is the metric's own sampling noise (5,000 points, 100 x 100 bins).

For each data set: the KL and JSD between two independent samples of the data itself (what a perfect
generator would score) and, with `--workdirs`, the spread of a trained run's figures over fresh
evaluation draws (new real points and new generated points, same parameters).

  python scripts/metric_noise_2d.py --draws=10 --workdirs=runs/rings_s92
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from sintrovae_jax.core import inference  # pylint: disable=g-import-not-at-top
from sintrovae_jax.data import toy as toy_data
from sintrovae_jax.evaluators import metrics_2d
from sintrovae_jax.program import standard, workdir as workdir_lib


def spread(pairs, grid_range):
  """Mean, sd, min and max of KL and JSD over (real, fake) pairs."""
  values = [metrics_2d.kl_and_jsd(real, fake, grid_range) for real, fake in pairs]
  out = {}
  for k in ('kl', 'jsd'):
    v = np.array([m[k] for m in values])
    out[k] = f'{v.mean():.3f} ± {v.std(ddof=1):.3f} (min {v.min():.3f}, max {v.max():.3f})'
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--datasets', default=','.join(toy_data.DATASETS))
  parser.add_argument('--draws', type=int, default=10)
  parser.add_argument('--num_points', type=int, default=5000)
  parser.add_argument('--workdirs', default='', help='comma-separated main.py 2D workdirs')
  args = parser.parse_args()
  n = args.num_points
  print('| data set | source | KL (mean ± sd over draws) | JSD |\n|---|---|---|---|')
  for ds in args.datasets.split(','):
    pairs = [(toy_data.sample(ds, n, np.random.default_rng([1, d])),
              toy_data.sample(ds, n, np.random.default_rng([2, d]))) for d in range(args.draws)]
    s = spread(pairs, toy_data.GRID_RANGE[ds])
    print(f"| {ds} | data vs data (a perfect generator) | {s['kl']} | {s['jsd']} |")
  for workdir in filter(None, args.workdirs.split(',')):
    config = workdir_lib.load_config(workdir)
    exp = standard.build(config)
    state = workdir_lib.latest_checkpoint_state(exp, workdir, 'measure')
    ds = config.dataset
    pairs = [(toy_data.sample(ds, n, np.random.default_rng([3, d])),
              np.asarray(inference.sample(exp.model, state, jax.random.PRNGKey(4 + d), n)))
             for d in range(args.draws)]
    s = spread(pairs, toy_data.GRID_RANGE[ds])
    print(f"| {ds} | {workdir}, step {int(state.step)} | {s['kl']} | {s['jsd']} |")


if __name__ == '__main__':
  main()
