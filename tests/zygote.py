"""A fork server for the Python processes tests start (main.py runs, several-device checks).

A new interpreter pays 6-8 s of CPU to import TensorFlow, JAX, flax, orbax and clu before main.py
does anything; the suite starts about 40 of them. This server imports those libraries once, then
forks a child for each `python SCRIPT ARGS` a test asks for (tests/processes.py): the child takes
the test's pipes, folder, environment and arguments, runs SCRIPT as `__main__` and exits with its
code, as the interpreter would. What a library reads from the environment when it is imported is
set again in the child: JAX's `JAX_*` options (the server imports JAX without them); XLA reads
XLA_FLAGS (device counts) when the child first computes, after the fork. The server imports nothing
of this project: the child imports it, from the test's checkout and PYTHONPATH.

  python tests/zygote.py SOCKET     (prints "ready" once it listens; ends when its stdin closes)
"""

import atexit
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
import threading
import traceback
import warnings

# What main.py and the checks import from other packages, the costly part of their start-up.
PRELOAD = ('tensorflow', 'tensorflow_datasets', 'jax', 'jax.numpy', 'flax.linen', 'optax',
           'orbax.checkpoint', 'clu.metric_writers', 'clu.periodic_actions', 'ml_collections',
           'absl.app', 'PIL.Image', 'scipy.linalg')


def _parse(value, text: str):
  """An environment variable's text as the type of JAX option `value` (as JAX reads it)."""
  if isinstance(value, bool):
    return text.strip().lower() in ('1', 'y', 'yes', 't', 'true', 'on')
  if isinstance(value, int):
    return int(text)
  if isinstance(value, float):
    return float(text)
  return text


def _jax_options_from_environment() -> None:
  """JAX sets each option's default from JAX_<NAME> when it is imported: here, in the child."""
  import jax  # pylint: disable=g-import-not-at-top
  for name, holder in jax.config._value_holders.items():  # pylint: disable=protected-access
    text = os.environ.get(name.upper())
    if text is not None:
      jax.config.update(name, _parse(holder.value, text))


def _exit_code(e: SystemExit) -> int:
  if e.code is None or isinstance(e.code, int):
    return e.code or 0
  print(e.code, file=sys.stderr)  # sys.exit('message'), as the interpreter prints it
  return 1


def _child(request: dict, fds) -> None:
  """Runs in the forked child: the request's pipes, folder, environment and script; never
  returns."""
  code = 1
  try:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for target, fd in enumerate(fds):
      os.dup2(fd, target)
    for fd in set(fds):
      if fd > 2:
        os.close(fd)
    os.chdir(request['cwd'])
    os.environ.clear()
    os.environ.update(request['env'])
    script, *args = request['argv']
    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    _jax_options_from_environment()
    if 'compile_log' in sys.modules:  # SINTROVAE_TEST_COMPILE_LOG: this child's counts
      sys.modules['compile_log'].forked()
    try:
      runpy.run_path(script, run_name='__main__')
      code = 0
    except SystemExit as e:
      code = _exit_code(e)
    except KeyboardInterrupt:  # as the interpreter: the traceback, then killed by SIGINT
      traceback.print_exc()
      code = -signal.SIGINT
    except BaseException:  # pylint: disable=broad-except
      traceback.print_exc()
      code = 1
    threading._shutdown()  # pylint: disable=protected-access  # (joins non-daemon threads)
    atexit._run_exitfuncs()  # pylint: disable=protected-access
  except BaseException:  # pylint: disable=broad-except  # setting up the child failed: say why
    traceback.print_exc()
  finally:
    for stream in (sys.stdout, sys.stderr):
      try:
        stream.flush()
      except Exception:  # pylint: disable=broad-except
        pass
    if code < 0:
      signal.signal(-code, signal.SIG_DFL)
      os.kill(os.getpid(), -code)
    os._exit(code & 0xff)  # pylint: disable=protected-access


def serve(path: str) -> None:
  if 'compile_log' in sys.modules:  # (SINTROVAE_TEST_COMPILE_LOG: its sitecustomize loaded it)
    sys.modules['compile_log']._role[0] = '(fork servers)'  # pylint: disable=protected-access
  for name in PRELOAD:
    try:
      __import__(name)
    except ImportError:
      pass  # the child imports what it needs itself
  # TensorFlow's import leaves three idle threads (two of its own and jemalloc's, which is fork-safe
  # by its own atfork handlers); this server forks only while it waits, so no lock is held.
  warnings.filterwarnings('ignore', message='This process .* is multi-threaded, use of fork',
                          category=DeprecationWarning)
  listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
  listener.bind(path)
  listener.listen(64)
  wake_r, wake_w = os.pipe()
  os.set_blocking(wake_w, False)
  signal.set_wakeup_fd(wake_w)
  signal.signal(signal.SIGCHLD, lambda *_: None)  # (a handler: the wakeup fd then sees SIGCHLD)
  waiting = {}  # child pid -> the connection to send its exit code to
  selector = selectors.DefaultSelector()
  selector.register(listener, selectors.EVENT_READ, 'request')
  selector.register(wake_r, selectors.EVENT_READ, 'child')
  selector.register(sys.stdin, selectors.EVENT_READ, 'parent')
  print('ready', flush=True)
  while True:
    for key, _ in selector.select():
      if key.data == 'parent':
        if not os.read(sys.stdin.fileno(), 4096):
          return  # the test process has ended
      elif key.data == 'request':
        conn, _ = listener.accept()
        message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
          for other in (listener, conn, *waiting.values()):
            other.close()
          selector.close()
          os.close(wake_r)
          os.close(wake_w)
          _child(json.loads(message), fds)
        for fd in fds:
          os.close(fd)
        conn.send(struct.pack('!i', pid))
        waiting[pid] = conn
      else:
        os.read(wake_r, 4096)
        while waiting:
          try:
            pid, status = os.waitpid(-1, os.WNOHANG)
          except ChildProcessError:
            break
          if pid == 0:
            break
          conn = waiting.pop(pid, None)
          if conn is not None:
            try:
              conn.send(struct.pack('!i', os.waitstatus_to_exitcode(status)))
            except OSError:
              pass  # the test stopped waiting
            conn.close()


if __name__ == '__main__':
  serve(sys.argv[1])
