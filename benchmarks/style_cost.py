"""What training the style variant costs: XLA's FLOPs per image of each progressive phase's step,
over the config's whole schedule, and the compute floor of that on one accelerator.

The FLOPs come from XLA's cost analysis of the lowered step (per-image: the step at a small batch,
divided by it; every layer works per example), so nothing is compiled or run: a CPU suffices.
The floor divides by the chip's published dense peak (benchmarks/roofline.py); measured steps
take several times their floor (docs/benchmarks.md: 5 to 17x for the ResNet step on an H200).

  python benchmarks/style_cost.py --config=configs/ffhq256.py --chip=H100
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # pylint: disable=g-import-not-at-top
import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

from benchmarks import roofline  # pylint: disable=g-import-not-at-top
from sintrovae_jax.families.style import progressive, step as style_step  # pylint: disable=g-import-not-at-top
from sintrovae_jax.program import config_lib, style_train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', 'configs/ffhq256.py', 'A style config.')
flags.DEFINE_string('chip', 'H100', f'One of {tuple(roofline.CHIPS)}.')
flags.DEFINE_integer('batch', 2, 'The batch of the lowered steps (FLOPs are per image).')


def flops_per_image(config, model, phase, coefficients, state, batch: int) -> float:
  step = style_train.make_phase_step(style_train.StyleExperiment(config, model, [phase], state,
                                                                 coefficients), phase, None)
  images = jax.ShapeDtypeStruct((batch, phase.resolution, phase.resolution,
                                 model.image_channels), jnp.uint8)
  return roofline.cost(jax.jit(step).lower(state, images))['flops'] / batch


def main(argv):
  del argv
  config, chip = FLAGS.config, roofline.CHIPS[FLAGS.chip]
  model = config_lib.create_style_model(config)
  state, coefficients = jax.eval_shape(
      lambda key: style_step.create_style_state(model, key), jax.random.PRNGKey(0))
  coefficients = jax.tree.map(lambda _: 1.0, coefficients)  # values do not change the FLOPs
  phases = progressive.phases_from_config(config)
  rows, total = [], 0.0
  for phase in phases:
    per_image = flops_per_image(config, model, phase, coefficients, state, FLAGS.batch)
    images = phase.steps * phase.batch
    total += per_image * images
    rows.append((phase.name, phase.batch, images, per_image))
  print('| phase | global batch | images | GFLOP per image | share of the FLOPs |')
  print('|---|---|---|---|---|')
  for name, batch, images, per_image in rows:
    print(f'| {name} | {batch} | {images:,} | {per_image / 1e9:.1f} | '
          f'{100 * per_image * images / total:.1f}% |')
  floor_h = total / (chip.f32_tflops * 1e12) / 3600
  print(f'\nTotal {total / 1e18:.2f} EFLOP; compute floor on one {chip.name} at its float32 '
        f'(TF32) peak of {chip.f32_tflops:g} TFLOP/s ({chip.source}): {floor_h:.0f} hours.')


if __name__ == '__main__':
  app.run(main)
