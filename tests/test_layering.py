"""The two layers, read off the folders (DESIGN.md "Layout").

* ``ftrl_adam/*.py`` is the optimizer: it imports nothing under
  ``ftrl_adam/lab/`` and none of the lab's dependencies (flax, orbax,
  matplotlib), and ``import ftrl_adam`` loads no lab module;
* ``ftrl_adam/lab/`` is the lab, its places in one order of flow:
  engine -> report (tables to summaries and figures, knowing no experiment)
  -> experiment runner -> experiments (regret, studies) -> cli.  A place
  imports only places before it (and the optimizer);
* ``lab/report/figures/`` is the only Matplotlib user, and only the runner
  (after the results are written) and the CLI import it: experiments
  describe their figures as data.
"""

import ast
import pathlib
import subprocess
import sys

PKG = pathlib.Path(__file__).resolve().parents[1] / "ftrl_adam"
LAB = PKG / "lab"
LAB_DEPS = ("flax", "orbax", "matplotlib")
# The lab's places in the order data flows; each may import those before it
# (a module or folder of lab/ that is not listed here fails the test, so that
# the order is kept up to date).
FLOW = ("identity", "engine", "options", "report", "protocol", "experiment",
        "testing", "regret", "studies", "cli")
# Short names the optimizer layer's docs and users import (ftrl_adam.regret is
# ftrl_adam.lab.regret): an import of one of them is an import of the lab.
ALIASES = {"grid": "engine", "regret": "regret", "studies": "studies",
           "testing": "testing", "plots": "report", "cli": "cli"}


def _imports(path):
  tree = ast.parse(path.read_text())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module
      yield from (f"{node.module}.{a.name}" for a in node.names)


def _place(module):
  """The lab place an imported module name belongs to, or None."""
  parts = module.split(".")
  if parts[0] != "ftrl_adam" or len(parts) < 2:
    return None
  if parts[1] == "lab":
    return parts[2] if len(parts) > 2 else "lab"
  return ALIASES.get(parts[1])


def _place_of_file(path):
  rel = path.relative_to(LAB)
  return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_import_ftrl_adam_loads_no_lab_module_and_no_lab_dependency():
  code = ("import sys, ftrl_adam; print(' '.join(sorted(m for m in sys.modules"
          f" if m.split('.')[0] in {LAB_DEPS!r} or m.startswith("
          "'ftrl_adam.lab'))))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True).stdout.strip()
  assert out == ""


def test_the_optimizer_layer_imports_nothing_of_the_lab():
  for p in PKG.glob("*.py"):
    for m in _imports(p):
      assert _place(m) is None and m.split(".")[0] not in LAB_DEPS, (p.name, m)


def test_every_lab_place_is_in_the_flow():
  places = {_place_of_file(p) for p in LAB.rglob("*.py")} - {"__init__"}
  assert places <= set(FLOW), places - set(FLOW)


def test_lab_imports_flow_one_way():
  bad = []
  for p in LAB.rglob("*.py"):
    here = _place_of_file(p)
    if here == "__init__":
      continue
    for m in _imports(p):
      there = _place(m)
      if there is None or there in ("lab", here):
        continue
      if FLOW.index(there) > FLOW.index(here):
        bad.append((str(p.relative_to(PKG)), m))
  assert bad == []


def test_only_the_report_draws_and_only_the_runner_and_cli_import_it():
  users = {str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
           if any(m.split(".")[0] == "matplotlib" for m in _imports(p))}
  assert users == {"lab/report/figures/__init__.py",
                   "lab/report/figures/colours.py"}
  for p in LAB.rglob("*.py"):
    if _place_of_file(p) in ("report", "experiment", "cli"):
      continue
    assert not any(m.startswith("ftrl_adam.lab.report.figures")
                   or m == "ftrl_adam.plots" for m in _imports(p)), p


def test_the_check_sees_a_climb(tmp_path):
  bad = tmp_path / "x.py"
  bad.write_text("from ftrl_adam.lab import experiment\n")
  assert [_place(m) for m in _imports(bad)] == ["lab", "experiment"]
  assert FLOW.index("experiment") > FLOW.index("engine")
