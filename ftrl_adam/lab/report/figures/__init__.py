"""Heatmaps of grid results, drawn with Matplotlib's Agg canvas (no display).

Figures are built as ``matplotlib.figure.Figure`` objects on a
``FigureCanvasAgg``: pyplot is never imported and the global backend is never
changed, so this works on headless machines and inside other programs.  The
engine (:mod:`ftrl_adam.grid`) does not import this module.
"""

from __future__ import annotations

import functools
import io
import os
import textwrap
import threading
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ftrl_adam import lab as _lab

_lab.require_extra("ftrl_adam.plots")   # before Matplotlib: one line, not a traceback

from matplotlib import colormaps
from matplotlib import rcParams
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.ticker import FixedFormatter
from matplotlib.ticker import FixedLocator
from matplotlib.ticker import NullLocator
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.text import Text

from ftrl_adam import _store
from ftrl_adam.lab import engine as grid
from ftrl_adam.lab.report.figures import colours

__all__ = ("OVERLAYS", "axis_name", "format_value", "heatmap")

# Named overlay curves y = f(x); "{x}" and "{y}" in the label become the
# columns' names, e.g. "β₂ = β₁²", the boundary b1 = sqrt(b2) of Nguyen's two
# regimes (docs/theory.md section 2).  Plain Unicode, no mathtext: nothing to
# parse (Matplotlib's mathtext parser is not safe to use from two threads).
OVERLAYS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "y=x^2": ("{y} = {x}\u00b2", lambda x: x ** 2),
    "y=x": ("{y} = {x}", lambda x: x),
    "y=sqrt(x)": ("{y} = \u221a{x}", np.sqrt),
}

# The axis names of the beta columns as a reader knows them (the columns keep
# their names b1, b2).
_NAMES = {"b1": "\u03b2\u2081", "b2": "\u03b2\u2082"}

# Figures are drawn one at a time: callers that draw from several threads
# (the experiments' runner) must not interleave Matplotlib's text layout.
_DRAWING = threading.Lock()


def axis_name(name: str) -> str:
  """A column's name as an axis label: ``b1`` -> β₁, ``b2`` -> β₂, else as is.

  Example:
    >>> from ftrl_adam import plots
    >>> plots.axis_name("b2"), plots.axis_name("lr")
    ('β₂', 'lr')
  """
  return _NAMES.get(name, name)


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


def _axis_map(values: np.ndarray, log: bool) -> tuple[Callable, Callable]:
  """Data value <-> place on an axis whose cell i (centre i) is ``values[i]``.

  Between two cell centres the place is linear in the value, or in
  log(1 - value) with ``log``; the outer half cells reach as far as the
  inner ones (a single cell: a decade of 1 - value, or 10% of the value).
  Values beyond the outer edges are at NaN (nothing is drawn there).

  Returns:
    ``(place_of, value_at)``, two functions of arrays.
  """
  def t(v):
    v = np.asarray(v, np.float64)
    with np.errstate(all="ignore"):
      return -np.log1p(-v) if log else v
  c = t(values)
  if len(c) == 1:
    half = 0.5 * np.log(10.0) if log else (0.05 if c[0] == 0 else 0.1 * abs(c[0]))
    knots = np.array([c[0] - half, c[0], c[0] + half])
  else:
    knots = np.concatenate([[1.5 * c[0] - 0.5 * c[1]], c,
                            [1.5 * c[-1] - 0.5 * c[-2]]])
  places = np.arange(-1, len(c) + 1, dtype=np.float64)
  places[0], places[-1] = -0.5, len(c) - 0.5

  def place_of(v):
    return np.interp(t(v), knots, places, left=np.nan, right=np.nan)

  def value_at(p):
    u = np.interp(p, places, knots)
    return -np.expm1(-u) if log else u
  return place_of, value_at


def format_value(v: float, dtype: Any = np.float32) -> str:
  """A grid value as typed: the shortest decimal that reads back to it.

  Args:
    v: the value.
    dtype: the column's dtype (float32 columns print their float32 value's
      shortest form: 0.99375, not 0.9937499761581421).

  Returns:
    Positional notation from 1e-3 to 1e5, scientific outside (``1e-4``).

  Example:
    >>> from ftrl_adam import plots
    >>> plots.format_value(0.99375), plots.format_value(1e-4), plots.format_value(0.9)
    ('0.99375', '1e-4', '0.9')
  """
  x = np.asarray(v, dtype if np.issubdtype(np.dtype(dtype), np.floating)
                 else np.float64)[()]
  if x == 0 or not np.isfinite(x):
    return f"{float(x):g}"
  if 1e-3 <= abs(x) < 1e5:
    return np.format_float_positional(x, unique=True, trim="-")
  return np.format_float_scientific(x, unique=True, trim="-", exp_digits=1)


