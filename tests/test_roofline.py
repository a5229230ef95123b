"""The per-chip analysis behind benchmarks/aot_compile.py and benchmarks/train_step.py."""

import os
import sys

import jax
import jax.numpy as jnp
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import roofline  # pylint: disable=g-import-not-at-top

# Lines as XLA prints them in a compiled TPU module: an asynchronous all-reduce of a tuple (its
# -done half must not count again), a synchronous scalar one, an all-gather, and lines that only
# mention an all-reduce (a reduction computation, a metadata string).
HLO = """
  %all-reduce-start.3 = (f32[64]{0}, bf16[3,3,64,128]{3,2,1,0}) all-reduce-start(f32[64]{0} %a, bf16[3,3,64,128]{3,2,1,0} %b), replica_groups={{0,1,2,3}}, to_apply=%add
  %all-reduce-done.3 = (f32[64]{0}, bf16[3,3,64,128]{3,2,1,0}) all-reduce-done((f32[64]{0}, bf16[3,3,64,128]{3,2,1,0}) %all-reduce-start.3)
  %all-reduce.1 = f32[] all-reduce(f32[] %c), replica_groups={{0,1,2,3}}, to_apply=%add.1
  %all-gather.2 = s32[4,16]{1,0} all-gather(s32[1,16]{1,0} %d), dimensions={0}
  %add.1 = f32[] add(f32[] %x, f32[] %y), metadata={op_name="pmean/all-reduce"}
"""


def test_collectives_counts_each_once_with_its_bytes():
  got = roofline.collectives(HLO)
  assert got == {'all-reduce': {'count': 2, 'bytes': 64 * 4 + 3 * 3 * 64 * 128 * 2 + 4},
                 'all-gather': {'count': 1, 'bytes': 4 * 16 * 4}}


def test_memory_counts_donated_buffers_once():
  compiled = jax.jit(lambda x: x + 1, donate_argnums=0).lower(jnp.ones((1000,))).compile()
  mem = roofline.memory(compiled)
  assert mem['argument'] == 4000 and mem['alias'] == 4000
  assert mem['total'] == mem['argument'] + mem['output'] + mem['temp'] - 4000


def test_estimate_is_the_slower_of_compute_and_memory():
  chip = roofline.CHIPS['v5e']  # 197 TFLOP/s, 819 GB/s
  est = roofline.estimate_s(197e12 * 2e-3, 819e9 * 5e-3, chip, 'bfloat16')
  assert est['compute_s'] == pytest.approx(2e-3) and est['memory_s'] == pytest.approx(5e-3)
  assert est['step_s'] == pytest.approx(5e-3)
  h100 = roofline.CHIPS['H100']  # float32 matmuls run as TF32 there: half the bf16 peak
  assert roofline.estimate_s(495e12, 0, h100, 'float32')['step_s'] == pytest.approx(1.0)


@pytest.mark.parametrize('kind,name', [('TPU v5 lite', 'v5e'), ('TPU v5', 'v5p'),
                                       ('TPU v6 lite', 'v6e'), ('TPU v4', 'v4'),
                                       ('NVIDIA H100 80GB HBM3', 'H100'), ('NVIDIA H200', 'H200')])
def test_chip_for_device_kinds(kind, name):
  assert roofline.chip_for(kind).name == name


def test_chip_for_unknown_is_none():
  assert roofline.chip_for('cpu') is None


def test_largest_batch_extrapolates_a_line():
  # 2 GiB fixed + 0.5 GiB per image: 16 GiB holds 28 images.
  points = [(4, {'total_gib': 4.0, 'hbm_gib': 16}), (8, {'total_gib': 6.0, 'hbm_gib': 16})]
  assert roofline.largest_batch(points) == 28
  flat = [(4, {'total_gib': 4.0, 'hbm_gib': 16}), (8, {'total_gib': 4.0, 'hbm_gib': 16})]
  assert roofline.largest_batch(flat) is None


