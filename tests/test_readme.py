"""The README's example and commands stay true."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks(language):
  text = open(os.path.join(ROOT, 'README.md')).read()
  return re.findall(rf'```{language}\n(.*?)```', text, re.S)


def test_readme_example_runs():
  scope = {}
  exec(compile(_blocks('python')[0], 'README.md', 'exec'), scope)  # pylint: disable=exec-used
  assert scope['samples'].shape == (1000, 2) and scope['mu'].shape == (8, 2)
  assert int(scope['state'].step) == 50
  # "Training options" continues the example in the same scope.
  exec(compile(_blocks('python')[1], 'README.md', 'exec'), scope)  # pylint: disable=exec-used
  assert scope['samples'].shape == (64, 2) and int(scope['state'].step) == 1
  assert scope['state'].ema is not None and scope['state'].target is not None


def test_readme_commands_match_ci():
  install, tests = _blocks('bash')[:2]
  assert 'pip install -e' in install and 'main.py --config=configs/toy2d.py:8gaussians' in install
  ci = open(os.path.join(ROOT, '.ci', 'run')).read()
  assert tests.strip() in ci
