"""Reproduces the paper's Table 1 (2D data) for several seeds at once, and writes a Markdown table.

All seeds of a data set train side by side in one compiled program (`vmap` over the train state,
`lax.scan` over chunks of steps), with the published settings of configs/toy2d.py. Seed s sees
exactly the batches `main.py --config=configs/toy2d.py:DATASET --config.seed=s` would, and is
evaluated as main.py evaluates. No TensorFlow needed, so it runs on the GPU machine as well.

  python scripts/reproduce_2d.py --seeds=92,93,94 --out=docs/results.md
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

import sintrovae_jax as sv  # pylint: disable=g-import-not-at-top
from configs import toy2d  # pylint: disable=g-import-not-at-top
from sintrovae_jax.data import toy as toy_data  # pylint: disable=g-import-not-at-top
from sintrovae_jax.evaluators import quality as evaluation
from sintrovae_jax.io import plotting
from sintrovae_jax.program import config_lib

# ANCHORS.md: the authors' code, seed 92, (KL, JSD, gnELBO, wall seconds on this 2-core CPU).
REFERENCE = {'8gaussians': (2.0844, 1.3657, 6.27e-08, 2807),
             '2spirals': (11.2964, 4.0384, 5.43e-07, 2749),
             'checkerboard': (20.3248, 9.6491, 6.54e-07, 2786),
             'rings': (10.3288, 4.2275, 5.83e-07, 2790)}


def train_seeds(config, seeds, chunk: int, report_every: int = 5000):
  """Trains `config` once per seed, vmapped; returns (stacked final states, model).

  `config` is a configs/toy2d.py config (any overrides applied); its own `seed` is ignored.
  Prints progress every `report_every` steps.
  """
  dataset, num_steps = config.dataset, config.num_train_steps
  config_lib.validate(config, num_devices=1)
  model = config_lib.create_model(config, (2,))
  weights = config_lib.loss_weights(config, (2,))
  tx = sv.make_optimizer(sv.learning_rate_schedule(config.learning_rate,
                                                   tuple(config.lr_decay_steps),
                                                   config.lr_decay_factor))
  keys = np.stack([np.asarray(jax.random.PRNGKey(s)) for s in seeds])
  states = jax.vmap(lambda k: sv.create_train_state(model, k, (2,), tx))(keys)

  def chunk_fn(phase):
    step = jax.vmap(sv.make_train_step(model, weights, phase=phase))

    def run(states, batches):
      states, metrics = jax.lax.scan(step, states, batches)
      return states, jax.tree.map(lambda m: m[-1], metrics)

    return jax.jit(run, donate_argnums=(0,))

  runners = {'vae': chunk_fn('vae'), 'soft_intro': chunk_fn('soft_intro')}
  t, reported, clock = 0, 0, time.perf_counter()
  while t < num_steps:
    phase = 'vae' if t < config.num_vae_steps else 'soft_intro'
    end = min(t + chunk, num_steps, config.num_vae_steps if phase == 'vae' else num_steps)
    batches = np.stack([np.stack([toy_data.sample(dataset, config.batch_size,
                                                  np.random.default_rng([s, i])) for s in seeds])
                        for i in range(t, end)])
    states, metrics = runners[phase](states, batches)
    t = end
    if t - reported >= report_every or t == num_steps:  # progress; syncs with the device
      kl = {k: np.round(np.asarray(metrics[k], np.float64), 3).tolist()
            for k in ('kl_real', 'kl_fake')}
      now = time.perf_counter()
      print(f'{dataset}: step {t}/{num_steps}, {(t - reported) / (now - clock):.1f} it/s, '
            f'per seed {kl}', flush=True)
      reported, clock = t, now
  jax.block_until_ready(states)
  assert not np.any(np.asarray(metrics['nonfinite'])), f'{dataset}: non-finite steps at the end'
  return states, model


def evaluate_seed(dataset, model, state, config, workdir, seed):
  real = toy_data.sample(dataset, config.num_eval_points, np.random.default_rng(config.eval_seed))
  data = toy_data.sample(dataset, 12_800, np.random.default_rng(config.eval_seed + 1))
  r = toy_data.GRID_RANGE[dataset]
  results = evaluation.evaluate_points(model, state, real, data, r, config.eval_seed,
                                       toy_data.MODE_CENTRES.get(dataset))
  fake = np.asarray(sv.sample(model, state, jax.random.PRNGKey(config.eval_seed),
                              config.num_eval_points))
  os.makedirs(workdir, exist_ok=True)
  plotting.save_png(plotting.scatter_2d(real, fake, r, f'{dataset}, seed {seed}'),
                    os.path.join(workdir, f'{dataset}_seed{seed}_scatter.png'))
  plotting.save_png(plotting.density_2d(evaluation.density_on_grid(model, state, r), r,
                                        f'{dataset}, seed {seed}'),
                    os.path.join(workdir, f'{dataset}_seed{seed}_density.png'))
  return results


def mean_sd(values):
  return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--datasets', default=','.join(toy_data.DATASETS))
  parser.add_argument('--seeds', default='92,93,94')
  parser.add_argument('--steps', type=int, default=30_000)
  parser.add_argument('--chunk', type=int, default=500, help='steps per compiled scan')
  parser.add_argument('--workdir', default='runs/reproduce_2d')
  parser.add_argument('--out', default='', help='Markdown file for the table (default: print)')
  args = parser.parse_args()
  seeds = [int(s) for s in args.seeds.split(',')]
  device = jax.devices()[0]
  start = time.perf_counter()
  rows, raw = [], {}
  for dataset in args.datasets.split(','):
    t0 = time.perf_counter()
    config = toy2d.get_config(dataset)
    config.num_train_steps = args.steps
    states, model = train_seeds(config, seeds, args.chunk)
    per_seed = [evaluate_seed(dataset, model, jax.tree.map(lambda x, i=i: x[i], states), config,
                              args.workdir, s) for i, s in enumerate(seeds)]
    wall = time.perf_counter() - t0
    raw[dataset] = per_seed
    ref = REFERENCE[dataset]
    kl, jsd, gn = (mean_sd([r[k] for r in per_seed]) for k in ('kl', 'jsd', 'gnelbo'))
    modes = ('/'.join(str(r['modes_covered']) for r in per_seed) + ' of 8'
             if 'modes_covered' in per_seed[0] else '-')
    rows.append(f'| {dataset} | {kl[0]:.4f} ± {kl[1]:.4f} | {ref[0]:.4f} | {jsd[0]:.4f} ± '
                f'{jsd[1]:.4f} | {ref[1]:.4f} | {gn[0]:.3g} ± {gn[1]:.2g} | {ref[2]:.3g} | {modes} '
                f'| {wall:.0f} s |')
    print(rows[-1], flush=True)
  total = time.perf_counter() - start
  command = 'python scripts/reproduce_2d.py ' + ' '.join(sys.argv[1:])
  table = '\n'.join([
      f'Device: {device.device_kind} ({device.platform}), JAX {jax.__version__}; seeds {seeds}, '
      f'{args.steps} iterations each, all seeds of a data set in one vmapped program.',
      f'Command: `{command}`. Total wall time (training and evaluation, compiles included): '
      f'{total:.0f} s.', '',
      '| data set | KL (mean ± sd) | reference KL | JSD | reference JSD | gnELBO | reference '
      'gnELBO | 8gaussians modes covered | wall time, all seeds |',
      '|---|---|---|---|---|---|---|---|---|', *rows, '',
      'Per-seed values: `' + json.dumps(raw) + '`', ''])
  print(table)
  if args.out:
    with open(args.out, 'a') as f:
      f.write('\n' + table)


if __name__ == '__main__':
  main()
