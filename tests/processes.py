"""`Popen` and `run` for the Python processes tests start, forked from tests/zygote.py.

`python SCRIPT ARGS` (main.py, a check in tests/) starts as a child of this test process's fork
server, which has TensorFlow, JAX and the rest imported: about 7 s of CPU less per process, ~40
processes a run. What the test sees is what `subprocess` gives it: a pid to signal, pipes,
`communicate`, `wait`, the exit code (negative: the signal that ended it). Anything else (`-c`
code, another program) and `SINTROVAE_TEST_NO_ZYGOTE=1` (every process a new interpreter, as a
user starts it) go to `subprocess` itself.
"""

import atexit
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

PIPE, STDOUT, DEVNULL = subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL
_HERE = os.path.dirname(os.path.abspath(__file__))
_server = {}  # this process's fork server: its process and socket


def _socket_path() -> str:
  if _server.get('pid') != os.getpid() or _server['proc'].poll() is not None:  # (none, or died)
    folder = tempfile.mkdtemp(prefix='sintrovae_zygote_')
    path = os.path.join(folder, 'socket')
    # The server imports JAX without the JAX_* options (each child sets its own, zygote.py).
    env = {k: v for k, v in os.environ.items() if not k.startswith('JAX_')}
    env['TF_CPP_MIN_LOG_LEVEL'] = '3'  # (read at TensorFlow's import; the tests' children set 3)
    proc = subprocess.Popen([sys.executable, os.path.join(_HERE, 'zygote.py'), path],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    line = proc.stdout.readline()
    if line.strip() != 'ready':
      proc.kill()
      raise RuntimeError(f'tests/zygote.py did not start (exit code {proc.wait()}).')
    _server.update(pid=os.getpid(), proc=proc, path=path)
    atexit.register(_stop, proc, folder)
  return _server['path']


def _stop(proc, folder) -> None:
  proc.stdin.close()  # the server ends when its stdin closes
  proc.wait()
  shutil.rmtree(folder, ignore_errors=True)


def _forkable(args) -> bool:
  return (not os.environ.get('SINTROVAE_TEST_NO_ZYGOTE') and len(args) >= 2
          and args[0] == sys.executable and str(args[1]).endswith('.py'))


class Forked:
  """The subset of `subprocess.Popen` the tests use, for a child of the fork server."""

  def __init__(self, args, cwd=None, env=None, stdout=None, stderr=None, text=False):
    self.args, self.returncode = list(args), None
    self.stdout = self.stderr = None
    theirs = []  # the child's ends of the pipes, closed here once the server has them
    streams = {}
    for name, spec in (('stdout', stdout), ('stderr', stderr)):
      if spec == PIPE:
        r, w = os.pipe()
        theirs.append(w)
        streams[name] = w
        setattr(self, name, open(r, 'r' if text else 'rb'))  # pylint: disable=consider-using-with
      elif spec == STDOUT and name == 'stderr':
        streams[name] = streams['stdout']
      elif spec == DEVNULL:
        streams[name] = os.open(os.devnull, os.O_WRONLY)
        theirs.append(streams[name])
      elif spec is None:
        streams[name] = 1 if name == 'stdout' else 2
      else:
        streams[name] = spec.fileno()
    stdin = os.open(os.devnull, os.O_RDONLY)
    theirs.append(stdin)
    request = {'argv': [str(a) for a in self.args[1:]],
               'cwd': os.path.abspath(cwd or os.getcwd()),
               'env': dict(os.environ if env is None else env)}
    self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
      self._conn.connect(_socket_path())
      socket.send_fds(self._conn, [json.dumps(request).encode()],
                      [stdin, streams['stdout'], streams['stderr']])
      self.pid = struct.unpack('!i', self._conn.recv(4))[0]
    finally:
      for fd in theirs:
        os.close(fd)

  def poll(self):
    if self.returncode is None:
      self._conn.setblocking(False)
      try:
        self._read_code()
      except BlockingIOError:
        pass
      finally:
        self._conn.setblocking(True)
    return self.returncode

  def _read_code(self):
    data = self._conn.recv(4)
    if len(data) != 4:
      raise RuntimeError('tests/zygote.py ended before its child did')
    self.returncode = struct.unpack('!i', data)[0]
    self._conn.close()

  def wait(self, timeout=None):
    if self.returncode is None:
      self._conn.settimeout(timeout)
      try:
        self._read_code()
      except socket.timeout:
        raise subprocess.TimeoutExpired(self.args, timeout) from None
      finally:
        if self.returncode is None:
          self._conn.settimeout(None)
    return self.returncode

  def communicate(self, timeout=None):
    """Reads stdout and stderr to their ends and waits, as `Popen.communicate`."""
    deadline = None if timeout is None else time.monotonic() + timeout
    results = {}
    readers = [threading.Thread(target=lambda n=n, s=s: results.__setitem__(n, s.read()),
                                daemon=True)
               for n, s in (('stdout', self.stdout), ('stderr', self.stderr)) if s is not None]
    for reader in readers:
      reader.start()
    for reader in readers:
      reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
      if reader.is_alive():
        raise subprocess.TimeoutExpired(self.args, timeout)
    self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
    for s in (self.stdout, self.stderr):
      if s is not None:
        s.close()
    return results.get('stdout'), results.get('stderr')

  def send_signal(self, signum):
    if self.poll() is None:
      try:
        os.kill(self.pid, signum)
      except ProcessLookupError:
        pass  # it has just ended

  def terminate(self):
    self.send_signal(signal.SIGTERM)

  def kill(self):
    self.send_signal(signal.SIGKILL)


def Popen(args, **kwargs):  # pylint: disable=invalid-name
  """`subprocess.Popen(args, **kwargs)`, forked from the server where `args` runs a script."""
  if not _forkable(args):
    return subprocess.Popen(args, **kwargs)  # pylint: disable=consider-using-with
  return Forked(args, **kwargs)


def run(args, capture_output=False, timeout=None, check=False, **kwargs):
  """`subprocess.run`, forked from the server where `args` runs a script."""
  if not _forkable(args):
    return subprocess.run(args, capture_output=capture_output, timeout=timeout, check=check,
                          **kwargs)
  if capture_output:
    kwargs.update(stdout=PIPE, stderr=PIPE)
  proc = Forked(args, **kwargs)
  try:
    out, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()
    raise
  if check and proc.returncode:
    raise subprocess.CalledProcessError(proc.returncode, args, out, err)
  return subprocess.CompletedProcess(args, proc.returncode, out, err)
