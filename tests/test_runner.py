"""The experiment runner against a tiny experiment of its own (the Protocol).

* parts are asked for again with the parts done, until there are none (a
  later part is built from an earlier one's results, as a halving study's
  rungs are);
* results.csv, summary.txt and run.json are complete before any figure is
  drawn, and figures are drawn on the main thread;
* a finished folder computes nothing and redraws nothing unless asked (a
  missing figure is drawn again).
"""

import dataclasses
import json
import os
import threading

import numpy as np

from ftrl_adam import grid
from ftrl_adam.lab import experiment
from ftrl_adam.lab.protocol import Heatmap
from ftrl_adam.lab.protocol import Part
from ftrl_adam.lab.protocol import Result
from ftrl_adam.lab.protocol import Size
from ftrl_adam.lab.protocol import concat
from ftrl_adam.lab.protocol import seconds_line
from ftrl_adam.lab.report import figures


def _square(cell):
  return {"y": cell["b1"] * cell["b2"] + cell["x"]}


@dataclasses.dataclass(frozen=True)
class TwoRounds:
  """Round 1 computes y on a (b1, b2) grid; round 2 adds 1 to round 1's y."""

  WHAT = "two-rounds"
  FORMAT = "tests.two_rounds"
  EXTRA_TABLES = ()
  FIGURE_PREFIXES = ("map_",)

  def config(self):
    return {"grid": [0.5, 0.9]}

  def size(self):
    return Size(cells=8, work=8.0, unit="cells", host_bytes=1e3,
                chunk_bytes=1e3, rate=0.0, too_big_hint="fewer values")

  def parts(self, done):
    if len(done) == 2:
      return []
    if not done:
      table = grid.product(b1=[0.5, 0.9], b2=[0.5, 0.9])
      table["x"] = np.zeros(4, np.float32)
      name = "first"
    else:                          # built from the first part's results
      prev = done[0][1]
      table = {k: prev[k] for k in ("b1", "b2")}
      table["x"] = np.asarray(prev["y"], np.float32) + 1
      name = "second"
    return [Part(name=name, n_cells=4, table=lambda t=table: t,
                 cell_fn=_square, config={"name": name}, chunk_size=2)]

  def assemble(self, done):
    tables = []
    for _, res in done:
      tables.append({**res, "round": np.full(4, len(tables), np.int32)})
    return concat(tables, ["round", "b1", "b2", "x", "y"])

  def csv_columns(self, table):
    return list(table)

  def extra_tables(self, table):
    return {}

  def summarize(self, table, extra):
    return [{"max": float(np.max(table["y"]))}]

  def format_summary(self, result):
    return f"two rounds in {seconds_line(result)}; max y {result.summary[0]['max']}"

  def figures(self, result):
    return [Heatmap(name=f"map_{r}", value="y", label="y", title=f"round {r}",
                    where={"round": r}) for r in (0, 1)]


def test_parts_rounds_then_results_then_figures_on_the_main_thread(
    tmp_path, monkeypatch):
  out = tmp_path / "run"
  seen = []
  real = figures.heatmap

  def spy(table, value, **kw):
    meta = json.loads((out / "run.json").read_text())
    seen.append((threading.current_thread() is threading.main_thread(),
                 meta["status"], (out / "results.csv").exists(),
                 (out / "summary.txt").exists(), os.path.basename(kw["path"])))
    return real(table, value, **kw)

  monkeypatch.setattr(figures, "heatmap", spy)
  res = experiment.run_experiment(TwoRounds(), out_dir=out, progress=False)
  # Round 2 read round 1's results: x = y(round 1) + 1.
  first, second = res.table["round"] == 0, res.table["round"] == 1
  np.testing.assert_array_equal(res.table["x"][second], res.table["y"][first] + 1)
  assert seen == [(True, "complete", True, True, "map_0.png"),
                  (True, "complete", True, True, "map_1.png")]
  meta = json.loads((out / "run.json").read_text())
  assert meta["figures"] == ["map_0.png", "map_1.png"]
  assert res.computed == 8

  # Again: nothing computed, nothing drawn, no file rewritten; a deleted
  # figure is drawn again.
  written = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
  seen.clear()
  again = experiment.run_experiment(TwoRounds(), out_dir=out, progress=False)
  assert again.computed == 0 and seen == []
  assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} \
      == written
  assert "no new cells" in again.text
  os.remove(out / "map_1.png")
  experiment.run_experiment(TwoRounds(), out_dir=out, progress=False)
  assert [s[-1] for s in seen] == ["map_1.png"]
  seen.clear()
  experiment.run_experiment(TwoRounds(), out_dir=out, progress=False,
                            redraw=True)
  assert [s[-1] for s in seen] == ["map_0.png", "map_1.png"]
  np.testing.assert_array_equal(again.table["y"], res.table["y"])


def test_the_runner_and_the_experiments_call_each_other_one_way():
  """Experiments never import the runner's internals or the figures."""
  import ast
  import pathlib
  lab = pathlib.Path(experiment.__file__).parent
  for place in ("regret", "studies"):
    for path in (lab / place).rglob("*.py"):
      for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
          names = {a.name for a in node.names}
          if node.module == "ftrl_adam.lab.experiment":
            assert names <= {"run_experiment"}, (path, names)
          assert not node.module.startswith("ftrl_adam.lab.report.figures"), path


def test_the_seconds_line_gives_a_fast_run_its_compute_time():
  """A quadratic study's chunks take milliseconds: not 'compute 0.0 s'."""
  r = Result(spec=None, table={}, extra={}, summary=[], files={}, computed=4,
             seconds={"wall": 5.31, "compute": 0.0123})
  assert seconds_line(r) == (
      "5.3 s (compute 0.012 s summed over every run that contributed chunks)")
  assert "(compute 2.9 s when" in seconds_line(dataclasses.replace(
      r, computed=0, seconds={"wall": 1.0, "compute": 2.94}))
  assert "compute 0.0 s" in seconds_line(dataclasses.replace(
      r, seconds={"wall": 1.0, "compute": 0.0}))
