"""XLA settings of the test processes: the fast-compile preset, and several simulated CPU devices.

The preset (`FAST_COMPILE`, set by conftest.py for the tests and every process they start): XLA's
CPU compiler at its fast-compile preset compiles the suite's tiny programs 2-3 times faster (7.9 ->
3.2 s for a one-level image step, 15.3 -> 5.9 s for a two-level one, this 2-core machine) and runs
them as fast; LLVM at optimisation level 1 on top of it takes another 15-25% off (below). Both
sides of every comparison are compiled alike, and the golden step has arrays made with the preset
(tests/golden/make_step_golden.py; level 1 computes the same bits: all 105 arrays of its scenarios
equal with and without it). `SINTROVAE_TEST_XLA_DEFAULTS=1` runs the suite with XLA's default
optimisation instead.

Several devices: XLA's CPU client runs each device's program on its own thread and all-reduces by
rendezvous: a device that arrives 20 s after the others is reported as stuck, and after 40 s more
XLA aborts the process ("Termination timeout for all reduce RendezvousKey ... of 40 seconds
exceeded", xla/service/rendezvous.cc). With 4 devices on 2 cores that another process keeps busy,
a device thread can be starved that long between two of the step's BatchNorm all-reduces, so the
check died under load though nothing was wrong. The limit is raised to 10 minutes here; the tests'
own subprocess timeouts still catch a real hang.
"""

import os

COLLECTIVE_FLAGS = ('--xla_cpu_collective_call_warn_stuck_timeout_seconds=120 '
                    '--xla_cpu_collective_call_terminate_timeout_seconds=600')


# The preset, and LLVM at optimisation level 1 on top of it: the tiny style step compiles in 8-10 s
# instead of 12-13, the two-level image step in 8-10 instead of 10-11, running 4% slower. Level 0
# does not pay: for the whole suite (JAX_DISABLE_MOST_OPTIMIZATIONS=1, 2026-12-07) XLA compiled
# 29% faster (869 -> 614 s) but the programs ran so much slower that the run's CPU rose (1,698 ->
# 1,725 s; the OOD digits run 115 -> 295 s); the last float32 bits differ, and the 3D step's
# gradients overflow there. Level 0 for the compile-bound tests alone compiled their shared
# programs at both levels (388 more compiles) and saved nothing either.
PRESET = '--xla_cpu_opt_preset=FAST_COMPILE'
FAST_COMPILE = (PRESET, '--xla_backend_optimization_level=1')


def fast_compile_on() -> bool:
  """Whether this process's XLA_FLAGS hold the preset (with or without level 1: the same bits)."""
  return PRESET in os.environ.get('XLA_FLAGS', '').split()


def use_fast_compile() -> None:
  """Adds the flags above to this process's XLA_FLAGS (before JAX starts); its children inherit."""
  flags = os.environ.get('XLA_FLAGS', '').split()
  if not os.environ.get('SINTROVAE_TEST_XLA_DEFAULTS'):
    os.environ['XLA_FLAGS'] = ' '.join(flags + [f for f in FAST_COMPILE if f not in flags])


def cpu_devices_env(devices: int) -> dict:
  """The environment of a process on `devices` CPU devices. The inherited flags come first: where a
  flag repeats, XLA takes the last, so the device count here wins."""
  flags = os.environ.get('XLA_FLAGS', '').split() + [
      f'--xla_force_host_platform_device_count={devices}', COLLECTIVE_FLAGS]
  return dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3', XLA_FLAGS=' '.join(flags))