def _overlay(spec: Any, x: str, y: str) -> tuple[str, Callable]:
  if isinstance(spec, str):
    key = spec.replace(" ", "").replace(f"{y}=", "y=").replace(f"={x}", "=x")
    key = key.replace(f"({x})", "(x)").replace(f"{x}^", "x^")
    if key not in OVERLAYS:
      raise ValueError(
          f"Unknown overlay {spec!r}; use one of {', '.join(OVERLAYS)} (or with "
          f"the column names, e.g. '{y}={x}^2'), or a (label, function) pair.")
    label, fn = OVERLAYS[key]
    return label.format(x=axis_name(x), y=axis_name(y)), fn
  label, fn = spec
  return str(label), fn


def _labels(vals: np.ndarray, dtype: Any, log: bool) -> list[str]:
  """Tick labels: the values as typed (their shortest forms) when each has 6
  significant digits or fewer, else (a computed grid) each rounded to the
  fewest decimals that keep it within 5% of the gap to its neighbours (in
  log(1 - value) with ``log``): 0.99375 reads 0.99375, a computed
  0.9922697 reads 0.9923."""
  v = np.asarray(vals, np.float64)
  with np.errstate(all="ignore"):
    t = -np.log1p(-v) if log else v
  gaps = np.abs(np.diff(t))
  near = np.minimum(np.r_[np.inf, gaps], np.r_[gaps, np.inf])
  exact = [format_value(x, dtype) for x in v]
  digits = [e.split("e")[0].replace("-", "").replace(".", "").lstrip("0")
            for e in exact]
  if all(len(d) <= 6 for d in digits):
    return exact
  out = []
  for i, x in enumerate(v):
    if not np.isfinite(near[i]) or near[i] == 0:
      out.append(exact[i])
      continue
    for k in range(1, 10):
      r = round(float(x), k)
      with np.errstate(all="ignore"):
        tr = -np.log1p(-r) if log else r
      if abs(tr - t[i]) <= 0.05 * near[i]:
        text = np.format_float_positional(r, trim="-")
        out.append(text if len(text) < len(exact[i]) else exact[i])
        break
    else:
      out.append(exact[i])
  return out


def _ticks(fig: Figure, ax: Any, axis: str, vals: np.ndarray, dtype: Any,
           log: bool, max_ticks: Optional[int]) -> None:
  """A label on every grid value, centred on its cell; only where the labels
  would overlap, every s-th (both ends kept if they fit)."""
  target = ax.xaxis if axis == "x" else ax.yaxis
  labels = _labels(vals, dtype, log)
  n = len(vals)
  renderer = getattr(fig.canvas, "get_renderer", lambda: None)()
  extents = None if renderer is None else _extents(fig, ax, axis, labels,
                                                   renderer)
  tries = [(pick, rotation)
           for step in range(1, n + 1)
           for pick in (sorted(set(range(0, n, step)) | {n - 1}),
                        sorted(range(n - 1, -1, -step)))
           if max_ticks is None or len(pick) <= max_ticks
           for rotation in ((0, 90) if axis == "x" else (0,))]
  if not tries:
    return
  pick, rotation = next((t for t in tries if extents is None
                         or not _crowded(extents, *t)), tries[-1])
  target.set_major_locator(FixedLocator(pick))
  target.set_major_formatter(FixedFormatter([labels[i] for i in pick]))
  target.set_minor_locator(NullLocator())
  if axis == "x":
    ax.tick_params(axis="x", labelrotation=rotation)


def _extents(fig: Figure, ax: Any, axis: str, labels: Sequence[str],
             renderer: Any) -> tuple[np.ndarray, dict[int, np.ndarray]]:
  """Where each cell's label would be centred along the axis (pixels), and
  how long each label is along it, upright (0) and turned (90): each label
  measured once, not each try of the tick machinery (0.1 s a figure)."""
  idx = np.arange(len(labels), dtype=np.float64)
  if axis == "x":
    centre = ax.transData.transform(np.c_[idx, np.zeros_like(idx)])[:, 0]
  else:
    centre = ax.transData.transform(np.c_[np.zeros_like(idx), idx])[:, 1]
  font = FontProperties(size=rcParams[f"{axis}tick.labelsize"])
  wide, high = [], []
  for text in labels:
    box = Text(0.0, 0.0, text, fontproperties=font, figure=fig
               ).get_window_extent(renderer)
    wide.append(box.width)
    high.append(box.height)
  wide, high = np.asarray(wide), np.asarray(high)
  return centre, ({0: wide, 90: high} if axis == "x" else {0: high})


