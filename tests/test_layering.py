"""The two layers (DESIGN.md): the optimizer imports nothing of the lab."""

import ast
import pathlib
import subprocess
import sys

PKG = pathlib.Path(__file__).resolve().parents[1] / "ftrl_adam"
LAB = ("grid", "regret", "studies", "plots", "cli", "bench", "lab", "testing")


def _imports(path):
  tree = ast.parse(path.read_text())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module
      yield from (f"{node.module}.{a.name}" for a in node.names)


def test_import_ftrl_adam_loads_no_lab_module_and_no_matplotlib():
  code = ("import sys, ftrl_adam; print(' '.join(sorted(m for m in sys.modules"
          " if m == 'matplotlib' or (m.startswith('ftrl_adam.') and "
          f"m.split('.')[1] in {LAB!r}))))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True).stdout.strip()
  assert out == ""


def test_only_report_and_cli_modules_import_matplotlib():
  users = {str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
           if any(m.startswith("matplotlib") for m in _imports(p))}
  assert users == {"plots.py"}


def test_nothing_in_the_lab_imports_the_cli():
  for p in PKG.rglob("*.py"):
    rel = p.relative_to(PKG)
    if rel.parts[0] == "cli":
      continue
    assert not any(m == "ftrl_adam.cli" or m.startswith("ftrl_adam.cli.")
                   for m in _imports(p)), rel


def test_the_optimizer_layer_imports_no_lab_module():
  for p in PKG.glob("*.py"):
    if p.stem in LAB:
      continue
    for m in _imports(p):
      parts = m.split(".")
      assert not (parts[0] == "ftrl_adam" and len(parts) > 1
                  and parts[1] in LAB), (p.name, m)
