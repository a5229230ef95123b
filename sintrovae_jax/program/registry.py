"""What main.py runs for a config: its family's programs (families/registry.py says which).

Every variant trains, measures FID and samples through the same three calls; the style family
(progressive phases) has programs of its own (style_train.py), every other family shares the loop
of train.py and the experiment of standard.py. This is the one place the programs are chosen, so
train.py and style_train.py need not know of each other.
"""

import dataclasses
from typing import Any, Callable, Dict, List, Optional

import ml_collections

from sintrovae_jax.families import registry as families
from sintrovae_jax.program import standard, style_train, train


@dataclasses.dataclass(frozen=True)
class Programs:
  """A family's programs: `train_and_evaluate(config, workdir)`, `fid_from_checkpoint(config,
  workdir)`, `sample_from_checkpoint(config, workdir, num, interpolation_steps)`; and why
  --mode=ood cannot score it ('' when it can)."""
  train_and_evaluate: Callable[..., Optional[Dict[str, Any]]]
  fid_from_checkpoint: Callable[..., Dict[str, Any]]
  sample_from_checkpoint: Callable[..., List[str]]
  no_ood: str = ''


_SHARED_LOOP = (train.train_and_evaluate, standard.fid_from_checkpoint,
                standard.sample_from_checkpoint)
_PROGRESSIVE = (style_train.train_and_evaluate, style_train.fid_from_checkpoint,
                style_train.sample_from_checkpoint)


def of(config: ml_collections.ConfigDict) -> Programs:
  """The programs of `config.variant`'s family (config validation names the valid variants)."""
  family = families.of(config.get('variant', 'standard'))
  return Programs(*(_PROGRESSIVE if family.progressive else _SHARED_LOOP), no_ood=family.no_ood)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  return of(config).train_and_evaluate(config, workdir)


def fid_from_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  return of(config).fid_from_checkpoint(config, workdir)


def sample_from_checkpoint(config: ml_collections.ConfigDict, workdir: str, num: int = 64,
                           interpolation_steps: int = 10) -> List[str]:
  return of(config).sample_from_checkpoint(config, workdir, num, interpolation_steps)
