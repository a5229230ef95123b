"""The package's import graph, read from the source: no module imports one that imports it back
(directly or round a longer circle), so each can be read, tested and moved on its own."""

import ast
import os
from typing import Dict, List, Set

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = 'sintrovae_jax'


def import_graph(root: str = ROOT) -> Dict[str, Set[str]]:
  """Module -> the package modules it imports (anywhere in the file), e.g. 'train' -> {'fs'}."""
  folder = os.path.join(root, PACKAGE)
  modules = {f[:-3] for f in os.listdir(folder) if f.endswith('.py') and f != '__init__.py'}
  graph = {}
  for module in sorted(modules):
    with open(os.path.join(folder, module + '.py')) as f:
      tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
        found |= {a.name for a in node.names}
      elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith(PACKAGE + '.'):
        found.add(node.module.split('.')[1])
      elif isinstance(node, ast.Import):
        found |= {a.name.split('.')[1] for a in node.names if a.name.startswith(PACKAGE + '.')}
    graph[module] = found & modules - {module}
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


def test_the_finder_sees_a_circle():
  assert circles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
  assert circles({'a': {'b'}, 'b': set()}) == []


def test_the_package_has_no_import_circle():
  graph = import_graph()
  assert 'fs' in graph['train'] and 'train' in graph['style_train']  # (the graph is read)
  assert circles(graph) == [], circles(graph)