def _crowded(extents: tuple[np.ndarray, dict[int, np.ndarray]],
             pick: Sequence[int], rotation: int) -> bool:
  """Whether two neighbouring labels of ``pick`` come closer than 2 pixels."""
  centre, length = extents
  i = np.asarray(pick)
  if len(i) < 2:
    return False
  half = 0.5 * length[rotation][i]
  gap = 2.0    # pixels between two labels
  return bool(np.any(centre[i[1:]] - half[1:] < centre[i[:-1]] + half[:-1] + gap))


def _draw_overlays(ax: Any, overlays: Sequence[Any], x: str, y: str,
                   shape: tuple[int, int], xmap: tuple[Callable, Callable],
                   ymap: tuple[Callable, Callable]) -> float:
  """The curves that pass over the grid (each in its own colour, C0, C1, ...),
  and their legend just above the axes; the points it takes.  A curve that
  misses every cell (b2 = b1 below a grid of b2 >= 0.99) gets no legend
  entry for a line that is not there."""
  n_x, n_y = shape
  dense = xmap[1](np.linspace(-0.5, n_x - 0.5, 512))
  # The outer half cells extrapolate; never across 0 (b1 = -0.1 is no b1).
  lowest = min(0.0, float(xmap[1](0.0)))
  dense = np.where(dense >= lowest, dense, np.nan)
  drawn = 0
  for i, spec in enumerate(overlays):
    curve_label, fn = _overlay(spec, x, y)
    with np.errstate(all="ignore"):
      cx = xmap[0](dense)
      cy = ymap[0](np.asarray(fn(dense), np.float64))
      inside = (np.abs(cx - 0.5 * (n_x - 1)) < 0.5 * n_x) & (
          np.abs(cy - 0.5 * (n_y - 1)) < 0.5 * n_y)
    if np.any(inside[1:] & inside[:-1]):     # a segment of the line shows
      ax.plot(cx, cy, lw=1.5, color=f"C{i}", label=curve_label)
      drawn += 1
  if not drawn:
    return 6.0
  legend = ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0),
                     ncol=drawn, fontsize="small", frameon=False,
                     borderaxespad=0.2, handlelength=1.5, columnspacing=1.0)
  renderer = getattr(ax.figure.canvas, "get_renderer", lambda: None)()
  if renderer is None:
    return 6.0 + 2.2 * 0.833 * float(rcParams["font.size"])
  above = (legend.get_window_extent(renderer).y1
           - ax.get_window_extent(renderer).y1)
  return 6.0 + above * 72.0 / ax.figure.dpi


def _one_at_a_time(fn: Callable) -> Callable:
  @functools.wraps(fn)
  def drawn(*args: Any, **kwargs: Any) -> Any:
    with _DRAWING:
      return fn(*args, **kwargs)
  return drawn


