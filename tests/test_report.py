"""The report: best-b2 summaries (ties, edges, names) and heatmaps a reader can
trust (one labelled cell per grid value, a colour scale that does not
exaggerate, a constant field said in words, the legend next to the data)."""

from __future__ import annotations

import numpy as np
import pytest

from ftrl_adam import grid
from ftrl_adam import plots
from ftrl_adam.lab import report


def _table(b1, b2, fn):
  t = grid.product(b1=b1, b2=b2)
  t["v"] = np.asarray(fn(t["b1"].astype(np.float64), t["b2"].astype(np.float64)),
                      np.float32)
  return t


def _ticks(axis):
  return ([float(p) for p in axis.get_majorticklocs()],
          [t.get_text() for t in axis.get_ticklabels()])


# ----------------------------------------------------------------------------
# Summary rows
# ----------------------------------------------------------------------------

def test_a_tie_across_every_b2_is_not_an_edge_optimum():
  t = _table([0.5, 0.9], [0.25, 0.81, 0.99],
             lambda b1, b2: np.where(b1 == 0.5, 2.0, b2))
  tie, edge = report.best_b2_per_b1(t, "v")
  assert tie["tie"] and not tie["at_edge"]
  assert edge["at_edge"] and not edge["tie"]
  lines = report.format_rows([tie, edge], "v")
  assert lines[1].split()[2] == "0.25=" and lines[2].split()[2] == "0.25*"
  assert lines[-2:] == [
      "  * best b2 on the edge of the b2 grid: the optimum may lie beyond it.",
      "  = every b2 gives the same value (a tie): no best b2."]


def test_a_tie_is_float32_rounding_not_a_small_difference():
  t = _table([0.9], [0.25, 0.81, 0.99],
             lambda b1, b2: 1.0 + np.where(b2 == np.float32(0.25), 0.0, 1e-5))
  (row,) = report.best_b2_per_b1(t, "v")
  assert not row["tie"] and row["at_edge"]


def test_the_summary_names_b1_over_sqrt_b2_beta_ratio():
  t = _table([0.9], [0.5, 0.81, 0.99], lambda b1, b2: np.abs(b2 - 0.81))
  (row,) = report.best_b2_per_b1(t, "v")
  assert "ratio" not in row   # ratio_*.png is regret / D3, another quantity
  assert row["beta_ratio"] == pytest.approx(0.9 / np.sqrt(0.81), rel=1e-6)


# ----------------------------------------------------------------------------
# Heatmaps
# ----------------------------------------------------------------------------

def test_every_grid_value_has_a_label_centred_on_its_cell():
  t = _table([0.5, 0.9, 0.99], [0.25, 0.81, 0.99], lambda b1, b2: b1 + b2)
  fig = plots.heatmap(t, "v", log_one_minus=True, overlays=["b2=b1^2"])
  ax = fig.axes[0]
  assert _ticks(ax.yaxis) == ([0.0, 1.0, 2.0], ["0.25", "0.81", "0.99"])
  assert _ticks(ax.xaxis) == ([0.0, 1.0, 2.0], ["0.5", "0.9", "0.99"])
  mesh = ax.collections[0]
  cells = mesh.get_coordinates()    # (rows + 1, cols + 1, 2) corner points
  np.testing.assert_array_equal(cells[0, :, 0], [-0.5, 0.5, 1.5, 2.5])
  np.testing.assert_array_equal(cells[:, 0, 1], [-0.5, 0.5, 1.5, 2.5])
  assert ax.get_xlabel() == "β₁" and ax.get_ylabel() == "β₂"
  # b2 = b1^2 passes through the centre of the cell (0.9, 0.81).
  line = ax.get_lines()[0]
  x, y = line.get_xdata(), line.get_ydata()
  assert np.interp(1.0, x, y) == pytest.approx(1.0, abs=0.01)
  # b1^2 grows with b1 all along: the left half cell is not extrapolated to
  # b1 < 0 (where b1^2 would turn back up).
  drawn = np.isfinite(x) & np.isfinite(y)
  assert drawn.sum() > 100 and np.all(np.diff(y[drawn]) > 0)
  assert line.get_label() == "β₂ = β₁²"


def test_labels_are_thinned_only_where_they_would_overlap():
  b1 = np.round(1 - np.geomspace(0.5, 0.001, 60), 6)
  t = _table(b1, [0.9, 0.99], lambda b1, b2: b1 * b2)
  fig = plots.heatmap(t, "v", log_one_minus=True, figsize=(3.4, 2.8))
  ax = fig.axes[0]
  locs, labels = _ticks(ax.xaxis)
  assert 3 <= len(locs) < 60 and locs[-1] == 59.0
  assert all(float(lab) == pytest.approx(b1[int(p)], abs=1e-6)
             for p, lab in zip(locs, labels, strict=True))
  renderer = fig.canvas.get_renderer()
  boxes = [lab.get_window_extent(renderer) for lab in ax.get_xticklabels()]
  assert all(a.x1 <= b.x0 for a, b in zip(boxes[:-1], boxes[1:], strict=True))
  assert _ticks(ax.yaxis)[1] == ["0.9", "0.99"]


