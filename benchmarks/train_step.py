"""Times the full jitted Soft-IntroVAE train step on synthetic, device-resident batches.

No TensorFlow needed. For each setting: compile, warm up, then time `--steps` single steps with
`block_until_ready` and report the median, with XLA's FLOP count of the compiled step and the
reference's measured throughput from ANCHORS.md (one H100, PyTorch) beside it.

  python benchmarks/train_step.py                                   # the ANCHORS table (GPU)
  python benchmarks/train_step.py --gpu_flags=command_buffers       # the same, CUDA graphs on
  python benchmarks/train_step.py --settings=cifar10:8 --dtypes=float32 --steps=10   # CPU
  python benchmarks/train_step.py --settings=toy2d:64 --steps_per_dispatch=1,4,16   # dispatch

`--gpu_flags` picks a set of XLA GPU flags to try (a switch for measuring, not a default of the
library): XLA reads them once per process, so run the script once per set and compare.
"""

import argparse
import statistics
import sys
import time
import os

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

import sintrovae_jax as sv  # pylint: disable=g-import-not-at-top
from configs import celebahq, cifar10, toy2d  # pylint: disable=g-import-not-at-top
from sintrovae_jax.data import kinds  # pylint: disable=g-import-not-at-top
from sintrovae_jax.program import config_lib  # pylint: disable=g-import-not-at-top
from sintrovae_jax.core import train_step as train_step_lib  # pylint: disable=g-import-not-at-top
from benchmarks import roofline  # pylint: disable=g-import-not-at-top

CONFIGS = {'cifar10': cifar10.get_config, 'celebahq': celebahq.get_config,
           'toy2d': toy2d.get_config}
# ANCHORS.md: the reference's img/s on one H100 (strict fp32, TF32, bf16 autocast, TF32+compile),
# and its model FLOPs per iteration. None where it was not measured.
ANCHORS = {
    ('cifar10', 32): dict(fp32=626, tf32=583, bf16=435, compiled=518, tflop=0.313),
    ('cifar10', 256): dict(fp32=1884, tf32=3158, bf16=3146, compiled=None, tflop=2.50),
    ('celebahq', 8): dict(fp32=23.4, tf32=55.7, bf16=59.5, compiled=54.2, tflop=6.55),
    ('celebahq', 32): dict(fp32=30.6, tf32=66.8, bf16=78.5, compiled=None, tflop=26.2),
}
# ANCHORS.md's bars: (setting, dtype) -> img/s we must reach.
BARS = {('cifar10', 32, 'float32'): 3100, ('cifar10', 32, 'bfloat16'): 3100,
        ('celebahq', 8, 'bfloat16'): 180, ('celebahq', 8, 'float32'): 85}
PEAK_TFLOPS = 800.0  # a large bf16 matrix product on the H100, as measured for ANCHORS.md
# XLA GPU flag sets worth measuring on a launch-bound step (each is added to XLA_FLAGS).
GPU_FLAGS = {
    'default': '',
    # The whole step as CUDA graphs where XLA can (command buffers), however small the graph.
    'command_buffers': ('--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUDNN,CUSTOM_CALL,'
                        'COLLECTIVES,WHILE,CONDITIONAL --xla_gpu_graph_min_graph_size=1'),
    'no_command_buffers': '--xla_gpu_enable_command_buffer=',
    'latency_hiding': '--xla_gpu_enable_latency_hiding_scheduler=true',
}


