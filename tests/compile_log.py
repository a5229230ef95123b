"""Counts the XLA programs each test compiles, for keeping the suite short (opt-in, off by default).

`SINTROVAE_TEST_COMPILE_LOG=DIR python -m pytest ...` makes every test process, and every Python
process a test starts (main.py runs, notebooks, multi-device checks: through the sitecustomize in
compile_log_site/, which conftest puts on their PYTHONPATH), write DIR/<pid>.json at exit: per test
(pytest's PYTEST_CURRENT_TEST, which the children inherit), the programs compiled, the programs
served from the persistent cache, and the seconds spent tracing, lowering and compiling; and
DIR/<pid>.programs: per test and program name (pmapped programs are all `jit(_fun)`: pmap is a
shard_map inside), how often it was compiled or loaded from the cache, and the seconds each took.
Then `python tests/compile_log.py DIR` prints the totals, the tests that compile the most and the
programs (by name, over all tests) that take the most compile time.
"""

import collections
import glob
import json
import os
import resource
import sys

ENV = 'SINTROVAE_TEST_COMPILE_LOG'
SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'compile_log_site')
_SECONDS = {'/jax/core/compile/backend_compile_duration': 'compile_s',
            '/jax/core/compile/jaxpr_trace_duration': 'trace_s',
            '/jax/core/compile/jaxpr_to_mlir_module_duration': 'lower_s'}
_counts = collections.defaultdict(collections.Counter)
_programs = collections.defaultdict(collections.Counter)  # per program name, over all tests
_hit = [False]  # the cache-hit event comes just before its program's compile duration
_CHILD = 'PYTEST_CURRENT_TEST' in os.environ  # set at start-up: a process a test started
_installed = False  # once per process: twice would count every event twice
_directory = []  # where install() writes
_role = [None]  # '(fork servers)' in tests/zygote.py, whose children count under their tests


def _test() -> str:
  return os.environ.get('PYTEST_CURRENT_TEST', '(outside a test)').rsplit(' (', 1)[0]


def _on_event(event, **_):
  if event == '/jax/compilation_cache/cache_hits':
    _counts[_test()]['from_cache'] += 1
    _hit[0] = True


def _on_duration(event, duration_secs, fun_name='?', **_):
  key = _SECONDS.get(event)
  if key:
    counts = _counts[_test()]
    counts[key] += duration_secs
    if key == 'compile_s':
      counts['programs'] += 1
      program = _programs[f'{_test()} {fun_name}']
      program['from_cache' if _hit[0] else 'compiled'] += 1
      program['load_s' if _hit[0] else 'compile_s'] += duration_secs
      _hit[0] = False


def _write(directory, pid):
  if os.getpid() != pid:  # a child forked without exec inherited this hook and the parent's counts
    return
  usage = resource.getrusage(resource.RUSAGE_SELF)
  # The process itself: under the test that started it, or, for pytest's own processes, apart.
  process = _counts[_role[0] or (_test() if _CHILD else '(pytest processes)')]
  process['processes'] += 1
  process['process_cpu_s'] += usage.ru_utime + usage.ru_stime
  with open(os.path.join(directory, f'{os.getpid()}.json'), 'w') as f:
    json.dump({test: dict(c) for test, c in _counts.items()}, f)
  with open(os.path.join(directory, f'{os.getpid()}.programs'), 'w') as f:
    json.dump({name: dict(c) for name, c in _programs.items()}, f)


def install():
  """Starts counting in this process if the environment asks for it; a no-op otherwise."""
  global _installed
  directory = os.environ.get(ENV)
  if not directory or _installed:  # pytest's processes: sitecustomize, then conftest, call this
    return
  _installed = True
  _directory[:] = [directory]
  import atexit  # pylint: disable=g-import-not-at-top
  import jax.monitoring  # pylint: disable=g-import-not-at-top
  os.makedirs(directory, exist_ok=True)
  jax.monitoring.register_event_listener(_on_event)
  jax.monitoring.register_event_duration_secs_listener(_on_duration)
  atexit.register(_write, directory, os.getpid())
  paths = os.environ.get('PYTHONPATH', '').split(os.pathsep)
  if SITE not in paths:  # children count too
    os.environ['PYTHONPATH'] = os.pathsep.join([SITE, os.path.dirname(SITE)] +
                                               [p for p in paths if p])


def forked():
  """In a child that tests/zygote.py forked from a counting process: this process's own counts,
  written at its exit (the parent's hook would write nothing here: another pid)."""
  if _installed:
    import atexit  # pylint: disable=g-import-not-at-top
    _role[0] = None
    _counts.clear()
    _programs.clear()
    _hit[0] = False
    atexit.register(_write, _directory[0], os.getpid())


def report(directory, top=15):
  totals = collections.defaultdict(collections.Counter)
  for path in glob.glob(os.path.join(directory, '*.json')):
    with open(path) as f:
      for test, counts in json.load(f).items():
        totals[test].update(counts)
  whole = sum(totals.values(), collections.Counter())
  print(f'{len(totals)} tests; programs {whole["programs"]} (from the cache {whole["from_cache"]}, '
        f'compiled {whole["programs"] - whole["from_cache"]}); compile {whole["compile_s"]:.0f} s, '
        f'trace {whole["trace_s"]:.0f} s, lower {whole["lower_s"]:.0f} s of CPU; '
        f'{whole["processes"]} processes, {whole["process_cpu_s"]:.0f} s of their CPU')
  print('\n| test | programs | from cache | compile s | trace s | processes | their CPU s |\n'
        '|---|---|---|---|---|---|---|')
  for test, c in sorted(totals.items(), key=lambda kv: -kv[1]['compile_s'])[:top]:
    print(f'| {test} | {c["programs"]} | {c["from_cache"]} | {c["compile_s"]:.1f} | '
          f'{c["trace_s"]:.1f} | {c["processes"]} | {c["process_cpu_s"]:.0f} |')
  programs = collections.defaultdict(collections.Counter)
  for path in glob.glob(os.path.join(directory, '*.programs')):
    with open(path) as f:
      for name, counts in json.load(f).items():
        programs[name.rsplit(' ', 1)[-1]].update(counts)
  print('\n| program (by name) | compiled | compile s | from cache | load s |\n|---|---|---|---|---|')
  for name, c in sorted(programs.items(), key=lambda kv: -kv[1]['compile_s'])[:top]:
    print(f'| {name} | {c["compiled"]} | {c["compile_s"]:.1f} | {c["from_cache"]} | '
          f'{c["load_s"]:.1f} |')


if __name__ == '__main__':
  report(sys.argv[1], *map(int, sys.argv[2:3]))
