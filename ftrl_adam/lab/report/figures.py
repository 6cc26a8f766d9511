"""Heatmaps of grid results, drawn with Matplotlib's Agg canvas (no display).

Figures are built as ``matplotlib.figure.Figure`` objects on a
``FigureCanvasAgg``: pyplot is never imported and the global backend is never
changed, so this works on headless machines and inside other programs.  The
engine (:mod:`ftrl_adam.grid`) does not import this module.
"""

from __future__ import annotations

import io
import os
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.colors import Normalize
from matplotlib.ticker import FixedFormatter
from matplotlib.ticker import FixedLocator
from matplotlib.ticker import FuncFormatter
from matplotlib.ticker import NullFormatter
from matplotlib.ticker import NullLocator
from matplotlib.figure import Figure

from ftrl_adam import _store
from ftrl_adam.lab import engine as grid

__all__ = ("OVERLAYS", "heatmap")

# Named overlay curves y = f(x); "{x}" and "{y}" in the label become the
# column names (e.g. "b2 = b1^2", the boundary b1 = sqrt(b2) of Nguyen's two
# regimes, docs/theory.md section 2).
OVERLAYS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "y=x^2": ("{y} = {x}$^2$", lambda x: x ** 2),
    "y=x": ("{y} = {x}", lambda x: x),
    "y=sqrt(x)": ("{y} = $\\sqrt{{{x}}}$", np.sqrt),
}


def _log_axes(log_one_minus: bool | str | Sequence[str]) -> set[str]:
  if log_one_minus is True:
    return {"x", "y"}
  if log_one_minus is False or log_one_minus is None:
    return set()
  axes = {log_one_minus} if isinstance(log_one_minus, str) else set(
      log_one_minus)
  if not axes <= {"x", "y"}:
    raise ValueError(f"`log_one_minus` must be a bool, 'x', 'y' or ('x', 'y'); "
                     f"got {log_one_minus!r}.")
  return axes


def _edges(c: np.ndarray, log: bool) -> np.ndarray:
  """Cell edges around sorted centres ``c`` (midpoints, in log space if log)."""
  c = np.asarray(c, np.float64)
  t = np.log(c) if log else c
  if len(t) == 1:
    half = 0.5 * np.log(10.0) if log else (0.05 if t[0] == 0 else 0.1 * abs(t[0]))
    e = np.array([t[0] - half, t[0] + half])
  else:
    mid = 0.5 * (t[:-1] + t[1:])
    e = np.concatenate([[2 * t[0] - mid[0]], mid, [2 * t[-1] - mid[-1]]])
  return np.exp(e) if log else e


def _overlay(spec: Any, x: str, y: str) -> tuple[str, Callable]:
  if isinstance(spec, str):
    key = spec.replace(" ", "").replace(f"{y}=", "y=").replace(f"={x}", "=x")
    key = key.replace(f"({x})", "(x)").replace(f"{x}^", "x^")
    if key not in OVERLAYS:
      raise ValueError(
          f"Unknown overlay {spec!r}; use one of {', '.join(OVERLAYS)} (or with "
          f"the column names, e.g. '{y}={x}^2'), or a (label, function) pair.")
    label, fn = OVERLAYS[key]
    return label.format(x=x, y=y), fn
  label, fn = spec
  return str(label), fn


