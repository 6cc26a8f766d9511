"""What an experiment is to the runner: a :class:`Experiment` protocol and its data.

The runner (:func:`ftrl_adam.lab.experiment.run_experiment`) calls an
experiment's methods in one direction and gets data back; an experiment never
calls the runner.  The data it returns:

* :class:`Size` - how big it is, before anything is built;
* :class:`Part` - one compiled program to run (a table, a cell function, the
  settings that fingerprint it);
* :class:`Heatmap` - a figure it wants, described as data; the report draws
  it from the written tables after everything else is on disk;

and the runner hands back a :class:`Result`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

import numpy as np

from ftrl_adam.lab.engine.progress import format_seconds

Table = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Part:
  """One compiled program of an experiment.

  Attributes:
    name: short name, used for the folder ``grid_<name>`` and the progress.
    n_cells: rows of its table.
    table: a function returning the tidy table (built after the size check).
    cell_fn: the cell function, or the group function with ``group_size``.
    config: JSON settings the cells depend on besides the table (the
      fingerprint of ``grid_<name>``).
    chunk_size: cells per chunk.
    group_size: None, or the number of consecutive rows sharing one input
      stream (see :func:`ftrl_adam.grid.run_grid`).
    work_per_cell: units of work per cell (for the ETA).
    later: for an experiment whose parts come one batch at a time (the rungs
      of successive halving), the work (cells x work per cell, at most) of
      each part expected after this one's batch, read from the batch's last
      part: the progress numbers the parts and estimates the time left with
      them.
  """

  name: str
  n_cells: int
  table: Callable[[], Table]
  cell_fn: Callable[..., Any]
  config: Mapping[str, Any]
  chunk_size: int
  group_size: Optional[int] = None
  work_per_cell: float = 1.0
  later: tuple[float, ...] = ()


def format_bytes(n: float) -> str:
  """``1.2 GB``: bytes in SI units, 3 significant digits."""
  for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
    if abs(n) < 1000 or unit == "PB":
      return f"{n:.3g} {unit}"
    n /= 1000.0
  return f"{n:.3g} PB"  # pragma: no cover


@dataclasses.dataclass(frozen=True)
class Size:
  """How big an experiment is, computed without building it.

  Attributes:
    cells: rows of the results table.
    work: units of work in all (e.g. coordinate-rounds).
    unit: what a unit of work is.
    host_bytes: host memory of the results table while it is assembled.
    chunk_bytes: device memory of the largest chunk.
    rate: a documented throughput in units per second on this platform, for
      the time estimate (0: unknown).
    too_big_hint: what to change when it does not fit (names the options).
    note: more words for the size line (e.g. a study's rungs).
  """

  cells: int
  work: float
  unit: str
  host_bytes: float
  chunk_bytes: float
  rate: float
  too_big_hint: str
  note: str = ""

  def describe(self) -> str:
    """One line: cells, work, memory, and a time estimate when known."""
    eta = (f", about {format_seconds(self.work / self.rate)} at "
           f"{self.rate / 1e6:,.0f} M {self.unit}/s"
           if self.rate > 0 else "")
    return (f"{self.cells:,} cells, {self.work:.3g} {self.unit}; results table "
            f"{format_bytes(self.host_bytes)} of host memory, "
            f"{format_bytes(self.chunk_bytes)} per chunk on a device{eta}"
            + (f"; {self.note}" if self.note else ""))


@dataclasses.dataclass(frozen=True)
class Heatmap:
  """A heatmap an experiment asks for (drawn by :mod:`ftrl_adam.lab.report.figures`).

  Attributes:
    name: the file's stem (``<name>.png`` in the results folder).
    value: the column coloured.
    label: the colour bar's label, in the summary's words.
    title: the title.
    source: the table it reads: ``"results"`` (``results.csv``) or the name of
      an extra table (``"tuned"``).
    data: instead of ``source``, a small table of its own (e.g. a maximum over
      adversaries).
    where: ``{column: value}`` fixing the other varying columns.
    reduce: how the rows of one (x, y) are combined (``"mean"``, ``"max"``,
      ...).
    x: the column across, and ``y`` the column up.
    log_one_minus: axes in log(1 - b).
    log_value: a log colour scale when the values span more than 3x.
    overlays: named curves (``"b2=b1^2"``, ``"b2=b1"``).
    annotate: write each cell's value in it.
    color_range: ``(low, high)`` of the colour scale, or None (the data's).
  """

  name: str
  value: str
  label: str
  title: str
  source: str = "results"
  data: Optional[Mapping[str, np.ndarray]] = None
  where: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  reduce: str = "mean"
  x: str = "b1"
  y: str = "b2"
  log_one_minus: bool = True
  log_value: bool = False
  overlays: tuple[str, ...] = ()
  annotate: bool = False
  color_range: Optional[tuple[float, float]] = None


@dataclasses.dataclass(frozen=True)
class Result:
  """What :func:`ftrl_adam.lab.experiment.run_experiment` returns.

  Attributes:
    spec: the experiment that ran.
    table: the tidy results table (``results.csv``).
    extra: derived tables by name (e.g. ``{"tuned": ...}`` of a study).
    summary: the summary rows (``spec.summarize``).
    seconds: ``{"wall": ..., "compute": ..., <part>: ...}``: the wall time
      of this call, the compute time of every chunk (earlier interrupted calls
      included) and each part's wall time in this call.
    files: ``name -> path`` of the files written (empty without ``out_dir``).
    text: the summary as printed (``summary.txt``).
    computed: the cells computed by this call (0: everything was on disk).
  """

  spec: Any
  table: Table
  extra: dict[str, Table]
  summary: list[dict[str, Any]]
  seconds: dict[str, float]
  files: dict[str, str]
  text: str = ""
  computed: int = 0


class Experiment(Protocol):
  """An experiment the runner can run (the beta-grid, a training study).

  Class attributes: ``WHAT`` (its name in messages: ``"beta-grid"``),
  ``FORMAT`` (the ``run.json`` format tag), ``EXTRA_TABLES`` (the names of
  its derived tables) and ``FIGURE_PREFIXES`` (the prefixes of its figures'
  file names, so that ``overwrite`` removes only its own files).
  """

  WHAT: str
  FORMAT: str
  EXTRA_TABLES: tuple[str, ...]
  FIGURE_PREFIXES: tuple[str, ...]

  def config(self) -> Mapping[str, Any]:
    """The whole run as JSON data (``run.json``; compared on a resume)."""

  def size(self) -> Size:
    """How big the run is, computed without building anything."""

  def parts(self, done: Sequence[tuple[Part, Table]]) -> Sequence[Part]:
    """The parts to run next, given those done (in order); empty when finished."""

  def assemble(self, done: Sequence[tuple[Part, Table]]) -> Table:
    """The parts' tables joined into the results table."""

  def csv_columns(self, table: Table) -> Sequence[str]:
    """The columns of ``results.csv``, in order."""

  def extra_tables(self, table: Table) -> dict[str, Table]:
    """Derived tables, written as ``<name>.csv``."""

  def summarize(self, table: Table, extra: Mapping[str, Table]
                ) -> list[dict[str, Any]]:
    """The summary rows (``run.json``)."""

  def format_summary(self, result: Result) -> str:
    """The summary as text (``summary.txt``; what the command prints)."""

  def figures(self, result: Result) -> Sequence[Heatmap]:
    """The figures wanted, as data."""


def concat(tables: Sequence[Mapping[str, np.ndarray]],
           columns: Sequence[str]) -> Table:
  """Rows of several tables with the same columns, in order."""
  return {k: np.concatenate([np.asarray(t[k]) for t in tables])
          for k in columns}


def seconds_line(result: Result) -> str:
  """'3.2 s (compute 2.9 s summed over ...)' for summaries."""
  s = {k: _seconds(v) for k, v in result.seconds.items()}
  if not result.computed:
    return (f"no new cells: every chunk was on disk (compute "
            f"{s.get('compute', '0.0')} s when they were computed)")
  return (f"{s.get('wall', '0.0')} s (compute {s.get('compute', '0.0')} s "
          f"summed over every run that contributed chunks)")


def _seconds(x: float) -> str:
  """``3.2``, or two significant digits under 0.1 s (``0.012``, not ``0.0``)."""
  return f"{x:.1f}" if x >= 0.1 or x == 0 else f"{x:.2g}"
