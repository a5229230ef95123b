"""Executes the tutorial notebooks headless, with nbclient, as CI and the committed outputs need.

  python scripts/run_notebooks.py                      # full mode: outputs saved in notebooks/
  python scripts/run_notebooks.py --tiny --output_dir=/tmp/nb   # TINY = True, copies elsewhere

Full mode is what the repository keeps (the pictures render on the repository page): run it on a
CPU after changing a notebook, and commit the result. Parameters go in papermill's way: a cell
tagged `injected-parameters` after the cell tagged `parameters`, so `papermill -p TINY True`
works too. Each notebook runs in its own folder (notebooks/), as Jupyter would run it.
"""

import argparse
import copy
import os
import sys
import time
from typing import Dict, Optional, Sequence

import nbformat
from nbclient import NotebookClient

NOTEBOOK_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            'notebooks')
NOTEBOOKS = ('soft_intro_vae_2d.ipynb', 'soft_intro_vae_images.ipynb')


def with_parameters(nb: nbformat.NotebookNode, parameters: Dict[str, object],
                    extra_cells: Sequence[str] = ()) -> nbformat.NotebookNode:
  """A copy of `nb` with `parameters` set after its `parameters` cell and `extra_cells` (code)
  appended at the end."""
  nb = copy.deepcopy(nb)
  if parameters:
    index = next((i for i, c in enumerate(nb.cells)
                  if 'parameters' in c.get('metadata', {}).get('tags', [])), None)
    if index is None:
      raise ValueError('The notebook has no cell tagged "parameters".')
    cell = nbformat.v4.new_code_cell(
        '\n'.join(f'{k} = {v!r}' for k, v in parameters.items()))
    cell.metadata['tags'] = ['injected-parameters']
    nb.cells.insert(index + 1, cell)
  nb.cells.extend(nbformat.v4.new_code_cell(source) for source in extra_cells)
  return nb


def execute(path: str, parameters: Optional[Dict[str, object]] = None,
            extra_cells: Sequence[str] = (), timeout: int = 3_600) -> nbformat.NotebookNode:
  """Runs the notebook at `path` top to bottom in a fresh kernel, in its own folder; returns it
  with its outputs. A cell that raises stops the run with nbclient's CellExecutionError."""
  nb = with_parameters(nbformat.read(path, as_version=4), parameters or {}, extra_cells)
  client = NotebookClient(nb, timeout=timeout, kernel_name='python3', record_timing=False,
                          resources={'metadata': {'path': os.path.dirname(os.path.abspath(path))}})
  client.execute()
  return nb


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--tiny', action='store_true', help='Run with TINY = True.')
  parser.add_argument('--output_dir', default='', help='Write the executed notebooks here '
                      '(default: over the notebooks themselves; required with --tiny).')
  parser.add_argument('notebooks', nargs='*', default=list(NOTEBOOKS),
                      help=f'Notebook names in notebooks/ (default: {" ".join(NOTEBOOKS)}).')
  args = parser.parse_args(argv)
  if args.tiny and not args.output_dir:
    parser.error('--tiny needs --output_dir: the repository keeps the full-mode outputs.')
  for name in args.notebooks:
    path = os.path.join(NOTEBOOK_DIR, os.path.basename(name))
    start = time.time()
    nb = execute(path, {'TINY': True} if args.tiny else None)
    out = os.path.join(args.output_dir, os.path.basename(path)) if args.output_dir else path
    if args.output_dir:
      os.makedirs(args.output_dir, exist_ok=True)
    nbformat.write(nb, out)
    print(f'{name}: {time.time() - start:.0f} s -> {out}', flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