def test_a_computed_grid_is_labelled_short_and_a_typed_one_as_typed():
  computed = grid.logspace_one_minus(0.5, 0.99, 6)
  t = _table(computed, [0.99375, 0.996875], lambda b1, b2: b1 + b2)
  ax = plots.heatmap(t, "v", log_one_minus=True).axes[0]
  assert _ticks(ax.yaxis)[1] == ["0.99375", "0.996875"]
  xl = _ticks(ax.xaxis)[1]
  assert xl[0] == "0.5" and xl[-1] == "0.99" and max(len(s) for s in xl) <= 6


def test_the_colour_scale_starts_at_the_minimum_and_does_not_stretch_a_flat_field():
  t = _table([0.5, 0.9], [0.9, 0.99], lambda b1, b2: 0.76 + 0.05 * b1 * b2)
  fig = plots.heatmap(t, "v")
  norm = fig.axes[0].collections[0].norm
  lo = float(np.min(t["v"]))
  assert norm.vmin == pytest.approx(lo) and norm.vmax == pytest.approx(2 * lo)
  bar = fig.axes[1]
  assert [round(float(ln.get_ydata()[0]), 6) for ln in bar.get_lines()] == [
      round(float(np.max(t["v"])), 6)]     # the largest value, marked
  norm = plots.heatmap(t, "v", min_color_ratio=1.0).axes[0].collections[0].norm
  assert norm.vmax == pytest.approx(float(np.max(t["v"])))
  wide = _table([0.5, 0.9], [0.9, 0.99], lambda b1, b2: b1 ** 4 * b2)
  norm = plots.heatmap(wide, "v").axes[0].collections[0].norm
  assert (norm.vmin, norm.vmax) == pytest.approx(
      (float(np.min(wide["v"])), float(np.max(wide["v"]))))
  assert wide_bar(plots.heatmap(wide, "v")).extend == "neither"
  with pytest.raises(ValueError, match="min_color_ratio"):
    plots.heatmap(t, "v", min_color_ratio=0.5)


def test_the_colour_bar_labels_its_ends_at_round_float32_values():
  """float32 0.001 and 0.01 are 0.0010000000475 and 0.0099999998: a scale
  ending exactly there left their ticks, the labels of the bar's ends, out."""
  def labels(values, **kw):
    t = grid.product(b1=[0.5, 0.9], b2=[0.9, 0.99, 0.999])
    t["lr"] = np.float32(values)
    fig = plots.heatmap(t, "lr", **kw)
    fig.canvas.draw()
    bar = fig.axes[1].yaxis
    lo, hi = sorted(bar.get_view_interval())
    return {lab.get_text() for tick, lab in
            zip(bar.get_majorticklocs().tolist() + bar.get_minorticklocs().tolist(),
                bar.get_majorticklabels() + bar.get_minorticklabels(),
                strict=True)
            if lo <= tick <= hi and lab.get_text()}
  log = labels([1e-3, 1e-2, 1e-2, 3e-3, 1e-3, 1e-2], log_value=True)
  assert {"0.001", "0.01"} <= log and "0.003" in log, log
  assert {"0.10", "0.20"} <= labels([0.1, 0.2, 0.15, 0.1, 0.2, 0.1],
                                  min_color_ratio=1.0)


def test_a_narrow_field_reads_as_many_digits_as_tell_its_numbers_apart():
  """val_loss 2.2463 .. 2.2469 read 2.25 on every tick and in both cells."""
  t = grid.product(b1=[0.9], b2=[0.99, 0.999])
  t["v"] = np.float32([2.2463049, 2.2469609])
  fig = plots.heatmap(t, "v", annotate=True, min_color_ratio=1.0)
  fig.canvas.draw()
  bar = fig.axes[1].yaxis
  lo, hi = bar.get_view_interval()
  ticks = [lab.get_text() for x, lab in zip(bar.get_majorticklocs(),
                                            bar.get_majorticklabels(), strict=True)
           if lo <= x <= hi]
  assert len(ticks) >= 3 and len(set(ticks)) == len(ticks), ticks
  assert all(len(x) == len(ticks[0]) for x in ticks), ticks   # 2.2464, not 2.246
  assert sorted(x.get_text() for x in fig.axes[0].texts) == ["2.246", "2.247"]
  t["v"] = np.float32([0.0466, 0.0478])                         # 0.0470, not 0.047
  fig = plots.heatmap(t, "v", min_color_ratio=1.0)
  fig.canvas.draw()
  assert "0.0470" in [x.get_text() for x in fig.axes[1].yaxis.get_majorticklabels()]
  three = grid.product(b1=[0.5], b2=[0.9, 0.99, 0.999])
  three["v"] = np.float32([0.04666, 0.04674, 0.04799])  # not only the ends
  fig = plots.heatmap(three, "v", annotate=True, min_color_ratio=1.0)
  assert sorted(x.get_text() for x in fig.axes[0].texts) == [
      "0.04666", "0.04674", "0.04799"]
  # the same numbers on a scale twice as wide: the two first look alike too
  fig = plots.heatmap(three, "v", annotate=True, color_range=(0.0466, 0.0600))
  assert sorted(x.get_text() for x in fig.axes[0].texts) == [
      "0.0467", "0.0467", "0.048"]
  t["v"] = np.float32([1234.5, 1234.9])            # 4 digits of a large number
  fig = plots.heatmap(t, "v", annotate=True, min_color_ratio=1.0)
  assert sorted(x.get_text() for x in fig.axes[0].texts) == ["1234", "1235"]
  t["v"] = np.float32([0.5, 0.25])                 # a wide field: 3 digits, as typed
  fig = plots.heatmap(t, "v", annotate=True)
  assert sorted(x.get_text() for x in fig.axes[0].texts) == ["0.25", "0.5"]


