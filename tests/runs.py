"""Running main.py and reading what a run left behind, for the end-to-end tests."""

import collections
import contextlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from typing import Tuple
from unittest import mock

import jax
import jax.monitoring
import numpy as np

from sintrovae_jax.program import standard, workdir as workdir_lib
from devices import cpu_devices_env
import processes
from tiny import LONG_2D_FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


def run_main(*args, timeout=240, env=None, **kwargs):
  """`python main.py ARGS` as a process (forked from tests/processes.py's server), its output
  captured as text."""
  env = dict(os.environ if env is None else env, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3')
  return processes.run([sys.executable, 'main.py', *args], cwd=ROOT, env=env, text=True,
                       capture_output=True, timeout=timeout, **kwargs)


def run_check(script: str, *args, env: dict, timeout: int = 300) -> dict:
  """Runs tests/SCRIPT, a check that prints its numbers as one JSON line last, in `env` (e.g.
  `devices.cpu_devices_env(4)`); returns that line, or fails with the script's stderr."""
  out = processes.run([sys.executable, os.path.join('tests', script), *args], cwd=ROOT, env=env,
                      text=True, capture_output=True, timeout=timeout)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def run_main_here(*args, cwd: str = ROOT):
  """main.py's `main` in this process, from `cwd`: its flags, error handling, exit code, printed
  output and log (in `stderr`, as main.py's absl logging writes it), as `run_main` returns them,
  sharing this process's compiled programs (a process from tests/processes.py's fork server has
  the imports done, but starts JAX afresh and loads its programs from the compilation cache). For
  training runs too, and for modes that read a finished run (sample, fid, ood, translate). One
  step is left out: looking for other hosts (`hosts.initialize`), which JAX allows only before its
  first computation; this process is one host. So runs that must be processes start one with
  `run_main`: several hosts, several devices, a signal sent from outside, a restart that must
  find the compiled steps on disk, and a failing run whose whole output must be one line (its
  background threads may print up to the process's exit, after this call would have returned).
  Nothing main.py leaves in this process outlives the call
  (parsed flags and the --config.FIELD flags each parse defines, log level and filters, the
  working folder, the storage-traceback switch)."""
  import main  # pylint: disable=g-import-not-at-top  # (defines main.py's absl flags, once)
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  argv = ['main.py', *args]
  stdout, stderr, code = io.StringIO(), io.StringIO(), 0
  root = logging.getLogger()
  handlers = {h: list(h.filters) for h in root.handlers}
  level, verbosity = root.level, absl_logging.get_verbosity()
  log = logging.StreamHandler(stderr)  # what main.py's absl handler would write to stderr
  log.setFormatter(absl_logging.PythonFormatter())
  root.addHandler(log)
  defined = set(main.FLAGS)
  try:
    root.setLevel(logging.INFO)  # main.py's level: absl's default verbosity once flags are parsed
    absl_logging.set_verbosity(absl_logging.INFO)
    # (sys.argv too: ml_collections finds the --config.FIELD overrides there.)
    with contextlib.chdir(cwd), contextlib.redirect_stdout(stdout), \
        contextlib.redirect_stderr(stderr), mock.patch.object(sys, 'argv', argv), \
        mock.patch.object(main.hosts, 'initialize', lambda *_: None), \
        mock.patch.object(workdir_lib, 'SHOW_STORAGE_TRACEBACKS',  # (main sets it from --verbose)
                          workdir_lib.SHOW_STORAGE_TRACEBACKS):
      try:
        main.main(main._parse_flags(argv))  # pylint: disable=protected-access
      except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
  finally:
    root.removeHandler(log)  # (first: what follows logs, and main.py's output has ended)
    root.setLevel(level)
    absl_logging.set_verbosity(verbosity)
    for name in set(main.FLAGS) - defined:  # --config.FIELD overrides: defined by each parse
      delattr(main.FLAGS, name)
    main.FLAGS.unparse_flags()
    for handler, filters in handlers.items():
      handler.filters[:] = filters
  return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())


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
  proc = processes.Popen([sys.executable, 'main.py', '--config=configs/toy2d.py:8gaussians',
                          f'--workdir={workdir}', *LONG_2D_FLAGS], cwd=ROOT, env=env, text=True,
                         stdout=processes.PIPE, stderr=processes.STDOUT)
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


def start_hosts(cwds, *args):
  """main.py `args` as two hosts on a local coordinator (2 CPU devices each), host i in cwds[i]."""
  port = free_port()
  return [processes.Popen([sys.executable, os.path.join(ROOT, 'main.py'), *args,
                           f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
                           f'--process_id={i}'], cwd=cwd, env=cpu_devices_env(2), text=True,
                          stdout=processes.PIPE, stderr=processes.STDOUT)
          for i, cwd in enumerate(cwds)]


def finish(procs, timeout=300):
  """Each process's output (stdout and stderr together), waiting at most `timeout` s for each;
  all of them are killed after, so a failed wait leaves none running."""
  outputs = []
  try:
    for p in procs:
      outputs.append(p.communicate(timeout=timeout)[0])
  finally:
    for p in procs:
      p.kill()
  return outputs


@contextlib.contextmanager
def jax_events():
  """(event, program name) -> count of the tracing and compiling JAX reports inside the block."""
  seen = collections.Counter()
  active = [True]

  def on(event, duration_secs, fun_name='?', **_):
    del duration_secs
    if active[0] and event.endswith(('jaxpr_trace_duration', 'backend_compile_duration')):
      seen[(event.rsplit('/', 1)[-1].split('_')[0], fun_name)] += 1

  jax.monitoring.register_event_duration_secs_listener(on)
  try:
    yield seen
  finally:
    active[0] = False  # JAX keeps its listeners; this one goes quiet


def compiled(seen) -> dict:
  """Program name -> how many times `jax_events` saw it compiled (or loaded from the cache)."""
  return {name: n for (stage, name), n in seen.items() if stage == 'backend'}
