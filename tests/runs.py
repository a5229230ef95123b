"""Running main.py and reading what a run left behind, for the end-to-end tests."""

import os
import socket
import subprocess
import sys
import time
from typing import Tuple

import jax
import numpy as np

from sintrovae_jax.program import standard, workdir as workdir_lib
from tiny import LONG_2D_FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


def run_main(*args, timeout=240, env=None, **kwargs):
  env = dict(os.environ if env is None else env, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.run([sys.executable, 'main.py', *args], cwd=ROOT, env=env, text=True,
                        capture_output=True, timeout=timeout, **kwargs)


def params_of(workdir, config):
  """The state of `workdir`'s latest checkpoint (the manager closed after: no threads left)."""
  return restored(workdir, config, standard.build(config).state)


def restored(workdir, config, initial):
  with workdir_lib.checkpoint_manager(workdir, config) as manager:
    return workdir_lib.restore_latest(manager, initial)


def latest_step(workdir, config):
  with workdir_lib.checkpoint_manager(workdir, config) as manager:
    return manager.latest_step()


def assert_states_close(a, b):
  assert int(a.step) == int(b.step)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def stop_long_2d_run(workdir: str, signum: int) -> Tuple[int, str]:
  """Starts a 3,000-step 2D run, sends `signum` once it logs, returns (exit code, output)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.Popen([sys.executable, 'main.py', '--config=configs/toy2d.py:8gaussians',
                           f'--workdir={workdir}', *LONG_2D_FLAGS], cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  deadline = time.time() + 180  # startup.json: written once the first step has run
  while not os.path.exists(os.path.join(workdir, 'startup.json')) and time.time() < deadline:
    time.sleep(0.2)
  proc.send_signal(signum)
  output, _ = proc.communicate(timeout=120)
  return proc.returncode, output


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]
