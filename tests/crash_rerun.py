"""Pytest plugin: a test whose xdist worker dies is run once more, and the crash is reported.

Why: a worker sometimes dies inside XLA's C++ code (SIGABRT or SIGSEGV, no Python traceback):
in three of the five full suite runs of 2026-12-03/04, each time in a different test, and where
the stack was shown, in XLA deserializing a program read from JAX's persistent compilation cache
(`backend.deserialize_executable`, one thread at work). Every such test passed alone and on its
rerun. Cache entries are zlib streams, so a half-written one is an ordinary read error that JAX
turns into a recompile: the crash is XLA's own.

A test's own failure is never rerun: only a process that died, and only once; a second death
fails the test as before. Every rerun is listed at the end of the run, so a crash that starts to
recur is seen. Loaded by conftest.py (`pytest_plugins`).
"""

_RERUNS = 1
_crashed = {}  # node id -> times its worker died


def pytest_handlecrashitem(crashitem, report, sched):
  """xdist's hook for a test that was running when its worker died."""
  _crashed[crashitem] = _crashed.get(crashitem, 0) + 1
  if _crashed[crashitem] <= _RERUNS:
    sched.mark_test_pending(crashitem)  # handed to the next free worker
    report.outcome = 'rerun'


def pytest_report_teststatus(report):
  if report.outcome == 'rerun':
    return 'rerun', 'R', ('RERUN', {'yellow': True})
  return None


def pytest_terminal_summary(terminalreporter):
  if _crashed:
    terminalreporter.section('tests whose worker died (run once more)', sep='-', yellow=True)
    for nodeid, times in _crashed.items():
      terminalreporter.line(f'{nodeid}: worker died {times} time(s)')
