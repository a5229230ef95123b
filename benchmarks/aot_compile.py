"""Compiles a config's train step for a TPU topology without a TPU, and reports per chip.

JAX compiles for a TPU topology description (`jax.experimental.topologies`) with only `libtpu`
installed (`pip install libtpu`, the version `jax[tpu]` pins): no TPU needed. The step is the one
main.py runs (uint8 batches scaled on the device, BatchNorm statistics and gradients averaged over
all chips), under `shard_map` on a 1D mesh over the topology's chips, or (`--path=pmap`) under
`jax.pmap` over them as main.py runs it. Per chip it prints what XLA's memory and cost analyses say of the compiled program
(arguments, outputs, temporaries against the chip's HBM; FLOPs and bytes accessed), the number
and total size of its all-reduces, and a roofline estimate of the step time and images/s from the
chip's published peaks (benchmarks/roofline.py; read it as a floor: on an H200 the measured steps
took 5 to 17x the same estimate, docs/benchmarks.md).

  pip install libtpu==0.0.42.1   # what jax[tpu]==0.10.2 pins; `pip install --dry-run 'jax[tpu]'`
  python benchmarks/aot_compile.py --config=configs/cifar10.py --topology=v5e:2x2 \\
      --per_chip_batch=32,64 --dtype=bfloat16

The style variant (configs/ffhq256.py, configs/celebahq256_style.py) compiles one progressive
phase's step, `--style_phase` (default: the last, full-size stable phase):

  python benchmarks/aot_compile.py --config=configs/ffhq256.py --topology=v5e:2x2 \\
      --per_chip_batch=4,8 --dtype=bfloat16 --style_phase=256px_stable

With two or more batches it also extrapolates the largest per-chip batch that fits, by a line
through the compiled sizes. Compile that batch to confirm it: near a chip's limit XLA's need is not
linear in the batch (CelebA-HQ 1024 on v5p, float32: 42 GiB at 6 per chip, 45 at 7, and 173 G of
temporaries at 10; docs/benchmarks.md).
"""

import dataclasses
import os
import sys
import time
from typing import Dict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# libtpu looks for TPU workers at import (there are none here), and by default admits one process
# per machine (a lock file); compiling without TPUs, several may run side by side.
os.environ.setdefault('TPU_WORKER_HOSTNAMES', 'localhost')
os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')

from absl import app, flags  # pylint: disable=g-import-not-at-top
import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

import sintrovae_jax as sv  # pylint: disable=g-import-not-at-top
from benchmarks import roofline  # pylint: disable=g-import-not-at-top
from sintrovae_jax.core import parallel  # pylint: disable=g-import-not-at-top
from sintrovae_jax.data import kinds
from sintrovae_jax.families.style import progressive, step as style_step
from sintrovae_jax.io import fs
from sintrovae_jax.program import config_lib, style_train
from sintrovae_jax.core.inference import to_unit_range  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'A configs/*.py file.', lock_config=True)
flags.DEFINE_list('topology', ['v5e:2x2'], 'TPU topology names, e.g. v5e:2x2, v6e:2x2, v4:2x2x1.')
flags.DEFINE_list('per_chip_batch', [], 'Per-chip batch sizes (default: the config\'s '
                  'batch_size divided over the chips, at least 1).')
flags.DEFINE_list('dtype', ['bfloat16'], 'Compute dtypes: float32, bfloat16.')
flags.DEFINE_enum('phase', 'soft_intro', ['soft_intro', 'vae'], 'Which step to compile.')
flags.DEFINE_enum('path', 'shard_map', ['shard_map', 'pmap'],
                  'shard_map: jit of shard_map on a mesh over the chips; pmap: jax.pmap over them, '
                  'as main.py runs the step (both compile without a TPU).')
flags.DEFINE_enum('batchnorm_stats', 'global', ['global', 'per_chip'],
                  'global: BatchNorm statistics of the global batch (what main.py trains with); '
                  'per_chip: each chip\'s own batch, to measure what the synchronisation costs '
                  '(a measurement only: chips would then hold different running statistics).')
flags.DEFINE_string('style_phase', '', 'The style variant (variant=\'style\' configs): which '
                    'progressive phase\'s step to compile (default: the last, the full-size '
                    'stable phase), e.g. 256px_stable.')
flags.DEFINE_integer('top_traffic', 0, 'Also list the N largest memory-traffic sources of each '
                     'compiled program (roofline.traffic: bytes by op_name), to see where its '
                     'bytes accessed go.')
flags.DEFINE_string('hlo_dir', '', 'Write each compiled program\'s HLO text here (a local '
                    'folder or gs://).')
flags.mark_flags_as_required(['config'])

