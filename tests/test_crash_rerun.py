"""The crash plugin (crash_rerun.py): a worker that dies costs its test one rerun, never more."""

import os
import subprocess
import sys

_TESTS = '''
import os

def test_dies_once():
  marker = os.path.join(os.environ['CRASH_DIR'], 'died')
  if not os.path.exists(marker):
    open(marker, 'w').close()
    os.abort()

def test_dies_always():
  os.abort()

def test_fails_plainly():
  assert 1 == 2
'''


def test_a_dead_worker_reruns_its_test_once_and_a_plain_failure_never(tmp_path):
  (tmp_path / 'test_c.py').write_text(_TESTS)
  path = os.pathsep.join([os.path.dirname(__file__), os.environ.get('PYTHONPATH', '')])
  env = dict(os.environ, CRASH_DIR=str(tmp_path), PYTHONPATH=path)  # finds -p crash_rerun
  out = subprocess.run(
      [sys.executable, '-m', 'pytest', '-n', '1', '-p', 'crash_rerun', '-p', 'no:cacheprovider',
       '-q', '-rA', 'test_c.py'],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
  text = out.stdout
  assert out.returncode == 1, text[-3000:]
  assert 'PASSED test_c.py::test_dies_once' in text, text[-3000:]
  assert "crashed while running 'test_c.py::test_dies_always'" in text, text[-3000:]
  assert 'FAILED test_c.py::test_fails_plainly' in text, text[-3000:]
  assert '2 failed, 1 passed' in text and '2 rerun' in text, text[-3000:]
  assert 'test_c.py::test_dies_once: worker died 1 time(s)' in text, text[-3000:]
  assert 'test_c.py::test_dies_always: worker died 2 time(s)' in text, text[-3000:]
