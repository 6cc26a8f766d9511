"""Reports of experiments: the best b2 for each b1, as rows and as text.

One summary for every experiment (the beta-grid per adversary, a training
study per tuned metric): for each b1 of a (b1, b2) table, the b2 with the
smallest value (reduced over seeds), next to b1**2 - the b2 of Nguyen's
beta = b1 / sqrt(b2) = 1 - and to b1 (Orvieto & Gower's b1 = b2), and
whether the best b2 lies on the edge of the grid (the optimum may lie
beyond it) or every b2 gives the same value (a tie: no best b2).  Figures
are drawn by :mod:`ftrl_adam.plots`; this module does not import Matplotlib.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ftrl_adam.lab import engine as grid


# Values of one b1 column within this relative distance of the best are tied
# (float32 rounding of the same number).
_TIE_RTOL = 1e-6


def _log1m(x: float) -> float:
  return math.log1p(-min(float(x), 1.0 - 1e-12))


def nearest(values: np.ndarray, target: float) -> int:
  """Index of the value nearest ``target`` in log(1 - b)."""
  v = np.clip(np.asarray(values, np.float64), 0.0, 1.0 - 1e-12)
  return int(np.argmin(np.abs(np.log1p(-v) - _log1m(target))))


def best_b2_per_b1(table: Mapping[str, np.ndarray], value: str, *,
                   where: Optional[Mapping[str, Any]] = None,
                   reduce: str | Callable[[np.ndarray], Any] = "mean",
                   matrix: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]
                   = None) -> list[dict[str, Any]]:
  """For each b1, the b2 with the smallest ``value``, next to b1**2 and b1.

  Args:
    table: a tidy table with columns ``b1``, ``b2`` and ``value``.
    value: the column to minimise (lower is better).
    where: ``{column: value}`` filter first (e.g. an adversary).
    reduce: how the rows of one (b1, b2) (the seeds) are combined.
    matrix: instead of ``table``, a ``(b1s, b2s, z)`` triple as
      :func:`ftrl_adam.grid.pivot` returns (z[i, j] for b2s[i], b1s[j]).

  Returns:
    One dict per b1 (ascending): ``b1``, ``b1_squared``, ``best_b2``,
    ``best`` (the value there), ``b2_near_b1_squared`` (the grid's b2
    nearest b1**2 in log(1 - b)) and ``at_b1_squared`` (its value),
    ``at_b2_eq_b1`` (the value at b2 = b1, NaN if not on the grid),
    ``beta_ratio`` = b1 / sqrt(best_b2) (Nguyen's beta), ``nearer``
    (``"b1"`` or ``"b1^2"``: which the best b2 is closer to, in log(1 - b);
    ``"-"`` if no value is finite), ``tie`` (every b2 with a finite value
    gives the best value, to float32 rounding: relative 1e-6; ``best_b2`` is
    then the smallest b2 and means nothing) and ``at_edge`` (the best b2 is
    the smallest or largest b2 of a grid of three or more, and not a tie).
    A (b1, b2) whose value is not finite (a diverged seed) is never the
    best.

  Example:
    >>> from ftrl_adam import grid
    >>> from ftrl_adam.lab import report
    >>> t = grid.product(b1=[0.9], b2=[0.5, 0.81, 0.99])
    >>> t["loss"] = abs(t["b2"] - 0.81)
    >>> row = report.best_b2_per_b1(t, "loss")[0]
    >>> round(row["best_b2"], 2), row["nearer"], row["at_edge"]
    (0.81, 'b1^2', False)
  """
  xs, ys, z = matrix if matrix is not None else grid.pivot(
      table, value, reduce=reduce, where=where)
  rows = []
  for j, b1 in enumerate(np.asarray(xs, np.float64)):
    col = np.asarray(z[:, j], np.float64)
    ok = np.isfinite(col)
    near = nearest(ys, b1 * b1)
    eq = np.flatnonzero(np.asarray(ys) == np.float32(b1))
    row = {"b1": float(xs[j]), "b1_squared": b1 * b1,
           "b2_near_b1_squared": float(ys[near]),
           "at_b1_squared": float(col[near]),
           "at_b2_eq_b1": float(col[eq[0]]) if len(eq) else math.nan}
    if ok.any():
      best = int(np.argmin(np.where(ok, col, np.inf)))
      b2 = float(ys[best])
      gap = lambda a: abs(_log1m(b2) - _log1m(a))  # noqa: E731
      tie = ok.sum() > 1 and bool(np.all(np.abs(col[ok] - col[best])
                                         <= _TIE_RTOL * abs(col[best])))
      row.update(
          best_b2=b2, best=float(col[best]),
          beta_ratio=float(b1) / math.sqrt(b2) if b2 > 0 else math.inf,
          nearer="b1" if gap(b1) < gap(b1 * b1) else "b1^2", tie=tie,
          at_edge=len(ys) > 2 and best in (0, len(ys) - 1) and not tie)
    else:
      row.update(best_b2=math.nan, best=math.nan, beta_ratio=math.nan,
                 nearer="-", tie=False, at_edge=False)
    rows.append(row)
  return rows


def fmt(x: float) -> str:
  """A number for a summary table: 4 significant digits, ``nan`` if not finite."""
  return f"{x:.4g}" if math.isfinite(x) else "nan"


def number(x: float) -> str:
  """A grid value as the user typed it: the shortest text of its float32.

  Example:
    >>> from ftrl_adam.lab.report.summary import number
    >>> number(0.99375), number(0.019999999552965164), number(2.0)
    ('0.99375', '0.02', '2')
  """
  x = float(x)
  if not math.isfinite(x):
    return "nan" if math.isnan(x) else str(x)
  return f"{x:g}" if x == int(x) else str(np.float32(x))


def format_rows(rows: Sequence[Mapping[str, Any]], value_label: str,
                extra: Sequence[tuple[str, Callable[[Mapping[str, Any]], str]]]
                = ()) -> list[str]:
  """The best-b2 rows as aligned text lines.

  ``*`` marks a best b2 on the edge of the b2 grid, ``=`` a tie (every b2
  gives the same value: the row's best b2 means nothing); each mark used is
  explained in a line below the table.

  Columns: b1, b1^2, best b2, ``value_label`` there, the b2 nearest b1^2,
  ``value_label`` there, and the ``extra`` (header, formatter) columns.
  """
  headers = ["b1", "b1^2", "best b2", value_label, "b2~b1^2",
             f"{value_label} at b2~b1^2"] + [h for h, _ in extra]
  cells = [headers]
  for r in rows:
    mark = "=" if r.get("tie") else "*" if r.get("at_edge") else " "
    cells.append([number(r["b1"]), f"{r['b1_squared']:.4g}",
                  number(r["best_b2"]) + mark, fmt(r["best"]),
                  number(r["b2_near_b1_squared"]), fmt(r["at_b1_squared"])]
                 + [f(r) for _, f in extra])
  widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
  lines = ["  " + "  ".join(s.rjust(w) for s, w in zip(c, widths, strict=True))
           for c in cells]
  if any(r.get("at_edge") for r in rows):
    lines.append("  * best b2 on the edge of the b2 grid: the optimum may lie "
                 "beyond it.")
  if any(r.get("tie") for r in rows):
    lines.append("  = every b2 gives the same value (a tie): no best b2.")
  return lines
