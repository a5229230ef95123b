"""An advisory lease on a workdir, so that two runs do not train into one folder or bucket.

Process 0 writes WORKDIR/run.lease (JSON: host, pid, start time, heartbeat), refreshes the
heartbeat every `HEARTBEAT_SECONDS` from a daemon thread, and deletes it when the run ends. A
start that finds a lease whose heartbeat is younger than `STALE_SECONDS` refuses to run, unless
the holder is a process of this same machine that no longer exists (a run killed with kill -9
can be restarted at once). A lease is advice, not a lock: object stores have no locks, and two
runs started within the same second can both take it. A run that died on another machine holds
the workdir until its heartbeat is stale; delete run.lease to take it over sooner.
"""

import errno
import os
import socket
import threading
import time
from typing import Any, Dict, Optional

from sintrovae_jax.io import fs

HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 120.0
LEASE_FILE = 'run.lease'


class WorkdirLocked(RuntimeError):
  """Another run holds this workdir."""


class WorkdirError(RuntimeError):
  """The workdir cannot be used (a file, not writable, no space); the message says the fix."""


def fix_for(error: OSError) -> str:
  """What to do about a storage error, by its errno."""
  if error.errno == errno.ENOSPC:
    return 'Free some space there, or use another --workdir.'
  if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
    return 'Make it writable, or use another --workdir.'
  if error.errno in (errno.EEXIST, errno.ENOTDIR):
    return 'A file stands where a folder should be: use another --workdir.'
  return 'Check the path and the storage, then rerun the same command.'


_MESSAGES = (('No space left on device', errno.ENOSPC), ('RESOURCE_EXHAUSTED', errno.ENOSPC),
             ('Read-only file system', errno.EROFS), ('Permission denied', errno.EACCES))


def storage_failure(error: BaseException):
  """The OSError behind `error`, or one made from its message, when the storage failed (no
  space, read-only, no permission: libraries such as TensorStore and TensorFlow's writers raise
  their own classes, saying so in words); None for any other error."""
  seen = error
  while seen is not None:
    if isinstance(seen, OSError) and seen.errno:
      return seen
    for words, code in _MESSAGES:
      if words in str(seen):
        return OSError(code, os.strerror(code))
    seen = seen.__cause__ or seen.__context__
  return None


def writable_error(workdir: str, error: OSError, what: str) -> WorkdirError:
  """A one-line WorkdirError for an OSError met while writing `what` under `workdir`."""
  reason = error.strerror or str(error) or type(error).__name__
  return WorkdirError(f'Cannot write {what} in --workdir={workdir!r} ({reason}). '
                      f'{fix_for(error)}')


def _alive_here(holder: Dict[str, Any]) -> bool:
  """Whether the holder's pid is a live process here (asked only of this machine's holders)."""
  try:
    os.kill(int(holder['pid']), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, KeyError, ValueError, TypeError):
    return True  # exists (another user's) or unreadable: assume it lives
  return True


class Lease:
  """WORKDIR/run.lease held by this process; `release()` when the run ends."""

  def __init__(self, workdir: str):
    self.workdir = fs.absolute(workdir)
    self.path = fs.join(self.workdir, LEASE_FILE)
    self.record = {'host': socket.gethostname(), 'pid': os.getpid(), 'started': time.time()}
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None

  def acquire(self) -> 'Lease':
    """Takes the lease, or raises WorkdirLocked (held) or WorkdirError (cannot write there)."""
    if fs.isfile(self.workdir):
      raise WorkdirError(f'--workdir={self.workdir!r} is a file, not a folder: give a folder '
                         '(it is created if missing).')
    holder = self._holder()
    if holder is not None:
      age = time.time() - float(holder.get('heartbeat', 0))
      mine = holder.get('host') == self.record['host']
      if age < STALE_SECONDS and not (mine and not _alive_here(holder)):
        raise WorkdirLocked(
            f'{self.workdir!r} is in use by host {holder.get("host")} pid {holder.get("pid")} '
            f'(lease {self.path}, heartbeat {age:.0f} s ago). Wait for that run to end, stop it, '
            f'or use another --workdir; if it is dead, delete {LEASE_FILE} or wait '
            f'{STALE_SECONDS:.0f} s after its last heartbeat.')
    try:
      fs.makedirs(self.workdir)
      self._beat()
    except OSError as e:
      raise writable_error(self.workdir, e, 'the run lease') from None
    self._thread = threading.Thread(target=self._heartbeat, name='lease-heartbeat', daemon=True)
    self._thread.start()
    return self

  def _holder(self) -> Optional[Dict[str, Any]]:
    try:
      return fs.read_json(self.path)
    except FileNotFoundError:
      return None
    except (OSError, ValueError):  # unreadable or half written: a lease all the same
      return {'host': '?', 'pid': '?', 'heartbeat': time.time()}

  def _beat(self) -> None:
    fs.write_json(self.path, dict(self.record, heartbeat=time.time()))

  def _heartbeat(self) -> None:
    while not self._stop.wait(HEARTBEAT_SECONDS):
      try:
        self._beat()
      except OSError:  # a passing storage fault: the next beat tries again
        pass

  def release(self) -> None:
    """Stops the heartbeat and deletes the lease (if it is still ours)."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=5)
    try:
      holder = fs.read_json(self.path)
      if holder.get('pid') == self.record['pid'] and holder.get('host') == self.record['host']:
        fs.remove(self.path)
    except (OSError, ValueError):
      pass
