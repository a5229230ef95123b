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
