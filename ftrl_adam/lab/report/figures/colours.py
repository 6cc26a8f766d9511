"""The colour scale of a heatmap and the numbers written on it (private).

:func:`scale` chooses the scale from the values (linear from the minimum, or
logarithmic over a wide positive field; a constant field is said in words),
:func:`colour_bar` draws the bar and labels its ticks (:class:`_TickLabels`),
:func:`annotate` writes each cell's number.  The labels take the digits that
tell apart what the colours tell apart.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ftrl_adam import lab as _lab

_lab.require_extra("ftrl_adam.plots")   # before Matplotlib: one line, not a traceback

from matplotlib.colors import LogNorm
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter
from matplotlib.ticker import FuncFormatter
from matplotlib.ticker import NullFormatter

# Two numbers within this relative distance are the same value (float32
# rounding): a field of them is constant.
_SAME_RTOL = 1e-6


def scale(z: np.ndarray, log_value: bool, color_range: Optional[tuple],
          min_color_ratio: float) -> tuple[Any, Optional[float]]:
  """The colour scale, and the constant value of a constant field (else None).

  A linear scale of positive values starts at their minimum and reaches at
  least ``min_color_ratio`` times it, so that a spread of a few percent takes
  a few percent of the colours instead of all of them.  A scale set from the
  values reaches a hair beyond them (:func:`_widened`).
  """
  v = z[np.isfinite(z)]
  if color_range is None and v.size and np.all(
      np.abs(v - v.min()) <= _SAME_RTOL * abs(v.min())):
    c = float(v.min())
    return Normalize(vmin=c - 1.0, vmax=c + 1.0), c
  lo, hi = (None, None) if color_range is None else map(float, color_range)
  if log_value and color_range is None:
    # A log scale over a narrow range (less than 3x) only magnifies noise.
    pos = v[v > 0]
    log_value = pos.size > 1 and float(pos.max()) > 3.0 * float(pos.min())
    if log_value:
      lo, hi = _widened(float(pos.min()), float(pos.max()))
  if log_value:
    return LogNorm(vmin=lo, vmax=hi), None
  if color_range is None and v.size:
    lo, hi = float(v.min()), float(v.max())
    if lo > 0:
      hi = max(hi, min_color_ratio * lo)
    lo, hi = _widened(lo, hi)
  return Normalize(vmin=lo, vmax=hi), None


# float32 holds 0.1 as 0.10000000149 and 0.01 as 0.0099999998 (within 2**-24
# relative): a colour scale ending exactly at such values would leave the
# ticks of 0.1 and 0.01, the labels of its ends, just outside it.
_HAIR = 2.0 ** -22


def _widened(lo: float, hi: float) -> tuple[float, float]:
  """``(lo, hi)`` a relative hair (``_HAIR``) wider on each side."""
  return lo - _HAIR * abs(lo), hi + _HAIR * abs(hi)


def _significant(x: float, digits: int) -> str:
  """``x`` to ``digits`` significant digits; beyond 3, trailing zeros kept,
  so that 2.3100 stands beside 2.3098 (not 2.31), but no bare point (1235)."""
  return f"{x:#.{digits}g}".rstrip(".") if digits > 3 else f"{x:.{digits}g}"


class _TickLabels(Formatter):
  """A colour bar's tick labels: 3 significant digits, or as many more (up
  to 9) as it takes for no two ticks to read the same (a scale from 2.2463
  to 2.2468 reads 2.2464, 2.2465, ..., not 2.25 five times); on a linear
  scale with as many decimals each (0.0468, 0.0470, not 0.047; 0.5, 1.0)."""

  def __init__(self, log: bool) -> None:
    self.log, self.texts = log, {}

  def set_locs(self, locs: Any) -> None:
    super().set_locs(locs)
    locs = [float(v) for v in locs]
    digits = next((d for d in range(3, 10)
                   if len({f"{v:.{d}g}" for v in locs}) == len(locs)), 9)
    texts = [_significant(v, digits) for v in locs]
    if not self.log and locs and not any("e" in t for t in texts):
      decimals = max(len(f"{v:#.{digits}g}".partition(".")[2]) for v in locs)
      fixed = [f"{v:.{decimals}f}" for v in locs]
      cut = min([decimals] + [len(t) - len(t.rstrip("0")) for t in fixed])
      texts = [t[:len(t) - cut].rstrip(".") if cut else t for t in fixed]
    self.texts = dict(zip(locs, texts, strict=True))

  def __call__(self, x: float, pos: Any = None) -> str:
    return self.texts.get(float(x), _significant(x, 3))


def colour_bar(fig: Figure, ax: Any, mesh: Any, label: str, z: np.ndarray,
                log: bool) -> Any:
  """The colour bar, with a line at the largest value when the scale goes on,
  and an arrow at its end when values beyond it are drawn in its last colour."""
  v = z[np.isfinite(z)]
  vmax = mesh.norm.vmax
  capped = bool(v.size and vmax is not None and v.max() > vmax)
  bar = fig.colorbar(mesh, ax=ax, label=label,
                     extend="max" if capped else "neither")
  bar.ax.yaxis.set_major_formatter(_TickLabels(log))
  bar.ax.yaxis.set_minor_formatter(_minor_labels(mesh.norm) if log
                                   else NullFormatter())
  top = float(v.max()) if v.size else np.nan
  if vmax is not None and top + 2.0 * _HAIR * abs(top) < vmax:  # beyond the hair
    bar.ax.axhline(top, color="black", lw=1.0)
  return bar


def _minor_labels(norm: Any) -> Any:
  """Labels of a log colour bar's minor ticks (m x 10^k): 2, 3, 5 and 7 over
  at most a decade, 2 and 5 over at most two, none beyond (the decades
  suffice and more would crowd)."""
  lo, hi = norm.vmin, norm.vmax
  ratio = hi / lo if lo and hi and lo > 0 else np.inf
  ratio /= 1.0 + 4.0 * _HAIR       # a scale set from the values (_widened)
  keep = {2, 3, 5, 7} if ratio <= 10 else {2, 5} if ratio <= 100 else set()

  def label(v, _):
    if v <= 0:
      return ""
    m = v / 10.0 ** np.floor(np.log10(v))
    return f"{v:.3g}" if round(m) in keep and abs(m - round(m)) < 1e-6 else ""
  return FuncFormatter(label)


def _same_text_same_colour(v: np.ndarray, place: np.ndarray,
                           digits: int) -> bool:
  """Whether the sorted values ``v`` that read the same to ``digits``
  significant digits lie within 5% of the colour scale (``place``) of each
  other: rounding is monotone, so each run of one text is checked end to end."""
  texts = [f"{x:.{digits}g}" for x in v]
  starts = [0] + [i for i in range(1, len(v)) if texts[i] != texts[i - 1]]
  ends = starts[1:] + [len(v)]
  return all(place[e - 1] - place[b] <= 0.05 for b, e in zip(starts, ends, strict=True))


def annotate(ax: Any, z: np.ndarray, colours: Any, norm: Any) -> None:
  """Each cell's number in it, dark on light cells and light on dark ones, in
  a font that fits the cell (none where even 4.5 pt would not).  Three
  significant digits, or as many more (up to 5) as it takes for cells whose
  colours differ (by 5% of the scale) to read differently."""
  v = np.sort(z[np.isfinite(z)])
  if not v.size:
    return
  place = np.clip(np.nan_to_num(np.ma.filled(norm(v), np.nan)), 0.0, 1.0)
  digits = next((d for d in (3, 4) if _same_text_same_colour(v, place, d)), 5)
  texts = {(i, j): _significant(z[i, j], digits) for i in range(z.shape[0])
           for j in range(z.shape[1]) if np.isfinite(z[i, j])}
  box = ax.get_position()
  fig_w, fig_h = ax.figure.get_size_inches()
  cell_w = 72.0 * fig_w * box.width / z.shape[1]
  cell_h = 72.0 * fig_h * box.height / z.shape[0]
  longest = max(len(t) for t in texts.values())
  size = min(7.0, 0.9 * cell_w / (0.6 * longest), 0.8 * cell_h)
  if size < 4.5:
    return
  for (i, j), text in texts.items():
    shade = colours(norm(z[i, j]))
    light = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] > 0.5
    ax.text(j, i, text, ha="center", va="center", fontsize=size,
            color="black" if light else "white")