@dataclasses.dataclass(frozen=True)
class _PerChipBatchNorm(sv.SoftIntroVAE):
  """The networks with BatchNorm left on each chip's own batch (gradients are still averaged)."""

  def with_axis_name(self, axis_name):
    del axis_name
    return self


def compile_step(config, topology: str, per_chip: int, dtype: str, phase: str,
                 batchnorm_stats: str = 'global', path: str = 'shard_map'):
  """Compiles the config's step for `topology`; returns (compiled, chips, seconds)."""
  devices = topologies.get_topology_desc(topology_name=topology, platform='tpu').devices
  config = config.copy_and_resolve_references()
  config.compute_dtype = dtype
  config.batch_size = per_chip * len(devices)
  config_lib.validate(config, num_devices=len(devices))
  shape = kinds.data_shape(config)
  model = config_lib.create_model(config, shape)
  if batchnorm_stats == 'per_chip':
    model = _PerChipBatchNorm(model.encoder, model.decoder)
  weights = config_lib.loss_weights(config, shape)
  tx = sv.make_optimizer(sv.learning_rate_schedule(config.learning_rate,
                                                   tuple(config.lr_decay_steps),
                                                   config.lr_decay_factor))
  state = jax.eval_shape(lambda: sv.create_train_state(model, jax.random.PRNGKey(0), shape, tx,
                                                       **config_lib.state_options(config)))
  batch_dtype = jnp.float32 if len(shape) == 1 else jnp.uint8  # what the input pipeline feeds
  step_fn = sv.make_train_step(model, weights, axis_name=parallel.AXIS, phase=phase,
                               **config_lib.step_options(config))
  return _compile(lambda s, b: step_fn(s, to_unit_range(b)), state, shape, per_chip, devices,
                  path, batch_dtype)


def compile_style_step(config, topology: str, per_chip: int, dtype: str, phase_name: str,
                       path: str = 'shard_map'):
  """compile_step for the style variant: one progressive phase's step (style_train.py's, on uint8
  batches at the phase's resolution). Initialises the networks on the host (the equalised-lr
  coefficients are constants of the step)."""
  devices = topologies.get_topology_desc(topology_name=topology, platform='tpu').devices
  config = config.copy_and_resolve_references()
  config.compute_dtype = dtype
  config_lib.validate(config, num_devices=len(devices))
  phases = progressive.phases_from_config(config)
  phase = {p.name: p for p in phases}[phase_name] if phase_name else phases[-1]
  model = config_lib.create_style_model(config)
  state, coeffs = style_step.create_style_state(model, jax.random.PRNGKey(0))
  experiment = style_train.StyleExperiment(config, model, phases, state, coeffs)
  step_fn = style_train.make_phase_step(experiment, phase)
  shape = (phase.resolution, phase.resolution, model.image_channels)
  return _compile(step_fn, state, shape, per_chip, devices, path, jnp.uint8)


def _compile(step_fn, state, shape, per_chip: int, devices, path: str, batch_dtype):
  """Lowers and compiles `step_fn(state, batch)` over `devices` (shard_map or pmap)."""
  n = len(devices)
  mesh = parallel.data_mesh(devices)
  replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P(parallel.AXIS))
  state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
                       state)
  batch = jax.ShapeDtypeStruct((per_chip * n,) + tuple(shape), batch_dtype, sharding=split)
  if path == 'pmap':  # main.py's form: state stacked per chip, batch [chips, per_chip, ...]
    state = jax.tree.map(lambda a: jax.ShapeDtypeStruct((n,) + a.shape, a.dtype), state)
    batch = jax.ShapeDtypeStruct((n, per_chip) + tuple(shape), batch_dtype)
    step = jax.pmap(step_fn, axis_name=parallel.AXIS, donate_argnums=(0,), devices=devices)
  else:
    step = parallel.shard_map_train_step(step_fn, mesh)
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  return compiled, devices, time.perf_counter() - t0