@_one_at_a_time
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
    max_ticks: Optional[int] = None,
    min_color_ratio: float = 2.0,
) -> Figure:
  """A heatmap of ``value`` over two axis columns, reduced over the rest (seeds).

  Cells of the same (x, y) are reduced with :func:`ftrl_adam.grid.pivot`; a
  (x, y) with no cell, or whose reduction is NaN (a diverged seed), is grey.
  Each grid value has a cell of its own, all of one size, and a tick label
  centred on it (as typed: 0.99375, not 0.9938); labels are thinned, first
  and last kept, only where they would overlap.  ``b1``, ``b2`` are labelled
  β₁, β₂.  One figure is drawn at a time (a lock): threads may call this.

  The colour scale does not exaggerate: a linear scale of positive values
  starts at the smallest value and reaches at least ``min_color_ratio``
  times it (a black line on the colour bar marks the largest value when the
  scale goes beyond it), so a field that varies by a few percent looks
  nearly uniform; a log scale (``log_value``) is used only for values that
  span more than a factor 3.  A constant field (every finite value the same
  to float32 rounding) gets no colour bar but the words "constant: value".

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
    log_one_minus: the overlays are interpolated between cells in
      log(1 - x) and/or log(1 - y) (``True`` for both, or ``"x"``, ``"y"``),
      the spacing of grids such as 0.9, 0.99, 0.999; else in the values.
    log_value: logarithmic colour scale (non-positive values are grey), used
      when the values span more than a factor 3 (or a ``color_range`` is
      given); a narrower range gets a linear scale.
    overlays: curves ``y = f(x)`` drawn on top, with their legend just above
      the axes: names from :data:`OVERLAYS` (``"y=x^2"``, ``"y=x"``,
      ``"y=sqrt(x)"``, or spelled with the column names such as
      ``"b2=b1^2"``) or ``(label, function)`` pairs.  A curve that misses
      the grid is neither drawn nor in the legend; the k-th curve is colour Ck.
    title: the title; default ``"<reduce> of <value>"``.
    path: if given, the PNG is written there (atomically).
    annotate: write each cell's number in it (for small grids), to 3
      significant digits, or more (up to 5) where two cells of visibly
      different colours would read the same.
    cmap: a Matplotlib colormap name.
    figsize: figure size in inches (3.4 wide fits a column of a two-column
      paper).
    dpi: resolution of the PNG.
    ax: draw into this Matplotlib axes instead of a new figure.
    label: the colour bar's label; default ``"<value> (<reduce>)"``.
    color_range: ``(low, high)`` of the colour scale (values outside take the
      end colours); default as above.
    max_ticks: at most this many tick labels per axis; default as many as fit.
    min_color_ratio: a linear scale of positive values spans at least from
      the smallest value to this multiple of it (1: exactly the values).

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
    >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
    ['0', '0.9', '0.99']
  """
  if not min_color_ratio >= 1.0:
    raise ValueError(f"`min_color_ratio` must be >= 1, got {min_color_ratio!r}.")
  xs, ys, z = grid.pivot(table, value, x=x, y=y, reduce=reduce, where=where)
  if xs.size == 0:
    raise ValueError(f"No cells to plot (after where={where!r}).")
  logs = _log_axes(log_one_minus)
  for name, vals, axis in ((x, xs, "x"), (y, ys, "y")):
    if axis in logs and np.any(np.asarray(vals, np.float64) >= 1):
      raise ValueError(f"log_one_minus needs {name} < 1 in every cell, to take "
                       f"log(1 - {name}).")
  xmap, ymap = _axis_map(xs, "x" in logs), _axis_map(ys, "y" in logs)

  made = ax is None
  if made:
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
  else:
    fig = ax.figure
  cmap_colours = colormaps[cmap].with_extremes(bad="lightgrey")
  norm, constant = colours.scale(z, log_value, color_range, min_color_ratio)
  zm = np.ma.masked_invalid(z)
  if isinstance(norm, LogNorm):
    zm = np.ma.masked_less_equal(zm, 0)
  mesh = ax.pcolormesh(np.arange(len(xs) + 1) - 0.5,
                       np.arange(len(ys) + 1) - 0.5, zm, cmap=cmap_colours,
                       norm=norm, shading="flat")
  red_name = reduce if isinstance(reduce, str) else getattr(
      reduce, "__name__", "reduce")
  bar_label = label if label is not None else f"{value} ({red_name})"
  title = title if title is not None else f"{red_name} of {value}"
  if made:    # long words fit the figure's own width and height
    size = float(rcParams["font.size"])
    title = _wrap(title, figsize[0], 1.2 * size)
    bar_label = _wrap(bar_label, 0.8 * figsize[1], size)
  if constant is not None:
    ax.text(1.04, 0.5, f"{bar_label}\nconstant: {constant:.4g}",
            transform=ax.transAxes, ha="left", va="center", fontsize="small")
  elif np.isfinite(z).any():
    colours.colour_bar(fig, ax, mesh, bar_label, z, isinstance(norm, LogNorm))
  if annotate:
    colours.annotate(ax, z, cmap_colours, norm)
  pad = 6.0
  if overlays:
    pad = _draw_overlays(ax, overlays, x, y, (len(xs), len(ys)), xmap,
                         ymap)
  ax.set_xlim(-0.5, len(xs) - 0.5)
  ax.set_ylim(-0.5, len(ys) - 0.5)
  ax.set_xlabel(axis_name(x))
  ax.set_ylabel(axis_name(y))
  ax.set_title(title, pad=pad)
  for axis, name, vals in (("x", x, xs), ("y", y, ys)):
    _ticks(fig, ax, axis, vals, np.asarray(table[name]).dtype, axis in logs,
           max_ticks)

  if path is not None:
    _store.atomic_write(os.fspath(path), _png(fig, dpi))
  return fig


def _png(fig: Figure, dpi: int) -> bytes:
  """The figure as PNG bytes, cut to what is drawn plus a pad, as
  ``savefig(bbox_inches="tight")`` cuts it, but drawn once instead of twice:
  the box is measured on the figure as it stands (0.07 s a figure)."""
  old_dpi = fig.dpi
  fig.set_dpi(dpi)
  try:
    box = fig.get_tightbbox(fig.canvas.get_renderer())
  finally:
    fig.set_dpi(old_dpi)
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi,
              bbox_inches=box.padded(rcParams["savefig.pad_inches"]))
  return buf.getvalue()


def _wrap(text: str, width_in: float, fontsize: float) -> str:
  """``text`` broken at spaces into lines about ``width_in`` inches long."""
  chars = max(12, int(width_in * 72.0 / (0.55 * fontsize)))
  return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


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