def bench(name: str, batch: int, dtype: str, steps: int, warmup: int, per_call: int = 1):
  """Times calls of `per_call` steps (1: the step itself; more: `steps_in_one_call`, the
  program main.py runs with --config.steps_per_dispatch); ms/step = call time / per_call."""
  config = CONFIGS[name]()
  config.compute_dtype = dtype
  shape = kinds.data_shape(config)
  model = config_lib.create_model(config, shape)
  weights = config_lib.loss_weights(config, shape)
  tx = sv.make_optimizer(sv.learning_rate_schedule(config.learning_rate))
  state = sv.create_train_state(model, jax.random.PRNGKey(0), shape, tx)
  x = jax.random.uniform(jax.random.PRNGKey(1), (batch,) + shape, jnp.float32)
  step_fn = sv.make_train_step(model, weights)
  if per_call == 1:
    step, args = jax.jit(step_fn, donate_argnums=(0,)), (x,)
  else:
    step = jax.jit(train_step_lib.steps_in_one_call(step_fn), donate_argnums=(0,))
    args = (jnp.broadcast_to(x, (per_call,) + x.shape), jnp.int32(per_call))
  t0 = time.perf_counter()
  compiled = step.lower(state, *args).compile()
  compile_s = time.perf_counter() - t0
  cost, mem = roofline.cost(compiled), roofline.memory(compiled)
  for _ in range(warmup):
    state, metrics = compiled(state, *args)
  jax.block_until_ready((state, metrics))
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, metrics = compiled(state, *args)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t0)
  ms = 1e3 * statistics.median(times) / per_call
  assert float(jnp.max(metrics['nonfinite'])) == 0.0, 'the benchmark step diverged'
  # (XLA counts a loop's body once, its trip count being a run-time value: per step either way.)
  return dict(ms=ms, img_s=batch / ms * 1e3, xla_tflop=cost['flops'] / 1e12,
              xla_gb=cost['bytes'] / 1e9, flops=cost['flops'], bytes=cost['bytes'],
              mem_gib=mem.get('total', float('nan')) / 2**30, compile_s=compile_s)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--settings', default='cifar10:32,cifar10:256,celebahq:8,celebahq:32',
                      help='comma-separated CONFIG:BATCH (CONFIG in cifar10, celebahq, toy2d)')
  parser.add_argument('--dtypes', default='float32,bfloat16')
  parser.add_argument('--steps', type=int, default=50)
  parser.add_argument('--warmup', type=int, default=5)
  parser.add_argument('--steps_per_dispatch', default='1',
                      help='comma-separated steps per compiled call to compare, e.g. 1,4,16')
  parser.add_argument('--gpu_flags', default='default', choices=sorted(GPU_FLAGS),
                      help='a set of XLA GPU flags to measure with (added to XLA_FLAGS)')
  args = parser.parse_args()
  if GPU_FLAGS[args.gpu_flags]:  # before the backend starts: XLA reads its flags once
    os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {GPU_FLAGS[args.gpu_flags]}"
  dev = jax.devices()[0]
  chip = roofline.chip_for(dev.device_kind)
  print(f'device: {dev.device_kind} ({dev.platform}), jax {jax.__version__}, '
        f'{args.steps} timed steps after {args.warmup} warm-up, median; roofline from '
        f'{chip.name + " peaks (" + chip.source + ")" if chip else "no known chip: n/a"}; '
        f'XLA flags: {args.gpu_flags} ({GPU_FLAGS[args.gpu_flags] or "none added"})')
  header = ('| setting | batch | compute | steps/call | ms/step | img/s | XLA TFLOP/step | ANCHORS TFLOP | '
            'TFLOP/s (ANCHORS FLOPs if given) | MFU vs 800 | reference img/s (same dtype) | x reference '
            '| bar | XLA GB accessed | roofline ms | measured / roofline | memory GiB | compile s |')
  print(header)
  print('|' + '---|' * (header.count('|') - 1))
  for setting in args.settings.split(','):
    name, batch = setting.split(':')
    batch = int(batch)
    anchor = ANCHORS.get((name, batch), {})
    for dtype, per_call in [(d, int(k)) for d in args.dtypes.split(',')
                            for k in args.steps_per_dispatch.split(',')]:
      r = bench(name, batch, dtype, args.steps, args.warmup, per_call)
      # The reference's best figure at this precision: fp32 vs max(strict fp32, TF32, compiled).
      ref_keys = ('bf16',) if dtype == 'bfloat16' else ('fp32', 'tf32', 'compiled')
      ref = max([anchor[k] for k in ref_keys if anchor.get(k)], default=None)
      tflop = anchor.get('tflop')
      achieved = (tflop or r['xla_tflop']) / (r['ms'] / 1e3)
      bar = BARS.get((name, batch, dtype))
      # XLA's count on GPUs leaves out convolutions run by cuDNN: take the reference's if larger.
      flops = max(r['flops'], (tflop or 0) * 1e12)
      est = (roofline.estimate_s(flops, r['bytes'], chip, dtype)['step_s'] * 1e3
             if chip else float('nan'))
      print(f"| {name} | {batch} | {dtype} | {per_call} | {r['ms']:.2f} | {r['img_s']:,.1f} | "
            f"{r['xla_tflop']:.3f} | {tflop if tflop else '-'} | {achieved:.1f} | "
            f"{achieved / PEAK_TFLOPS:.1%} | {ref if ref else '-'} | "
            f"{r['img_s'] / ref if ref else float('nan'):.2f} | "
            f"{(('>= %d: ' % bar) + ('met' if r['img_s'] >= bar else 'NOT met')) if bar else '-'}"
            f" | {r['xla_gb']:.2f} | {est:.2f} | {r['ms'] / est:.1f} | {r['mem_gib']:.2f} "
            f"| {r['compile_s']:.0f} |", flush=True)


if __name__ == '__main__':
  main()