def wide_bar(fig):
  return fig.axes[0].collections[0].colorbar


def test_values_beyond_a_capped_scale_get_an_arrow_on_the_colour_bar():
  t = _table([0.5, 0.9], [0.9, 0.99], lambda b1, b2: b1 ** 4 * b2)
  top = float(np.quantile(t["v"], 0.5))
  fig = plots.heatmap(t, "v", color_range=(float(np.min(t["v"])), top))
  assert wide_bar(fig).extend == "max"


def test_a_constant_field_says_so_instead_of_a_colour_bar():
  t = _table([0.5, 0.9], [0.9, 0.99], lambda b1, b2: 0 * b1 + 0.1)
  fig = plots.heatmap(t, "v", label="tuned learning rate", log_value=True)
  assert len(fig.axes) == 1
  texts = [x.get_text() for x in fig.axes[0].texts]
  assert texts == ["tuned learning rate\nconstant: 0.1"]


def test_threads_may_draw_at_once(tmp_path):
  """Matplotlib's mathtext parser (here a user's label) breaks when two
  threads parse at once: the figures are drawn one at a time."""
  import concurrent.futures
  t = _table([0.5, 0.9, 0.99], [0.25, 0.81, 0.99], lambda b1, b2: b1 + b2)
  draw = lambda i: plots.heatmap(t, "v", log_one_minus=True, annotate=True,
                                 overlays=["b2=b1^2", ("$\\sqrt{\\beta_1}$", np.sqrt)],
                                 path=tmp_path / f"{i}.png")
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    list(pool.map(draw, range(8)))
  sizes = {(tmp_path / f"{i}.png").read_bytes() for i in range(8)}
  assert len(sizes) == 1                     # eight identical figures


def test_only_the_overlays_that_cross_the_grid_are_drawn_and_in_the_legend():
  t = _table([0.5, 0.9, 0.99], [0.9, 0.99], lambda b1, b2: b1 + b2)
  far = ("b2 = 1/2", lambda b1: 0 * b1 + 0.5)        # below every cell
  ax = plots.heatmap(t, "v", log_one_minus=True,
                     overlays=[far, "b2=b1", far]).axes[0]
  assert [ln.get_label() for ln in ax.get_lines()] == [
      x.get_text() for x in ax.get_legend().get_texts()]
  assert len(ax.get_lines()) == 1 and ax.get_lines()[0].get_color() == "C1"
  ax = plots.heatmap(t, "v", log_one_minus=True, overlays=[far]).axes[0]
  assert not ax.get_lines() and ax.get_legend() is None


def test_the_legend_sits_just_above_the_axes():
  t = _table([0.5, 0.9, 0.99], [0.25, 0.81, 0.99], lambda b1, b2: b1 + b2)
  fig = plots.heatmap(t, "v", overlays=["b2=b1^2", "b2=b1"], title="t")
  fig.canvas.draw()
  ax = fig.axes[0]
  frame, legend = ax.get_window_extent(), ax.get_legend().get_window_extent()
  title = ax.title.get_window_extent()
  assert frame.y1 <= legend.y0 <= frame.y1 + 10 and legend.y1 <= title.y0


def test_run_json_is_strict_json_with_null_for_non_finite(tmp_path):
  import json
  path = tmp_path / "run.json"
  written = grid.write_json(path, config={"T": 100}, extra={
      "summary": [{"best": float("nan"), "worst": np.float32(np.inf),
                   "beta_ratio": np.float32(0.5)}],
      "spread": np.array([1.0, -np.inf, 2.0])})

  def refuse(constant):
    raise ValueError(f"not JSON: {constant}")
  data = json.loads(path.read_text(), parse_constant=refuse)
  assert data["summary"] == [{"best": None, "worst": None, "beta_ratio": 0.5}]
  assert data["spread"] == [1.0, None, 2.0]
  assert written["summary"] == data["summary"]
