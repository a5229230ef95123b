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


def _array_bytes(dtype: str, dims: str) -> int:
  """Bytes of one HLO array, e.g. ('bf16', '3,3,64,128')."""
  n = 1
  for d in filter(None, dims.split(',')):
    n *= int(d)
  return n * _DTYPE_BYTES[dtype]


def _shape_bytes(text: str) -> int:
  """Bytes of every array in an HLO shape (a tuple's elements summed)."""
  return sum(_array_bytes(dtype, dims) for dtype, dims in _SHAPE.findall(text))


def collectives(hlo_text: str) -> Dict[str, Dict[str, float]]:
  """{'all-reduce': {'count': n, 'bytes': b}, ...} from a compiled module's HLO text.

  Asynchronous pairs (`all-reduce-start` / `-done`) count once; bytes are the result shapes'.
  """
  out: Dict[str, Dict[str, float]] = {}
  for line in hlo_text.splitlines():
    m = _COLLECTIVE.search(line)
    if not m:
      continue
    entry = out.setdefault(m.group(2), {'count': 0, 'bytes': 0})
    entry['count'] += 1
    entry['bytes'] += _shape_bytes(m.group(1))
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


_INSTRUCTION = re.compile(r'^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.*?)\s([a-z][\w\-]*)\((.*)$')
_OPERAND = re.compile(r'%([\w.\-]+)')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_FREE = {'parameter', 'get-tuple-element', 'tuple', 'bitcast', 'constant', 'after-all',
         'partition-id', 'replica-id', 'opt-barrier'}  # no memory traffic of their own
_IN_PLACE_CALLS = ('ConcatBitcast',)  # a TPU's assembly of prefetched slices in on-chip memory


def _layer(op_name: str) -> str:
  """A readable source of an HLO instruction: its op_name's path without the wrappers (jit,
  vmap, while bodies, shard_map...), marked [grad] where it is a transposed (backward) op."""
  backward = 'transpose(' in op_name
  parts = []
  for part in op_name.split('/'):
    inner = re.sub(r'^(?:transpose\()?(?:jvp\()?([^()]*)\)*$', r'\1', part)
    if not inner or re.match(r'^(jit|pjit|vmap|while|body|cond|closed_call|shard_map|pmap|'
                             r'checkpoint|remat|rematted_computation|branch)\b', inner):
      continue
    parts.append(inner)
  return '/'.join(parts[-4:]) + (' [grad]' if backward else '')


def _moved_bytes(result: str, opcode: str) -> int:
  """The buffer an async copy-start `(dest, source, context)` or slice-start `((source), dest,
  context)` moves."""
  shapes = _SHAPE.findall(result)
  return _array_bytes(*(shapes[1] if opcode == 'slice-start' and len(shapes) > 1 else shapes[0]))


def traffic(hlo_text: str, top: int = 15) -> List[Tuple[str, float, int]]:
  """The largest memory-traffic contributors of a compiled module: `(source, bytes, count)` by
  the instructions' op_name (`_layer`), bytes = each instruction's result plus its operands
  (what XLA's cost analysis counts as bytes accessed, before fusion-internal reuse), over the
  instructions that run (not those inside fused computations). Largest first."""
  sizes: Dict[str, int] = {}
  fused, computation, rows = set(), None, []
  for line in hlo_text.splitlines():
    if line and not line.startswith(' ') and line.rstrip().endswith('{'):
      computation = line.split()[1 if line.startswith('ENTRY') else 0].lstrip('%')
      continue
    m = _INSTRUCTION.match(line)
    if not m:
      continue
    name, result, opcode, rest = m.groups()
    sizes[name] = _shape_bytes(result)
    fused.update(re.findall(r'calls=%([\w.\-]+)', rest))
    fused.update(re.findall(r'to_apply=%([\w.\-]+)', rest))
    rows.append((computation, name, opcode, result, rest))
  out: Dict[str, List[float]] = {}
  for computation, name, opcode, result, rest in rows:
    if computation in fused or opcode in _FREE or opcode.endswith('-done') or any(
        f'custom_call_target="{t}"' in rest for t in _IN_PLACE_CALLS):
      continue
    operands = rest.split('),')[0] if '),' in rest else rest
    used = set(_OPERAND.findall(operands.split(', calls=')[0]))
    total = sizes[name] + sum(sizes.get(o, 0) for o in used)
    if opcode in ('copy-start', 'slice-start'):
      # A TPU's asynchronous copy between memories (memory-space assignment): its result tuple
      # holds the source again and a context; the traffic is the moved buffer, read and written.
      total = 2 * _moved_bytes(result, opcode)
    op_name = _OP_NAME.search(rest)
    # Without an op_name (copies and layout changes XLA adds): the instruction's kind of name.
    source = _layer(op_name.group(1)) if op_name else '<' + re.sub(r'[.\d]+$', '', name) + '>'
    key = f'{opcode}: {source}'
    entry = out.setdefault(key, [0.0, 0])
    entry[0] += total
    entry[1] += 1
  ranked = sorted(((k, v[0], v[1]) for k, v in out.items()), key=lambda r: -r[1])
  return ranked[:top] if top else ranked
