"""Environment for subprocesses that run on several simulated CPU devices.

XLA's CPU client runs each device's program on its own thread and all-reduces by rendezvous: a
device that arrives 20 s after the others is reported as stuck, and after 40 s more XLA aborts the
process ("Termination timeout for all reduce RendezvousKey ... of 40 seconds exceeded",
xla/service/rendezvous.cc). With 4 devices on 2 cores that another process keeps busy, a device
thread can be starved that long between two of the step's BatchNorm all-reduces, so the check
died under load though nothing was wrong. The limit is raised to 10 minutes here; the tests'
own subprocess timeouts still catch a real hang.
"""

import os

COLLECTIVE_FLAGS = ('--xla_cpu_collective_call_warn_stuck_timeout_seconds=120 '
                    '--xla_cpu_collective_call_terminate_timeout_seconds=600')


def cpu_devices_env(devices: int) -> dict:
  return dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3',
              XLA_FLAGS=f'--xla_force_host_platform_device_count={devices} {COLLECTIVE_FLAGS}')
