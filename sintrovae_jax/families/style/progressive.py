"""Progressive growing as host-side phases (VARIANTS.md 1.7), counted in images, not epochs.

Each level of detail (lod l: 2^(l+2) px) trains `style_lod_images[l]` images at the global batch
`style_lod_batch[l]`: lod 0 starts with the vanilla-VAE warm-up (`style_vae_images`); every later
lod starts with a fade-in of `style_fade_images` images. A phase is one compiled step: (lod,
fading or not, warm-up or not), with its batch, learning rate and beta_neg fixed. Steps are global
(the train state's `step`), so a run resumes in the right phase from the step alone.

The reference counts in epochs of its data set (FFHQ: 16 epochs of 60,000 images per lod, the first
8 fading in); the configs state the same numbers of images, so the schedule does not depend on the
size of the user's folder.
"""

import dataclasses
import math
from typing import List, Sequence

import jax.numpy as jnp

PHASE_KINDS = ('vae', 'fade', 'stable')


@dataclasses.dataclass(frozen=True)
class Phase:
  """Steps `start .. start + steps - 1` (global, 0-based) at one lod, of one kind."""
  index: int
  lod: int
  kind: str            # 'vae' (warm-up), 'fade' (a new resolution fades in) or 'stable'
  start: int
  steps: int
  batch: int           # global
  learning_rate: float
  beta_neg: float
  fade_images: int

  @property
  def end(self) -> int:
    return self.start + self.steps

  @property
  def resolution(self) -> int:
    return 2 ** (self.lod + 2)

  @property
  def fading(self) -> bool:
    return self.kind == 'fade'

  @property
  def name(self) -> str:
    return f'{self.resolution}px_{self.kind}'


def build_phases(lod_images: Sequence[int], lod_batch: Sequence[int],
                 lod_learning_rate: Sequence[float], lod_beta_neg: Sequence[float],
                 fade_images: int, vae_images: int) -> List[Phase]:
  """The whole schedule; phases with no steps are left out."""
  phases, start = [], 0
  for lod, images in enumerate(lod_images):
    batch = int(lod_batch[lod])
    first = (('vae', vae_images) if lod == 0 else ('fade', fade_images))
    for kind, n in (first, ('stable', images - first[1])):
      steps = math.ceil(max(n, 0) / batch)
      if steps:
        phases.append(Phase(len(phases), lod, kind, start, steps, batch,
                            float(lod_learning_rate[lod]), float(lod_beta_neg[lod]),
                            int(fade_images)))
        start += steps
  return phases


def phases_from_config(config) -> List[Phase]:
  return build_phases(config.style_lod_images, config.style_lod_batch,
                      config.style_lod_learning_rate, config.style_lod_beta_neg,
                      config.style_fade_images, config.style_vae_images)


def total_steps(phases: Sequence[Phase]) -> int:
  return phases[-1].end if phases else 0


def phase_at(phases: Sequence[Phase], step: int) -> Phase:
  """The phase of global step `step` (0-based); the last phase for any step past the end."""
  for phase in phases:
    if step < phase.end:
      return phase
  return phases[-1]


def starts_lod(phases: Sequence[Phase], phase: Phase) -> bool:
  """Whether `phase` is the first of its lod: the optimisers' states are wiped when it starts."""
  return phase.index == 0 or phases[phase.index - 1].lod != phase.lod


def alpha(phase: Phase, step):
  """The fade-in blend of global step `step` (works on Python and traced numbers): 1 outside a
  fade-in; inside, `0.5 + 0.5 sin(pi t - pi/2)` with t the fraction of the fade's images consumed
  before this step (lod_driver.py L62-72)."""
  if not phase.fading:
    return 1.0
  t = (step - phase.start) * phase.batch / phase.fade_images
  return 0.5 + 0.5 * jnp.sin(jnp.pi * t - 0.5 * jnp.pi)