# A compiled module as XLA prints it: a fused computation (not run on its own), a reduction's
# scalar computation, and the entry's instructions (parameters and tuples move no bytes); a TPU's
# asynchronous copy and slice into on-chip memory (S(1)) move their buffer, their -done halves
# and the assembly of slices in on-chip memory (ConcatBitcast) none.
MODULE = """
HloModule jit_f

%fused_computation (param_0: bf16[4,8]) -> f32[4,8] {
  %param_0 = bf16[4,8]{1,0} parameter(0)
  ROOT %convert.1 = f32[4,8]{1,0} convert(bf16[4,8]{1,0} %param_0)
}

%add (x: f32[], y: f32[]) -> f32[] {
  %x = f32[] parameter(0)
  %y = f32[] parameter(1)
  ROOT %add.2 = f32[] add(f32[] %x, f32[] %y)
}

ENTRY %main.9 (Arg_0.1: bf16[4,8]) -> (f32[4], f32[4,8]) {
  %Arg_0.1 = bf16[4,8]{1,0} parameter(0)
  %convert_fusion.3 = f32[4,8]{1,0} fusion(%Arg_0.1), kind=kLoop, calls=%fused_computation, metadata={op_name="jit(step)/jvp(encoder)/Conv_0/convert_element_type"}
  %constant.4 = f32[] constant(0)
  %reduce.5 = f32[4]{0} reduce(%convert_fusion.3, %constant.4), dimensions={1}, to_apply=%add, metadata={op_name="jit(step)/transpose(jvp(encoder))/bn/reduce_sum"}
  %copy.6 = f32[4,8]{0,1} copy(%convert_fusion.3)
  %copy-start.8 = (f32[4,8]{0,1:S(1)}, f32[4,8]{0,1}, u32[]{:S(2)}) copy-start(%copy.6)
  %copy-done.9 = f32[4,8]{0,1:S(1)} copy-done(%copy-start.8)
  %slice-start.10 = ((f32[4,8]{0,1}), f32[1,8]{0,1:S(1)}, s32[]{:S(2)}) slice-start(%copy.6), slice={[0:1], [0:8]}
  %slice-done.11 = f32[1,8]{0,1:S(1)} slice-done(%slice-start.10)
  %custom-call.12 = f32[1,8]{0,1:S(1)} custom-call(%slice-done.11), custom_call_target="ConcatBitcast"
  ROOT %tuple.7 = (f32[4]{0}, f32[4,8]{0,1}) tuple(%reduce.5, %copy.6)
}
"""


def test_traffic_counts_what_runs_by_source():
  rows = {key: (b, n) for key, b, n in roofline.traffic(MODULE, top=0)}
  assert rows == {
      'fusion: encoder/Conv_0/convert_element_type': (4 * 8 * 2 + 4 * 8 * 4, 1),  # in + out
      'reduce: encoder/bn/reduce_sum [grad]': (4 * 8 * 4 + 4 + 4 * 4, 1),  # x, init, out
      'copy: <copy>': (2 * 4 * 8 * 4, 1),  # no op_name: named by its kind
      'copy-start: <copy-start>': (2 * 4 * 8 * 4, 1),  # read and written once
      'slice-start: <slice-start>': (2 * 8 * 4, 1),  # the slice, not the sliced buffer
  }
  assert [key for key, _, _ in roofline.traffic(MODULE, top=2)] == [
      'copy: <copy>', 'copy-start: <copy-start>']  # the largest first (a stable sort on ties)


def test_traffic_adds_up_to_xla_bytes_accessed():
  """On a real compiled program (convolution, reductions, elementwise and their gradients), the
  sources sum to XLA's own bytes accessed."""
  def f(w, x):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return jnp.sum(jax.nn.relu(y - jnp.mean(y, axis=(0, 1, 2))) ** 2)
  compiled = jax.jit(jax.grad(f)).lower(jnp.ones((3, 3, 4, 8)), jnp.ones((2, 8, 8, 4))).compile()
  total = sum(b for _, b, _ in roofline.traffic(compiled.as_text(), top=0))
  assert total == pytest.approx(roofline.cost(compiled)['bytes'], rel=0.02)
