"""A study's summary (rows and text) and the figures it asks for (as data).

With (b1, b2) shown, the summary is the lab's one (b1, b2) report
(:func:`ftrl_adam.lab.report.best_b2_per_b1`): for each b1 the best b2 next
to b1 and b1**2 (docs/theory.md section 6), with the tuned values.  With
other shown axes (x, y) it is, for each x, the best y.  Either way it ends
with the overall best configuration; a halving study adds its rungs and the
compute it spent next to the full grid's.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ftrl_adam.lab import engine as grid
from ftrl_adam.lab.protocol import Heatmap
from ftrl_adam.lab.report import summary as _report
from ftrl_adam.lab.studies import halving


def best_b2_per_b1(tuned: Mapping[str, np.ndarray], metric: str = "val_loss",
                   tuned_axes: Sequence[str] = ("lr",)) -> list[dict[str, Any]]:
  """For each b1, the b2 with the lowest tuned ``metric``, next to b1 and b1**2.

  The rows of :func:`ftrl_adam.lab.report.best_b2_per_b1` (the one summary of
  every experiment) on the tuned table, with the tuned values.

  Returns:
    One dict per b1 (ascending) with ``b1``, ``b1_squared``, ``best_b2``,
    ``value`` (the metric there), each tuned axis (``lr``: its tuned value
    there), ``value_at_b2_eq_b1`` (NaN if b2 = b1 is not on the grid:
    then ``b2_eq_b1_on_grid`` is False, and the printed table shows ``-``),
    ``beta_ratio`` = b1 / sqrt(best_b2) (Nguyen's beta), ``nearer`` - ``"b1"`` or
    ``"b1^2"``, whichever is closer to the best b2 in log(1 - b) (``"-"`` if
    no b2 is finite) - and ``b2_at_edge`` (the best b2 is the smallest or
    largest b2 of a grid of more than two: the optimum may lie outside it).
  """
  rows = _report.best_b2_per_b1(tuned, metric)
  chosen = {t: grid.pivot(tuned, f"{t}_{metric}")[2] for t in tuned_axes}
  _, ys, _ = grid.pivot(tuned, metric)
  for j, r in enumerate(rows):
    i = np.flatnonzero(ys == np.float32(r["best_b2"])) if math.isfinite(
        r["best_b2"]) else []
    for t, z in chosen.items():
      r[t] = float(z[i[0], j]) if len(i) else math.nan
    r.update(value=r["best"], value_at_b2_eq_b1=r["at_b2_eq_b1"],
             b2_eq_b1_on_grid=bool(np.any(ys == np.float32(r["b1"]))),
             b2_at_edge=r["at_edge"])
  return rows


def best_y_per_x(tuned: Mapping[str, np.ndarray], metric: str, x: str,
                 y: str, tuned_axes: Sequence[str] = ()) -> list[dict[str, Any]]:
  """For each ``x``, the ``y`` with the lowest tuned ``metric`` (any two axes).

  Returns:
    One dict per x value: ``x``, ``best_y``, ``value`` and each tuned axis'
    value there (NaN where nothing is finite).
  """
  xs, ys, z = grid.pivot(tuned, metric, x=x, y=y)
  chosen = {t: grid.pivot(tuned, f"{t}_{metric}", x=x, y=y)[2]
            for t in tuned_axes}
  rows = []
  for j, xv in enumerate(xs):
    col = np.where(np.isfinite(z[:, j]), z[:, j], np.inf)
    i = int(np.argmin(col))
    ok = math.isfinite(col[i])
    row = {"x": float(xv), "best_y": float(ys[i]) if ok else math.nan,
           "value": float(col[i]) if ok else math.nan}
    row.update({t: float(c[i, j]) if ok else math.nan
                for t, c in chosen.items()})
    rows.append(row)
  return rows


def format_summary(rows: Sequence[Mapping[str, Any]], metric: str,
                   title: str = "", tuned_axes: Sequence[str] = ("lr",)) -> str:
  """The (b1, b2) summary table (one line per b1), as :func:`run_study` prints it."""
  lines = [title] if title else []
  what = ", ".join(tuned_axes) or "nothing"
  lines.append(f"best b2 for each b1 ({metric}, {what} tuned per "
               f"(b1, b2), mean over seeds):")
  lines += _report.format_rows(rows, metric, [
      ("nearer", lambda r: r["nearer"]),
      ("b1/sqrt(b2)", lambda r: _report.fmt(r["beta_ratio"]))] + [
      (t, lambda r, t=t: _report.number(r[t])) for t in tuned_axes] + [
      (f"{metric} at b2=b1", lambda r: _report.fmt(r["value_at_b2_eq_b1"])
       if r.get("b2_eq_b1_on_grid", True) else "-")])
  finite = [r for r in rows if math.isfinite(r["value"])]
  if finite:
    n_b1 = sum(r["nearer"] == "b1" for r in finite)
    lines.append(
        f"best b2 nearer to b1 than to b1^2 (in log(1 - b)) for {n_b1} of "
        f"{len(finite)} b1 values.")
  return "\n".join(lines)


def format_xy(rows: Sequence[Mapping[str, Any]], metric: str, x: str, y: str,
              tuned_axes: Sequence[str]) -> str:
  """The summary of other shown axes: for each x, the best y."""
  what = ", ".join(tuned_axes) or "nothing"
  headers = [x, f"best {y}", metric, *tuned_axes]
  cells = [headers] + [
      [_report.number(r["x"]), _report.number(r["best_y"]),
       _report.fmt(r["value"])]
      + [_report.number(r[t]) for t in tuned_axes] for r in rows]
  widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
  lines = [f"best {y} for each {x} ({metric}, {what} tuned, mean over "
           f"seeds):"]
  lines += ["  " + "  ".join(s.rjust(w) for s, w in zip(c, widths, strict=True))
            for c in cells]
  return "\n".join(lines)


def overall_best(tuned: Mapping[str, np.ndarray], metric: str,
                 shown: Sequence[str], tuned_axes: Sequence[str]
                 ) -> dict[str, float]:
  """The configuration with the lowest tuned metric (empty if none finite)."""
  values = np.asarray(tuned[metric], np.float64) if len(tuned.get(
      metric, ())) else np.zeros(0)
  ok = np.isfinite(values)
  if not ok.any():
    return {}
  i = int(np.argmin(np.where(ok, values, np.inf)))
  best = {k: float(tuned[k][i]) for k in shown}
  best.update({t: float(tuned[f"{t}_{metric}"][i]) for t in tuned_axes})
  best[metric] = float(values[i])
  return best


def best_line(best: Mapping[str, float], metric: str) -> str:
  """``overall best (no seed diverged): b1=0.9, ..., val_loss=0.05``."""
  if not best:
    return f"overall best: none ({metric} not finite anywhere)."
  parts = [f"{k}={_report.number(v)}" for k, v in best.items() if k != metric]
  return (f"overall best (no seed diverged): {', '.join(parts)}, "
          f"{metric}={best[metric]:.5g}")


def halving_lines(ends: Sequence[int], counts: Sequence[int], n_seeds: int,
                  spent: int, full: int, rate: float) -> list[str]:
  """What a study with rungs did: rungs, configurations, compute."""
  per = ", ".join(f"{c:,} to step {e}" for c, e in zip(counts, ends,
                                                       strict=False))
  return [f"rungs (halving rate {rate:g}): configurations trained {per} "
          f"({n_seeds} seed(s) each);",
          f"compute: {spent:,} training steps of the full grid's {full:,} "
          f"({100.0 * spent / full:.1f}%)."]


def capped(values: Any) -> Any:
  """A colour range from the smallest value to the 90th percentile (or None)."""
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v) & (v > 0)]
  if v.size >= 2 and np.quantile(v, 0.9) > v.min():
    return float(v.min()), float(np.quantile(v, 0.9))
  return None


def _wide(values: Any) -> bool:
  """Whether positive values span more than 3x (a log colour scale helps)."""
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v) & (v > 0)]
  return v.size > 1 and float(v.max()) > 3.0 * float(v.min())


def heatmaps(tuned: Mapping[str, np.ndarray], metrics: Sequence[str],
             task_name: str, shown: Sequence[str], tuned_axes: Sequence[str],
             annotate: bool, extra: Sequence[Heatmap] = (),
             stopped_early: bool = False) -> list[Heatmap]:
  """heatmap_<metric> per metric and heatmap_<t> per tuned axis, as data.

  The loss colour scale is logarithmic and capped at the 90th percentile of
  the finite values, so a few diverging cells do not wash out the rest; the
  numbers written in the cells are the true ones.  Axes named b1 or b2 are
  drawn in log(1 - b); with (b1, b2) shown the lines b2 = b1 and b2 = b1**2
  are drawn.  ``stopped_early`` (a halving study) says in every
  title that grey cells are those halving stopped before the last step.
  """
  x, y = shown
  betas = tuple(a for a, name in (("x", x), ("y", y)) if name in ("b1", "b2"))
  log1m = True if len(betas) == 2 else (betas[0] if betas else False)
  overlays = ("b2=b1", "b2=b1^2") if (x, y) == ("b1", "b2") else ()
  what = ", ".join(tuned_axes)
  tuned_words = f"{what} tuned per cell, " if what else ""
  common = dict(source="tuned", x=x, y=y, log_one_minus=log1m,
                overlays=overlays, annotate=annotate)
  grey = "; grey: stopped by halving before the end" if stopped_early else ""
  out = [Heatmap(name=f"heatmap_{m}", value=m, log_value=_wide(tuned[m]),
                 color_range=capped(tuned[m]),
                 label=(f"{m} at the tuned {what} (mean over seeds)" if what
                        else f"{m} (mean over seeds)"),
                 title=f"{task_name}: {m}, {tuned_words}mean over seeds{grey}",
                 **common) for m in metrics]
  out += [Heatmap(name=f"heatmap_{t}", value=f"{t}_{metrics[0]}",
                  log_value=bool(np.all(np.asarray(
                      tuned[f"{t}_{metrics[0]}"]) > 0)), label=f"tuned {t}",
                  title=f"{task_name}: {t} tuned for {metrics[0]}{grey}",
                  **common)
          for t in tuned_axes]
  return out + list(extra)


def _counts(study: Any, table: Mapping[str, np.ndarray]) -> list[int]:
  """Configurations that trained in each rung (from the table's ``rung``)."""
  rung = np.asarray(table["rung"])
  n_seeds = len(study.seeds)
  return [int(np.sum(rung >= i)) // n_seeds
          for i in range(len(study.rung_ends)) if np.any(rung >= i)]


def study_text(study: Any, result: Any) -> str:
  """The whole summary of a :class:`~ftrl_adam.studies.Study`'s result."""
  import jax  # pylint: disable=import-outside-toplevel

  from ftrl_adam.lab.protocol import seconds_line  # pylint: disable=import-outside-toplevel
  metric, tuned, table = study.metric, result.extra["tuned"], result.table
  title = (f"study: {study.task.name} "
           f"({study.task.info.get('description', '')}), {study.n_runs} runs "
           f"of {study.steps} steps in {seconds_line(result)} on "
           f"{jax.device_count()} x {jax.devices()[0].device_kind}")
  blocks = []
  ema = metric if metric.endswith("_ema") or metric.endswith("_posthoc") \
      else f"{metric}_ema"
  for i, m in enumerate(dict.fromkeys([metric, ema])):
    head = title if i == 0 else ""
    if tuple(study.shown) == ("b1", "b2"):
      rows = result.summary if i == 0 else best_b2_per_b1(tuned, m, study.tuned)
      text = format_summary(rows, m, head, study.tuned)
    elif len(study.shown) == 2:
      text = "\n".join(filter(None, [head, format_xy(
          best_y_per_x(tuned, m, *study.shown, tuned_axes=study.tuned), m,
          *study.shown, study.tuned)]))
    else:
      text = head
    best = overall_best(tuned, m, study.shown, study.tuned)
    blocks.append("\n".join(filter(None, [text, best_line(best, m)])))
  text = "\n\n".join(blocks)
  if "rung" in table:
    counts = _counts(study, table)
    full = study.n_runs * study.steps
    spent = halving.compute([c * len(study.seeds) for c in counts],
                            study.rung_ends[:len(counts)])
    text += "\n" + "\n".join(halving_lines(
        study.rung_ends, counts, len(study.seeds), spent, full,
        study.halving_rate))
    if np.isnan(np.asarray(tuned[metric], np.float64)).any():
      text += ("\nnan above: halving stopped every configuration of that "
               "row before the last step (results.csv: stopped_at).")
  n_div = int(np.sum(np.asarray(table["diverged"])))
  if n_div:
    text += (f"\n{n_div} of {study.n_runs} runs diverged (a non-finite "
             f"gradient or loss); no tuned value where a seed diverged is "
             f"ever chosen.")
  return text

