"""Published per-chip peaks and a roofline estimate of a compiled XLA program's step time.

The estimate is `max(FLOPs / peak FLOP/s, bytes accessed / HBM bandwidth)` from XLA's own cost
analysis: a lower bound that ignores launch overheads, collectives and imperfect overlap. The
measured/estimate ratio on a real chip (benchmarks/train_step.py prints it) says how far a
deviceless estimate (benchmarks/aot_compile.py) can be trusted.
"""

import dataclasses
import re
from typing import Any, Dict, List, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Chip:
  name: str
  bf16_tflops: float      # dense bf16 matrix peak, TFLOP/s
  f32_tflops: float       # a float32 matmul at default precision (TF32 on GPUs, bf16 on TPUs)
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
  """FLOPs and bytes accessed from XLA's cost analysis of a compiled (or lowered) program (NaN if
  absent)."""
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


_DTYPE_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2, 'f16': 2, 'bf16': 2, 's32': 4,
                'u32': 4, 'f32': 4, 's64': 8, 'u64': 8, 'f64': 8}
_SHAPE = re.compile(r'\b(' + '|'.join(_DTYPE_BYTES) + r')\[([\d,]*)\]')
_COLLECTIVE = re.compile(r'=\s*(.*?)\s(all-reduce|all-gather|reduce-scatter|all-to-all|'
                         r'collective-permute)(-start)?\(')


def collectives(hlo_text: str) -> Dict[str, Dict[str, float]]:
  """{'all-reduce': {'count': n, 'bytes': b}, ...} from a compiled module's HLO text.

  Asynchronous pairs (`all-reduce-start` / `-done`) count once; bytes are the result shapes'.
  """
  out: Dict[str, Dict[str, float]] = {}
  for line in hlo_text.splitlines():
    m = _COLLECTIVE.search(line)
    if not m:
      continue
    size = 0
    for dtype, dims in _SHAPE.findall(m.group(1)):
      n = 1
      for d in filter(None, dims.split(',')):
        n *= int(d)
      size += n * _DTYPE_BYTES[dtype]
    entry = out.setdefault(m.group(2), {'count': 0, 'bytes': 0})
    entry['count'] += 1
    entry['bytes'] += size
  return out


def largest_batch(points: List[Tuple[int, Dict[str, float]]]) -> Optional[int]:
  """The largest per-chip batch whose total bytes fit the chip's HBM, by a line through the first
  and last (batch, {'total_gib', 'hbm_gib'}) points; None if memory does not grow with the batch."""
  (b0, r0), (b1, r1) = points[0], points[-1]
  per_image = (r1['total_gib'] - r0['total_gib']) / (b1 - b0)
  if per_image <= 0:
    return None
  fixed = r0['total_gib'] - per_image * b0
  return int((r0['hbm_gib'] - fixed) // per_image)
