"""The model families by `config.variant`: the one place a variant's name is read.

Each entry says what the variant trains on, which program runs it (the shared loop of the image,
2D and 3D families, or the style family's progressive phases), and which options of the core step
and train state it needs. Everything else asks the entry, never the name.
"""

import dataclasses
from typing import Dict, Optional, Tuple

DATA_KINDS = {'image': 'images', 'vector': '2D points', 'points': 'point clouds'}


@dataclasses.dataclass(frozen=True)
class Family:
  """What a variant is.

  data: the data kinds it trains on (DATA_KINDS' keys).
  progressive: it grows its networks in phases (the style family: programs of its own, its own
    networks, step and config fields); otherwise the shared loop and `make_train_step` run it.
  step_variant: `make_train_step`'s `variant` for it (the core step's own option), or None.
  keeps_target: its train state keeps a target decoder (`create_train_state(target=True)`).
  class_and_content: its code is [z_class, z_content] from two encoders, decoded by an AdaIN
    generator (families/translation); it translates (--mode=translate).
  no_ood: why --mode=ood cannot score it ('' when it can).
  source: where its definition is written down.
  """
  data: Tuple[str, ...]
  progressive: bool = False
  step_variant: Optional[str] = None
  keeps_target: bool = False
  class_and_content: bool = False
  no_ood: str = ''
  source: str = ''


FAMILIES: Dict[str, Family] = {
    'standard': Family(('image', 'vector'), step_variant='standard', source='ALGORITHM.md'),
    'bootstrap': Family(('image', 'vector'), step_variant='bootstrap', keeps_target=True,
                        source='VARIANTS.md 2'),
    'points': Family(('points',), step_variant='points', source='VARIANTS.md 3'),
    'translation': Family(('image',), step_variant='standard', class_and_content=True,
                          source='docs/translation.md'),
    'style': Family(('image',), progressive=True, source='VARIANTS.md 1',
                    no_ood='the style variant has no likelihood estimate here (its decoder draws '
                    'noise inputs that the estimate would have to integrate out)'),
}


def of(variant: str) -> Family:
  """The family of `variant`; KeyError naming the valid ones (config validation says it first)."""
  if variant not in FAMILIES:
    raise KeyError(f'variant={variant!r} is not one of {tuple(FAMILIES)}')
  return FAMILIES[variant]


def training(kind: str) -> Tuple[str, ...]:
  """The variants that train on data of `kind`."""
  return tuple(name for name, family in FAMILIES.items() if kind in family.data)