def heatmap(
    table: Mapping[str, Any],
    value: str,
    *,
    x: str = "b1",
    y: str = "b2",
    reduce: str | Callable[[np.ndarray], Any] = "mean",
    where: Optional[Mapping[str, Any]] = None,
    log_one_minus: bool | str | Sequence[str] = False,
    log_value: bool = False,
    overlays: Sequence[Any] = (),
    title: Optional[str] = None,
    path: Optional[str | os.PathLike] = None,
    annotate: bool = False,
    cmap: str = "viridis",
    figsize: tuple[float, float] = (6.0, 4.8),
    dpi: int = 120,
    ax: Any = None,
    label: Optional[str] = None,
    color_range: Optional[tuple[float, float]] = None,
    max_ticks: int = 8,
) -> Figure:
  """A heatmap of ``value`` over two axis columns, reduced over the rest (seeds).

  Cells of the same (x, y) are reduced with :func:`ftrl_adam.grid.pivot`; a
  (x, y) with no cell, or whose reduction is NaN (a diverged seed), is grey.

  Args:
    table: a tidy table, e.g. the result of :func:`ftrl_adam.grid.run_grid`.
    value: the scalar column to colour by.
    x: the axis column across (default ``b1``).
    y: the axis column up (default ``b2``).
    reduce: ``"mean"`` (default), ``"median"``, ``"min"``, ``"max"``, ``"std"``
      or a function of a 1-D array: how the cells of one (x, y) - the seeds -
      are combined.
    where: ``{column: value}`` to fix other varying columns first (e.g. a
      learning rate), as in :func:`ftrl_adam.grid.select`.
    log_one_minus: plot ``1 - x`` and/or ``1 - y`` on a log scale (``True``
      for both, or ``"x"``, ``"y"``); the axis is flipped so the value still
      grows to the right/up, and 0.9, 0.99, 0.999 are evenly spaced.
    log_value: logarithmic colour scale (non-positive values are grey), used
      when the values span more than a factor 3 (or a ``color_range`` is
      given); a narrower range gets a linear scale.
    overlays: curves ``y = f(x)`` drawn on top: names from :data:`OVERLAYS`
      (``"y=x^2"``, ``"y=x"``, ``"y=sqrt(x)"``, or spelled with the column
      names such as ``"b2=b1^2"``) or ``(label, function)`` pairs.
    title: the title; default ``"<reduce> of <value>"``.
    path: if given, the PNG is written there (atomically).
    annotate: write each cell's number in it (for small grids).
    cmap: a Matplotlib colormap name.
    figsize: figure size in inches.
    dpi: resolution of the PNG.
    ax: draw into this Matplotlib axes instead of a new figure.
    label: the colour bar's label; default ``"<value> (<reduce>)"``.
    color_range: ``(low, high)`` of the colour scale (values outside take the
      end colours); default the range of the finite values.
    max_ticks: at most this many axis ticks, placed on grid values and
      labelled with them (b1, b2 themselves, also on a log(1 - b) axis).

  Returns:
    The ``matplotlib.figure.Figure``.

  Example:
    >>> import os, tempfile
    >>> from ftrl_adam import grid, plots
    >>> t = grid.product(b1=[0.0, 0.9, 0.99], b2=[0.9, 0.99, 0.999],
    ...                  seed=grid.seeds(2))
    >>> t["regret"] = (1 - t["b2"]) / (1 - t["b1"]) + t["seed"]
    >>> path = os.path.join(tempfile.mkdtemp(), "regret.png")
    >>> fig = plots.heatmap(t, "regret", log_one_minus=True,
    ...                     overlays=["b2=b1^2", "b2=b1"], path=path)
    >>> open(path, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
    True
  """
  xs, ys, z = grid.pivot(table, value, x=x, y=y, reduce=reduce, where=where)
  if xs.size == 0:
    raise ValueError(f"No cells to plot (after where={where!r}).")
  logs = _log_axes(log_one_minus)
  cx = 1.0 - xs.astype(np.float64) if "x" in logs else xs.astype(np.float64)
  cy = 1.0 - ys.astype(np.float64) if "y" in logs else ys.astype(np.float64)
  for name, c, axis in ((x, cx, "x"), (y, cy, "y")):
    if axis in logs and np.any(c <= 0):
      raise ValueError(f"log_one_minus needs {name} < 1 in every cell, to take "
                       f"log(1 - {name}).")
  ex, ey = _edges(cx, "x" in logs), _edges(cy, "y" in logs)

  if ax is None:
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
  else:
    fig = ax.figure
  colours = colormaps[cmap].with_extremes(bad="lightgrey")
  zm = np.ma.masked_invalid(z)
  lo, hi = (None, None) if color_range is None else map(float, color_range)
  if log_value and color_range is None:
    # A log scale over a narrow range (less than 3x) only magnifies noise.
    v = z[np.isfinite(z) & (z > 0)]
    log_value = v.size > 1 and float(v.max()) > 3.0 * float(v.min())
  if log_value:
    zm = np.ma.masked_less_equal(zm, 0)
    norm = LogNorm(vmin=lo, vmax=hi)
  else:
    norm = Normalize(vmin=lo, vmax=hi)
  mesh = ax.pcolormesh(ex, ey, zm, cmap=colours, norm=norm, shading="flat")
  red_name = reduce if isinstance(reduce, str) else getattr(
      reduce, "__name__", "reduce")
  bar = fig.colorbar(mesh, ax=ax, label=label if label is not None
                     else f"{value} ({red_name})")
  plain = FuncFormatter(lambda v, _: f"{v:.3g}")
  bar.ax.yaxis.set_major_formatter(plain)
  bar.ax.yaxis.set_minor_formatter(plain if log_value else NullFormatter())

  if annotate:
    for i, yc in enumerate(cy):
      for j, xc in enumerate(cx):
        if np.isfinite(z[i, j]):
          # Dark text on light cells, light text on dark ones.
          shade = colours(norm(z[i, j]))
          light = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] > 0.5
          ax.text(xc, yc, f"{z[i, j]:.3g}", ha="center", va="center",
                  fontsize="x-small", color="black" if light else "white")

  if overlays:
    lo, hi = float(xs.min()), float(xs.max())
    if "x" in logs and hi > lo:
      dense = 1.0 - np.geomspace(1.0 - lo, 1.0 - hi, 256)
    else:
      dense = np.linspace(lo, hi, 256)
    for spec in overlays:
      curve_label, fn = _overlay(spec, x, y)
      with np.errstate(all="ignore"):
        curve = np.asarray(fn(dense), np.float64)
      px = 1.0 - dense if "x" in logs else dense
      py = 1.0 - curve if "y" in logs else curve
      ok = np.isfinite(py) & ((py > 0) if "y" in logs else True)
      ax.plot(px[ok], py[ok], lw=1.5, label=curve_label)
    # Below the axis label, so that the legend never hides a cell.
    ax.legend(loc="upper center",
              bbox_to_anchor=(0.5, -0.30 if len(xs) > 4 else -0.16),
              ncol=len(overlays), fontsize="small", frameon=False)

  ax.set_xlim(min(ex), max(ex))
  ax.set_ylim(min(ey), max(ey))
  for axis, name, set_scale, invert, vals, cs in (
      ("x", x, ax.set_xscale, ax.invert_xaxis, xs, cx),
      ("y", y, ax.set_yscale, ax.invert_yaxis, ys, cy)):
    if axis in logs:
      set_scale("log")
      invert()
      axis_label = f"{name} (axis: log(1 - {name}))"
    else:
      axis_label = name
    # Ticks on the grid's own values, labelled with them (thinned).
    step = max(1, -(-len(vals) // max(1, max_ticks)))
    pick = list(range(0, len(vals), step))
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(np.asarray(cs)[pick]))
    target.set_major_formatter(FixedFormatter(
        [f"{float(v):.4g}" for v in np.asarray(vals)[pick]]))
    target.set_minor_locator(NullLocator())
    (ax.set_xlabel if axis == "x" else ax.set_ylabel)(axis_label)
  if len(xs) > 4:
    for t in ax.get_xticklabels():
      t.set_rotation(45)
      t.set_ha("right")
  ax.set_title(title if title is not None else f"{red_name} of {value}")

  if path is not None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _store.atomic_write(os.fspath(path), buf.getvalue())
  return fig


def draw(heatmaps: Sequence[Any], tables: Mapping[str, Mapping[str, Any]],
         out_dir: str | os.PathLike) -> dict[str, str]:
  """Draws the heatmaps an experiment asked for; ``name -> path`` of each PNG.

  Args:
    heatmaps: :class:`ftrl_adam.lab.protocol.Heatmap` descriptions.
    tables: the tables they read, by name (``"results"`` and the extra
      tables), as written to the results folder.
    out_dir: the folder; each heatmap is written to ``<name>.png``.
  """
  files = {}
  for h in heatmaps:
    table = h.data if h.data is not None else tables[h.source]
    path = os.path.join(os.fspath(out_dir), f"{h.name}.png")
    heatmap(table, h.value, x=h.x, y=h.y, reduce=h.reduce,
            where=dict(h.where) or None, log_one_minus=h.log_one_minus,
            log_value=h.log_value, overlays=list(h.overlays), title=h.title,
            label=h.label, annotate=h.annotate, color_range=h.color_range,
            path=path)
    files[h.name] = path
  return files
