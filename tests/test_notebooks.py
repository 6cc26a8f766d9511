"""Every notebooks/*.ipynb runs top to bottom and ends in a figure (issue 7).

Each notebook is executed with nbclient in a fresh IPython kernel that runs the
*current* interpreter (``sys.executable``, so the same virtual environment and
the same installed ``ftrl_adam``), from a temporary working directory.  A
failing cell fails the test with the cell's source and the kernel's traceback.
The notebooks are stored with their outputs cleared, which this test checks
too (small files, clean diffs).

The kernels run with ``FTRL_ADAM_NOTEBOOK_SMOKE=1`` (as BoTorch's SMOKE_TEST):
a notebook that reads it shrinks its sizes (steps, grids, seeds) while every
cell and every assert still runs, and says so in its first cell.  A reader
running a notebook gets the full sizes, those of the numbers in its text.
"""

import json
import pathlib
import shutil
import sys

import nbclient
import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "ftrl-adam-tests"
SMOKE = "FTRL_ADAM_NOTEBOOK_SMOKE"
# A cell running this long is hung (nbclient stops it); how fast the
# notebooks run is not a unit test's business.
CELL_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory, monkeypatch_module):
  """A kernelspec that launches ipykernel with this very interpreter.

  A ``python3`` kernelspec found elsewhere on the Jupyter path could point at
  another Python; this one, first on ``JUPYTER_PATH`` and with its own name,
  cannot.
  """
  data = tmp_path_factory.mktemp("jupyter")
  spec = data / "kernels" / KERNEL
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
               "{connection_file}"],
      "display_name": "ftrl_adam tests",
      "language": "python",
  }))
  monkeypatch_module.setenv("JUPYTER_PATH", str(data))
  monkeypatch_module.setenv(SMOKE, "1")   # the kernels inherit the environment
  return KERNEL


@pytest.fixture(scope="module")
def monkeypatch_module():
  mp = pytest.MonkeyPatch()
  yield mp
  mp.undo()


def test_there_are_notebooks():
  assert NOTEBOOKS, "notebooks/ has no .ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
           and (c.outputs or c.execution_count is not None)]
  assert not dirty, f"{path.name}: clear the outputs of cells {dirty}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_that_reads_smoke_says_so_first(path):
  nb = nbformat.read(path, as_version=4)
  code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
  if SMOKE in code:
    assert SMOKE in nb.cells[0].source, (
        f"{path.name} reads {SMOKE}: say what it shrinks in the first cell")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_ends_in_a_figure(path, kernel_name, tmp_path):
  # Run where a reader would (notebooks/, with its data/), without writing
  # into the checkout: a scratch folder holding a copy of notebooks/data.
  data = path.parent / "data"
  if data.is_dir():
    shutil.copytree(data, tmp_path / "data")
  nb = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(
      nb, timeout=CELL_TIMEOUT_S, kernel_name=kernel_name,
      resources={"metadata": {"path": str(tmp_path)}})
  error = None
  try:
    client.execute()
  except nbclient.exceptions.CellExecutionError as e:
    error = str(e)   # the failing cell's source and the kernel's traceback
  if error is not None:
    pytest.fail(f"{path.name}: a cell failed\n{error}", pytrace=False)
  last = [c for c in nb.cells if c.cell_type == "code"][-1]
  images = [o for o in last.outputs if "image/png" in o.get("data", {})]
  assert images, f"{path.name}: the last code cell shows no figure"
