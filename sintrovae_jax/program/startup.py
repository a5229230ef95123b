"""Before the first step: the persistent compilation cache, the start-up report (seconds to each
milestone, WORKDIR/startup.json), and stop signals (preemption) seen at step boundaries."""

import logging
import os
import signal
import time
from typing import Any, Dict

import jax

from sintrovae_jax.io import fs, hosts
from sintrovae_jax.program import workdir as workdir_lib


class Preemption:
  """Stop signals: the loop saves and exits at a step boundary, every host at the same step.

  One process: SIGTERM (a preempted VM) or Ctrl-C sets a flag, seen at the next step. Several
  processes: JAX's preemption notifier owns SIGTERM (hooked when jax.distributed started, so no
  handler of ours replaces it) and every host stops at the sync point that JAX chooses, after the
  same step; Ctrl-C on a host is passed to that notifier as a SIGTERM. A second Ctrl-C exits at
  once, without saving.
  """

  def __init__(self):
    self.requested = False
    self.multi = jax.process_count() > 1
    self._previous = {}
    signals = (signal.SIGINT,) if self.multi else (signal.SIGTERM, signal.SIGINT)
    try:
      for signum in signals:
        self._previous[signum] = signal.signal(signum, self._handle)
    except ValueError:  # not the main thread: leave signals alone
      pass

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    name = signal.Signals(signum).name
    if self.requested and signum == signal.SIGINT:
      logging.warning('Second Ctrl-C: exiting now without saving.')
      os._exit(130)
    logging.warning('%s received: saving a checkpoint and stopping (Ctrl-C again to exit at '
                    'once).', name)
    self.requested = True
    if self.multi:  # every host stops together through JAX's preemption notice
      os.kill(os.getpid(), signal.SIGTERM)

  def restore_defaults(self) -> None:
    try:
      for signum, handler in self._previous.items():
        signal.signal(signum, handler)
    except ValueError:
      pass

  def __call__(self, step: int) -> bool:
    if self.multi:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      return bool(multihost_utils.reached_preemption_sync_point(step))
    return self.requested


def configure_compilation_cache(config, workdir: str) -> str:
  """Points JAX's persistent compilation cache at config.compilation_cache_dir (before any
  compile); a JAX_COMPILATION_CACHE_DIR set in the environment wins. Returns the folder, or ''
  where there is none or it is off (hosts.initialize turns it off for several CPU processes)."""
  if not jax.config.jax_enable_compilation_cache:
    return ''
  if os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    return os.environ['JAX_COMPILATION_CACHE_DIR']
  folder = config.compilation_cache_dir.replace('{workdir}', fs.absolute(workdir))  # gs:// too
  if folder:
    jax.config.update('jax_compilation_cache_dir', folder)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  return folder


class StartupReport:
  """Seconds from the start to each milestone, and the compilation-cache hits among them."""

  def __init__(self):
    self.start = time.perf_counter()
    self.seconds: Dict[str, float] = {}
    self.cache_hits = 0
    self._last = self.start
    jax.monitoring.register_event_listener(self._on_event)

  def _on_event(self, event: str, **kwargs) -> None:
    del kwargs
    if event == '/jax/compilation_cache/cache_hits':
      self.cache_hits += 1

  def mark(self, what: str) -> None:
    """Records the seconds spent since the previous mark under `what`."""
    now = time.perf_counter()
    self.seconds[what] = round(now - self._last, 3)
    self._last = now

  def close(self) -> None:
    try:
      jax.monitoring.unregister_event_listener(self._on_event)
    except (AssertionError, KeyError, ValueError):  # already unregistered
      pass

  def write(self, workdir: str, cache_dir: str, start_step: int) -> Dict[str, Any]:
    self.close()
    report = dict(seconds=self.seconds, to_first_step=round(self._last - self.start, 3),
                  compilation_cache_dir=cache_dir, compilation_cache_hits=self.cache_hits,
                  start_step=start_step, **workdir_lib.topology())
    logging.info('Start-up: %.1f s to the first step (%s); compilation cache: %d hit(s).',
                 report['to_first_step'],
                 ', '.join(f'{k} {v:.1f} s' for k, v in self.seconds.items()), self.cache_hits)
    if hosts.is_leader():
      fs.write_json(fs.join(workdir, 'startup.json'), report, indent=2)
    return report
