"""The documentation site builds with ``mkdocs build --strict`` (issue 7).

Strict mode turns every warning into an error: a dead link or anchor, a page
missing from the nav, an API entry (``::: ftrl_adam.name``) that does not
resolve, a docstring whose parameters do not match the signature.  The page
code examples are run by test_docs_examples.py; the notebooks by
test_notebooks.py.
"""

import ast
import json
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_mkdocs_build_strict(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "mkdocs", "build", "--strict", "--clean",
       "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
      env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
  assert proc.returncode == 0, (
      f"mkdocs build --strict failed (exit {proc.returncode})\n"
      f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
  assert (tmp_path / "site" / "api" / "index.html").exists()


def _public_names():
  tree = ast.parse((ROOT / "ftrl_adam" / "__init__.py").read_text())
  for node in tree.body:
    if isinstance(node, ast.Assign) and any(
        getattr(t, "id", None) == "__all__" for t in node.targets):
      return ast.literal_eval(node.value)
  raise AssertionError("ftrl_adam/__init__.py defines no __all__")


def test_api_page_documents_every_public_name():
  """docs/api.md has a ``::: ftrl_adam.<name>`` entry for each name of __all__
  (for the lab's modules, the module under ftrl_adam/lab/ that the name is)."""
  import ftrl_adam  # pylint: disable=import-outside-toplevel
  page = (ROOT / "docs" / "api.md").read_text()
  documented = set(re.findall(r"^::: ftrl_adam\.(\w+)\s*$", page, re.M))
  documented |= {short for short, real in ftrl_adam._LAB_ALIASES.items()
                 if re.search(rf"^::: ftrl_adam\.lab\.{re.escape(real)}\s*$",
                              page, re.M)}
  missing = sorted(set(_public_names()) - documented)
  assert not missing, f"add these to docs/api.md: {missing}"


def test_benchmark_page_quotes_the_stored_results():
  """Every results JSON the benchmarks page names is quoted there, number for number."""
  page = (ROOT / "docs" / "benchmarks.md").read_text()
  named = sorted(set(re.findall(r"benchmarks/results/([\w.-]+\.json)", page)))
  assert named, "docs/benchmarks.md names no benchmarks/results/*.json"
  for name in named:
    path = ROOT / "benchmarks" / "results" / name
    assert path.exists(), f"docs/benchmarks.md quotes {name}, which does not exist"
    data = json.loads(path.read_text())
    if "results" in data:    # step.py, grid.py: one row per measurement
      quoted = [(row, f"{row['median_ms']:.3f}") for row in data["results"]]
    elif "monitor_kernels_us" in data:   # benchmarks/monitor_kernels.py
      quoted = [(k, f"| {v:.1f} |") for k, v in [
          *data["monitor_kernels_us"].items(),
          ("all", data["monitor_kernels_sum_us"]),
          *data["gather_from_n_arrays_us"].items()]]
    else:                    # study.py: per task, one row per K
      quoted = [(row, f"{row['vmapped_s']:.3f}")
                for task in data["tasks"] for row in task["results"]]
    assert quoted, f"{name} holds no results"
    for row, cell in quoted:
      assert cell in page, f"{name}: {cell} ({row}) is not on the page"
