"""Pytest plugin: a test whose xdist worker dies is run once more, and the crash is reported.

Why: now and then a worker dies inside XLA's C++ code (SIGABRT, no Python traceback) in whichever
test it is running: twice in the suite runs of 2026-12-03/04, once in CI, once locally (that one's
stack was in XLA deserializing a program from JAX's persistent compilation cache; the same test
passed alone and in the runs after). Cache entries are zlib streams, so a half-written one is an
ordinary read error that JAX turns into a recompile; the abort is XLA's own.

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
