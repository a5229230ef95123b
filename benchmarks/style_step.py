"""Times the style variant's jitted train step per progressive phase on synthetic, device-resident
batches (no TensorFlow), with XLA's FLOP count of the lowered step and the achieved TFLOP/s.

The FLOPs are counted on the lowered program (as benchmarks/style_cost.py): the compiled GPU
program's cost analysis leaves out the convolutions it hands to cuDNN (0.17 TFLOP for a 256 px
step of 16 images that holds 24).

  python benchmarks/style_step.py --config=configs/ffhq256.py --phases=256px_stable,128px_stable
  python benchmarks/style_step.py --phases=256px_stable --remat   # recomputed blocks: memory
  python benchmarks/style_step.py --phases=256px_stable --dtype=bfloat16   # bf16 compute
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from benchmarks import roofline  # pylint: disable=g-import-not-at-top
from configs import celebahq256_style, ffhq256  # pylint: disable=g-import-not-at-top
from sintrovae_jax.families.style import progressive, step as style_step  # pylint: disable=g-import-not-at-top
from sintrovae_jax.program import config_lib

CONFIGS = {'configs/ffhq256.py': ffhq256.get_config,
           'configs/celebahq256_style.py': celebahq256_style.get_config}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default='configs/ffhq256.py', choices=sorted(CONFIGS))
  parser.add_argument('--phases', default='256px_stable,128px_stable,64px_stable')
  parser.add_argument('--batch', type=int, default=0, help='per-step batch (0: the phase\'s)')
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'),
                      help='config.compute_dtype: of the convolutional blocks (parameters, '
                      'losses and optimiser stay float32)')
  parser.add_argument('--remat', action='store_true',
                      help='config.remat: recompute the blocks for the gradient (less memory)')
  args = parser.parse_args()
  config = CONFIGS[args.config]()
  config.remat = args.remat
  config.compute_dtype = args.dtype
  model = config_lib.create_style_model(config)
  state, coeffs = style_step.create_style_state(model, jax.random.PRNGKey(0))
  phases = {p.name: p for p in progressive.phases_from_config(config)}
  device = jax.devices()[0]
  chip = roofline.chip_for(device.device_kind)
  print(f'{device.device_kind}, JAX {jax.__version__}, compute {args.dtype} (default matmul '
        f'precision), remat {args.remat}')
  print('| phase | batch | ms/step (median) | img/s | TFLOP/step | TFLOP/s | share of peak '
        '| temporaries GiB | memory GiB |')
  print('|---|---|---|---|---|---|---|---|---|')
  for name in args.phases.split(','):
    phase = phases[name]
    batch = args.batch or phase.batch
    step = jax.jit(style_step.make_style_train_step(
        model, config_lib.style_loss_weights(config), phase, coeffs,
        ema_decay=style_step.ema_decay(batch, config.style_ema_half_life_images)))
    s = style_step.reset_optimizers(state.replace(step=jnp.int32(phase.start)), phase, coeffs)
    x = jnp.asarray(np.random.default_rng(0).uniform(
        size=(batch, phase.resolution, phase.resolution, model.image_channels)), jnp.float32)
    lowered = step.lower(s, x)
    flops = roofline.cost(lowered)['flops']
    compiled = lowered.compile()
    mem = roofline.memory(compiled)  # XLA's own count: arguments + outputs + temporaries
    for _ in range(3):
      s, m = compiled(s, x)
    jax.block_until_ready(m)
    times = []
    for _ in range(args.steps):
      t = time.perf_counter()
      s, m = compiled(s, x)
      jax.block_until_ready(m)
      times.append(time.perf_counter() - t)
    sec = statistics.median(times)
    chip_peak = chip and (chip.bf16_tflops if args.dtype == 'bfloat16' else chip.f32_tflops)
    peak = f'{flops / sec / 1e12 / chip_peak:.0%}' if chip else '-'
    print(f'| {name} | {batch} | {sec * 1e3:.1f} | {batch / sec:.1f} | {flops / 1e12:.2f} | '
          f'{flops / sec / 1e12:.1f} | {peak} | {mem.get("temp", float("nan")) / 2**30:.2f} | '
          f'{mem.get("total", float("nan")) / 2**30:.2f} |', flush=True)


if __name__ == '__main__':
  main()
