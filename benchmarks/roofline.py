"""Published per-chip peaks and a roofline estimate of a compiled XLA program's step time.

The estimate is `max(FLOPs / peak FLOP/s, bytes accessed / HBM bandwidth)` from XLA's own cost
analysis: a lower bound that ignores launch overheads, collectives and imperfect overlap. The
measured/estimate ratio on a real chip (benchmarks/train_step.py prints it) says how far a
deviceless estimate (benchmarks/aot_compile.py) can be trusted.
"""

import dataclasses
from typing import Any, Dict, Optional


@dataclasses.dataclass(frozen=True)
class Chip:
  name: str
  bf16_tflops: float      # dense bf16 matrix peak, TFLOP/s
  f32_tflops: float       # what a float32 matmul gets by default (TF32 on GPUs; bf16 passes on TPUs)
  hbm_gbs: float          # HBM bandwidth, GB/s
  hbm_gib: float          # HBM capacity, GiB
  source: str


# Vendors' published figures (dense, no sparsity). TPUs: float32 matmuls at default precision run
# as one bf16 pass, so the bf16 peak applies; GPUs: JAX's default float32 precision allows TF32.
CHIPS: Dict[str, Chip] = {c.name: c for c in [
    Chip('v4', 275, 275, 1228, 32, 'cloud.google.com/tpu/docs/v4'),
    Chip('v5e', 197, 197, 819, 16, 'cloud.google.com/tpu/docs/v5e'),
    Chip('v5p', 459, 459, 2765, 95, 'cloud.google.com/tpu/docs/v5p'),
    Chip('v6e', 918, 918, 1640, 32, 'cloud.google.com/tpu/docs/v6e'),
    Chip('H100', 989, 495, 3350, 80, 'nvidia.com H100 SXM datasheet'),
    Chip('H200', 989, 495, 4800, 141, 'nvidia.com H200 SXM datasheet'),
]}


def chip_for(device_kind: str) -> Optional[Chip]:
  """The CHIPS entry for a `jax.Device.device_kind` ('TPU v5 lite', 'NVIDIA H100 80GB HBM3'...)."""
  kind = device_kind.lower().replace(' ', '')
  aliases = {'tpuv5lite': 'v5e', 'tpuv5e': 'v5e', 'tpuv5p': 'v5p', 'tpuv5': 'v5p',
             'tpuv6lite': 'v6e', 'tpuv6e': 'v6e', 'tpuv4': 'v4'}
  for alias, name in aliases.items():
    if kind.startswith(alias):
      return CHIPS[name]
  for name in ('H100', 'H200'):
    if name.lower() in kind:
      return CHIPS[name]
  return None


def cost(compiled) -> Dict[str, float]:
  """FLOPs and bytes accessed from XLA's cost analysis of a compiled program (NaN if absent)."""
  c = compiled.cost_analysis()
  c = c[0] if isinstance(c, (list, tuple)) else c
  c = c or {}
  return {'flops': float(c.get('flops', float('nan'))),
          'bytes': float(c.get('bytes accessed', float('nan')))}


def memory(compiled) -> Dict[str, Any]:
  """Argument, output, temporary and alias bytes of a compiled program, where the backend says."""
  m = compiled.memory_analysis()
  if m is None:
    return {}
  out = {k: int(getattr(m, f'{k}_size_in_bytes', 0)) for k in ('argument', 'output', 'temp',
                                                                 'alias')}
  # Donated arguments alias outputs: count those bytes once.
  out['total'] = out['argument'] + out['output'] + out['temp'] - out['alias']
  return out


def estimate_s(flops: float, bytes_accessed: float, chip: Chip, dtype: str) -> Dict[str, float]:
  """Roofline seconds per step: compute-bound and memory-bound times and their max."""
  peak = chip.bf16_tflops if dtype == 'bfloat16' else chip.f32_tflops
  compute = flops / (peak * 1e12)
  mem = bytes_accessed / (chip.hbm_gbs * 1e9)
  return {'compute_s': compute, 'memory_s': mem, 'step_s': max(compute, mem)}
