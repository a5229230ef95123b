"""The package's layout, read from its source: layers that import only downwards, model families
that do not import each other, and no import circle, so each part can be read, tested and moved
on its own."""

import ast
import os
from typing import Dict, List, Set

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = 'sintrovae_jax'

# Sub-package -> layer. A module imports from its own sub-package or from a lower layer, never
# from a higher one nor from another sub-package of its own layer.
LAYERS = {
    'core': 0,        # what users embed: losses, objectives, the step, train state, inference
    'io': 0,          # files and buckets, hosts, pictures written out
    'families': 1,    # one sub-package per model family, over core
    'data': 2,        # input pipelines and files
    'interop': 2,     # the restricted PyTorch reader and the importers
    'evaluators': 3,  # FID/KID, likelihood and OOD, 2D/3D metrics
    'program': 4,     # the run: config checks, the loop, workdir, the modes
}


def modules(root: str = ROOT) -> Dict[str, str]:
  """Dotted module name under the package ('program.train', 'families.style', ...) -> its file."""
  found = {}
  base = os.path.join(root, PACKAGE)
  for folder, _, files in os.walk(base):
    prefix = os.path.relpath(folder, base).replace(os.sep, '.')
    for f in files:
      if f.endswith('.py'):
        name = f[:-3] if f != '__init__.py' else ''
        dotted = '.'.join(p for p in (prefix, name) if p and p != '.')
        found[dotted] = os.path.join(folder, f)
  return found


def import_graph(root: str = ROOT) -> Dict[str, Set[str]]:
  """Module -> the package modules it imports (anywhere in the file), the package's face ('')
  included, e.g. 'program.train' -> {'io.fs', ...}."""
  files = modules(root)
  graph = {}
  for module, path in sorted(files.items()):
    with open(path) as f:
      tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
      targets = []
      if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
          node.module == PACKAGE or node.module.startswith(PACKAGE + '.')):
        source = node.module[len(PACKAGE) + 1:]
        for a in node.names:  # `from pkg.sub import module` or `from pkg.module import name`
          child = f'{source}.{a.name}' if source else a.name
          targets.append(child if child in files else source)
      elif isinstance(node, ast.Import):
        targets += [a.name[len(PACKAGE) + 1:] for a in node.names
                    if a.name.startswith(PACKAGE + '.')]
      found |= {t for t in targets if t in files}
    graph[module] = found - {module}
  return graph


def circles(graph: Dict[str, Set[str]]) -> List[List[str]]:
  """The strongly connected groups of more than one module (Tarjan), each sorted."""
  index, low, stack, on_stack, groups = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      group = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        group.append(w)
        if w == v:
          break
      if len(group) > 1:
        groups.append(sorted(group))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return groups


def wrong_way(graph: Dict[str, Set[str]]) -> List[str]:
  """Each import that breaks the layering, as 'importer -> imported (why)'. The package's face
  (sintrovae_jax/__init__.py) and the sub-packages' one-line faces are not layered."""
  found = []
  for module, imported in sorted(graph.items()):
    if not module or '.' not in module:
      continue
    top = module.split('.')[0]
    for other in sorted(imported):
      other_top = other.split('.')[0]
      if not other or other_top not in LAYERS:
        found.append(f'{module} -> {other or PACKAGE} (not a layered sub-package)')
      elif LAYERS[other_top] > LAYERS[top]:
        found.append(f'{module} -> {other} (upward: {top} is below {other_top})')
      elif LAYERS[other_top] == LAYERS[top] and other_top != top:
        found.append(f'{module} -> {other} (sideways: {top} and {other_top} are one layer)')
      elif top == 'families' == other_top:  # families.X may use families.X.* and families.*
        family, other_family = module.split('.')[1], other.split('.')
        if len(other_family) > 2 and other_family[1] != family:
          found.append(f'{module} -> {other} (one family imports another)')
  return found


def test_the_finder_sees_a_circle():
  assert circles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
  assert circles({'a': {'b'}, 'b': set()}) == []


def test_the_layer_rule_sees_upward_sideways_and_cross_family_imports():
  graph = {'core.losses': {'program.train'}, 'data.pipeline': {'interop.torch_archive'},
           'families.style.step': {'families.image.networks', 'families.layers', 'core.losses'},
           'evaluators.fid': {'data.image_files', 'io.fs'}, 'io.fs': {''}}
  assert wrong_way(graph) == [
      'core.losses -> program.train (upward: core is below program)',
      'data.pipeline -> interop.torch_archive (sideways: data and interop are one layer)',
      'families.style.step -> families.image.networks (one family imports another)',
      f'io.fs -> {PACKAGE} (not a layered sub-package)']


def test_the_package_has_no_import_circle_and_imports_only_downwards():
  graph = import_graph()
  assert {'core.train_step', 'program.loop'} <= graph['program.train']  # (the graph is read)
  assert 'core.chamfer' in graph['core.losses'] and 'families.style.model' in graph[
      'interop.style_checkpoint']
  assert set(LAYERS) == {m for m in graph if m and '.' not in m}, 'a sub-package without a layer'
  assert circles(graph) == [], circles(graph)
  assert wrong_way(graph) == [], wrong_way(graph)


MAX_LINES = 400  # a module longer than this holds more than one job: split it


def test_no_module_is_longer_than_a_reader_can_hold():
  lengths = {m: sum(1 for _ in open(path)) for m, path in modules().items()}
  assert lengths['program.train'] > 50  # (the files are read)
  assert {m: n for m, n in lengths.items() if n > MAX_LINES} == {}


def variant_comparisons(source: str) -> List[int]:
  """Lines comparing a `variant` (a name or an attribute) with anything: a dispatch on its name."""
  lines = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Compare):
      sides = [node.left, *node.comparators]
      if any(isinstance(s, ast.Name) and s.id == 'variant' or
             isinstance(s, ast.Attribute) and s.attr == 'variant' for s in sides):
        lines.append(node.lineno)
  return lines


def test_the_variant_is_dispatched_in_the_family_registry_alone():
  """config.variant is read through families/registry.py; the one other reader is the core step
  factory, whose `variant` argument (standard, bootstrap, points) is its own public option."""
  assert variant_comparisons("if config.variant == 'style':\n  pass\nx = variant in V\n") == [1, 3]
  found = {m: variant_comparisons(open(path).read()) for m, path in modules().items()}
  assert found['core.train_step']  # (the step factory checks its argument: the scan sees it)
  assert {m: lines for m, lines in found.items()
          if lines and m not in ('families.registry', 'core.train_step')} == {}


def imported_test_modules(source: str) -> List[str]:
  """The test modules (test_*) that `source` imports."""
  names = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      names += [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.append(node.module)
  return [n for n in names if n.split('.')[-1].startswith('test_')]


def test_no_test_module_imports_another():
  """What several test files share lives in a helper module (tests/tiny.py, runs.py, ...), so a
  test file can be moved, run or deleted on its own."""
  assert imported_test_modules('from test_likelihood import SIGMA\nimport tiny\n') == [
      'test_likelihood']
  found = {}
  for folder, _, files in os.walk(os.path.join(ROOT, 'tests')):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(folder, name)
        found[os.path.relpath(path, ROOT)] = imported_test_modules(open(path).read())
  assert 'tests/evaluators/test_regret.py' in found
  assert {path: names for path, names in found.items() if names} == {}