def report(name: str, topology: str, per_chip: int, dtype: str, compiled, devices,
           seconds: float) -> Dict[str, float]:
  chip = roofline.chip_for(devices[0].device_kind)
  mem, cost = roofline.memory(compiled), roofline.cost(compiled)
  coll = roofline.collectives(compiled.as_text())
  est = roofline.estimate_s(cost['flops'], cost['bytes'], chip, dtype)
  ar = coll.get('all-reduce', {'count': 0, 'bytes': 0})
  other = sum(v['count'] for k, v in coll.items() if k != 'all-reduce')
  gib = 2.0 ** 30
  row = dict(total_gib=mem['total'] / gib, hbm_gib=chip.hbm_gib, temp_gib=mem['temp'] / gib,
             fixed_gib=(mem['total'] - mem['temp']) / gib)
  print(f"| {name} | {chip.name} ({topology}, {len(devices)} chips) | {per_chip} | {dtype} "
        f"| {mem['argument'] / gib:.2f} | {mem['output'] / gib:.2f} | {mem['temp'] / gib:.2f} "
        f"| **{mem['total'] / gib:.2f}** of {chip.hbm_gib:g} "
        f"{'fits' if mem['total'] / gib <= chip.hbm_gib else '**does not fit**'} "
        f"| {cost['flops'] / 1e12:.3f} | {cost['bytes'] / 1e9:.2f} "
        f"| {ar['count']} ({ar['bytes'] / 2**20:.1f} MiB){f' +{other} other' if other else ''} "
        f"| {est['compute_s'] * 1e3:.2f} / {est['memory_s'] * 1e3:.2f} "
        f"| {per_chip / est['step_s']:,.0f} | {seconds:.0f} |", flush=True)
  return row


def print_traffic(hlo: str, top: int) -> None:
  rows = roofline.traffic(hlo, top=0)
  total = sum(b for _, b, _ in rows)
  print(f'\nLargest memory traffic (of {total / 1e9:.2f} GB; instruction kind: source):\n')
  print('| source | GB | share | instructions |\n|---|---|---|---|')
  for key, b, n in rows[:top]:
    print(f'| `{key}` | {b / 1e9:.3f} | {b / total:.1%} | {n} |')
  print(flush=True)


def main(argv):
  del argv
  config = FLAGS.config
  name = os.path.splitext(os.path.basename(config_flags.get_config_filename(FLAGS['config'])))[0]
  what = (f'style phase {FLAGS.style_phase or "(the last)"}' if config.variant == 'style' else
          f'step: {FLAGS.phase}, BatchNorm statistics: {FLAGS.batchnorm_stats}')
  print(f'jax {jax.__version__}; {what}; {FLAGS.path} over the topology\'s chips; sizes per '
        f'chip')
  print('| config | chip | per-chip batch | compute | arguments GiB | outputs GiB | temporaries '
        'GiB | total GiB (donated counted once) | XLA TFLOP | XLA GB accessed | all-reduces '
        '(bytes) | roofline compute / memory ms | roofline img/s per chip | compile s |')
  print('|' + '---|' * 14)
  for topology in FLAGS.topology:
    for dtype in FLAGS.dtype:
      batches = [int(b) for b in FLAGS.per_chip_batch] or [None]
      points = []
      for per_chip in batches:
        if per_chip is None and config.variant == 'style':
          raise app.UsageError('The style variant\'s batch is its phase\'s: give '
                               '--per_chip_batch (e.g. 4: the 256 px phase\'s 16 on 4 chips).')
        if per_chip is None:
          n = len(topologies.get_topology_desc(topology_name=topology, platform='tpu').devices)
          per_chip = max(1, config.batch_size // n)
        try:
          if config.variant == 'style':
            compiled, devices, seconds = compile_style_step(config, topology, per_chip, dtype,
                                                            FLAGS.style_phase, FLAGS.path)
          else:
            compiled, devices, seconds = compile_step(config, topology, per_chip, dtype,
                                                      FLAGS.phase, FLAGS.batchnorm_stats,
                                                      FLAGS.path)
        except jax.errors.JaxRuntimeError as e:
          if 'RESOURCE_EXHAUSTED' not in str(e):
            raise
          # XLA refuses a program that cannot fit the chip: say so, with its own figures.
          reason = str(e).split('RESOURCE_EXHAUSTED:')[-1].strip().splitlines()[0]
          print(f'| {name} | {topology} | {per_chip} | {dtype} | **does not fit**: {reason} |'
                + ' |' * 9, flush=True)
          continue
        points.append((per_chip, report(name, topology, per_chip, dtype, compiled, devices,
                                        seconds)))
        if FLAGS.hlo_dir or FLAGS.top_traffic:
          hlo = compiled.as_text()
          if FLAGS.hlo_dir:
            fs.makedirs(FLAGS.hlo_dir)
            fs.write_text(fs.join(FLAGS.hlo_dir, f'{name}_{topology.replace(":", "_")}_'
                                  f'{per_chip}_{dtype}.hlo.txt'), hlo)
          if FLAGS.top_traffic:
            print_traffic(hlo, FLAGS.top_traffic)
      if len(points) > 1:
        largest = roofline.largest_batch(points)
        print(f'|  | largest per-chip batch that fits ({topology}, {dtype}), by a line '
              f'through these batches (compile it to confirm): '
              f'**{"n/a" if largest is None else largest}** |' + ' |' * 12,
              flush=True)


if __name__ == '__main__':
  app.run(main)
