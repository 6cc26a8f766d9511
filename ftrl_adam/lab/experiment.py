"""The experiment runner: one results folder, one resume protocol, every study.

An *experiment* is a small spec object (the beta-grid of
:func:`ftrl_adam.regret.beta_grid`, a training study of
:func:`ftrl_adam.studies.make_study`) that owns its defaults and checks and says
what to run; :func:`run_experiment` runs any of them the same way:

1. **Size first.**  ``spec.size()`` states the work (cells, units of work,
   the host memory of the results table, the device memory of a chunk) before
   anything is allocated; what cannot fit this machine is refused with a
   one-line :class:`TooBigError` naming the options to change, and nothing is
   written.
2. **Parts.**  ``spec.parts()`` returns one :class:`Part` per compiled
   program (the beta-grid: one per adversary): a table, a cell (or group)
   function and the settings that fingerprint it.  Each runs through
   :func:`ftrl_adam.grid.run_grid` into ``out_dir/grid_<part>/`` (chunks
   written atomically, resumed on the next identical call).
3. **One table, one report.**  ``spec.assemble`` joins the parts into one
   tidy table (``results.csv``), ``spec.extra_tables`` derives more tables
   (a study's ``tuned.csv``), ``spec.summarize`` / ``spec.format_summary``
   make ``summary.txt``, ``spec.figures`` draws the heatmaps.  A spec may
   also have ``part_figures(part, res, out)``: the figures of one part,
   drawn in a thread as soon as the part is done (while the next parts
   compile and run); ``spec.figures(result, out, drawn=<part names>)``
   then draws the rest.

The results folder::

    out_dir/
      run.json          the spec's configuration, versions, status, timings
      results.csv       one row per cell, every setting a column
      <extra>.csv       derived tables (a study's tuned.csv)
      summary.txt       what the command prints
      *.png             the figures
      grid_<part>/      the engine's manifest and chunk files

``run.json`` is written first (``"status": "running"``), then at the end
(``"complete"``, with the wall time of this call and the compute time summed
over every call that contributed chunks); an interrupted call leaves
``"interrupted"`` and the finished chunks.  A folder of another experiment or
configuration is refused (:class:`ftrl_adam.grid.ResultsFolderError`), never
mixed.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib
import json
import os
import shutil
import sys
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from ftrl_adam import _store
from ftrl_adam.lab.engine import _folder as _grid_io
from ftrl_adam.lab import engine as grid
from ftrl_adam.lab.engine._folder import ResultsFolderError

RUN_JSON = "run.json"
CSV_NAME = "results.csv"
SUMMARY_NAME = "summary.txt"
FORMAT_VERSION = 2

# Host memory a results table may take, as a fraction of what is available.
_HOST_FRACTION = 0.5


class TooBigError(ValueError):
  """An experiment that cannot fit this machine (refused before allocating)."""


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
  """

  name: str
  n_cells: int
  table: Callable[[], dict[str, np.ndarray]]
  cell_fn: Callable[..., Any]
  config: Mapping[str, Any]
  chunk_size: int
  group_size: Optional[int] = None
  work_per_cell: float = 1.0


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
  """

  cells: int
  work: float
  unit: str
  host_bytes: float
  chunk_bytes: float
  rate: float
  too_big_hint: str

  def describe(self) -> str:
    eta = (f", about {_grid_io.format_seconds(self.work / self.rate)} at "
           f"{self.rate / 1e6:,.0f} M {self.unit}/s"
           if self.rate > 0 else "")
    return (f"{self.cells:,} cells, {self.work:.3g} {self.unit}; results table "
            f"{_bytes(self.host_bytes)} of host memory, "
            f"{_bytes(self.chunk_bytes)} per chunk on a device{eta}")


@dataclasses.dataclass(frozen=True)
class ExperimentResult:
  """What :func:`run_experiment` returns.

  Attributes:
    spec: the experiment that ran.
    table: the tidy results table (``results.csv``).
    extra: derived tables by name (e.g. ``{"tuned": ...}`` of a study).
    summary: the summary rows (``spec.summarize``).
    seconds: ``{"wall": ..., "compute": ..., <part>: ...}``: the wall time
      of this call, the compute time of every chunk (earlier interrupted calls
      included) and each part's wall time in this call.
    files: ``name -> path`` of the files written (empty without ``out_dir``).
  """

  spec: Any
  table: dict[str, np.ndarray]
  extra: dict[str, dict[str, np.ndarray]]
  summary: list[dict[str, Any]]
  seconds: dict[str, float]
  files: dict[str, str]

  @property
  def text(self) -> str:
    """The summary as printed (``summary.txt``)."""
    return self.spec.format_summary(self)


def _bytes(n: float) -> str:
  for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
    if abs(n) < 1000 or unit == "PB":
      return f"{n:.3g} {unit}"
    n /= 1000.0
  return f"{n:.3g} PB"  # pragma: no cover


def available_memory() -> float:
  """Bytes of host memory available to this process (Linux: MemAvailable)."""
  try:
    with open("/proc/meminfo", encoding="ascii") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return float(line.split()[1]) * 1024.0
  except OSError:
    pass
  try:
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
  except (ValueError, OSError, AttributeError):  # pragma: no cover
    return float("inf")


def device_memory() -> float:
  """Bytes of memory of the first device (host memory for a CPU)."""
  dev = jax.devices()[0]
  if dev.platform == "cpu":
    return available_memory()
  try:
    stats = dev.memory_stats() or {}
  except Exception:  # pylint: disable=broad-except
    stats = {}
  return float(stats.get("bytes_limit", float("inf")))


def check_size(size: Size) -> None:
  """Raises :class:`TooBigError` when the experiment cannot fit this machine."""
  host, dev = available_memory(), device_memory()
  if size.host_bytes > _HOST_FRACTION * host:
    raise TooBigError(
        f"too big for this machine: {size.cells:,} cells need about "
        f"{_bytes(size.host_bytes)} of host memory for the results (available: "
        f"{_bytes(host)}); {size.too_big_hint}. Nothing was written.")
  if size.chunk_bytes > _HOST_FRACTION * dev:
    raise TooBigError(
        f"too big for this machine: one chunk needs about "
        f"{_bytes(size.chunk_bytes)} of device memory (available: "
        f"{_bytes(dev)}); lower `chunk_size`. Nothing was written.")


# ----------------------------------------------------------------------------
# The results folder.
# ----------------------------------------------------------------------------

def _is_writer() -> bool:
  return jax.process_index() == 0


def _agree(error: Optional[BaseException]) -> None:
  """Raises on every process if process 0 raised (multi-process runs)."""
  if jax.process_count() == 1:
    if error is not None:
      raise error
    return
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  flag = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
  if int(np.asarray(flag)):
    raise error if error is not None else ResultsFolderError(
        "process 0 refused the results folder; see its error message.")


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
  keys = sorted(set(old) | set(new))
  return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
                   for k in keys if old.get(k) != new.get(k))


def _is_engine_folder(path: str) -> bool:
  names = os.listdir(path)
  return bool(names) and len(_grid_io.engine_files(names)) == len(names)


def _own_file(spec: Any, name: str) -> bool:
  extra = tuple(f"{k}.csv" for k in getattr(spec, "EXTRA_TABLES", ()))
  return (name in (RUN_JSON, CSV_NAME, SUMMARY_NAME) + extra
          or (name.endswith(".png") and name.startswith(spec.FIGURE_PREFIXES)))


def open_out_dir(spec: Any, out_dir: str, config: Mapping[str, Any],
                 overwrite: bool) -> None:
  """Accepts a new/empty folder or this run's folder; refuses anything else."""
  what = spec.WHAT
  hint = (f"Pick a new (or empty) out_dir, or pass overwrite=True to discard "
          f"the results in {out_dir!r}.")
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ResultsFolderError(
        f"out_dir {out_dir!r} exists and is not a folder. Pick another out_dir.")
  os.makedirs(out_dir, exist_ok=True)
  names = sorted(os.listdir(out_dir))
  if not names:
    return
  path = os.path.join(out_dir, RUN_JSON)
  if RUN_JSON not in names:
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    raise ResultsFolderError(
        f"out_dir {out_dir!r} is not a {what} results folder: it holds "
        f"files ({shown}) but no {RUN_JSON}. Pick a new (or empty) out_dir; "
        f"files that are not a {what}'s own are never deleted.")
  try:
    with open(path, encoding="utf-8") as f:
      old = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ResultsFolderError(
        f"{path!r} is unreadable ({type(e).__name__}: {e}): {out_dir!r} is "
        f"damaged or not a {what} results folder. Pick a new (or empty) "
        f"out_dir.") from e
  if not isinstance(old, dict) or old.get("format") != spec.FORMAT:
    raise ResultsFolderError(
        f"{path!r} is not the run.json of a {what} ({spec.FORMAT!r}), so "
        f"{out_dir!r} is not a {what} results folder. Pick a new (or empty) "
        f"out_dir.")
  if old.get("format_version", 0) > FORMAT_VERSION:
    raise ResultsFolderError(
        f"{out_dir!r} was written by a newer ftrl_adam (format "
        f"{old.get('format_version')}). Upgrade or pick a new out_dir.")
  new = json.loads(_grid_io.canonical_json(dict(config)))
  if old.get("config") == new and old.get(
      "format_version") == FORMAT_VERSION and not overwrite:
    return                                             # a resume
  if not overwrite:
    changes = _changed(old.get("config") or {}, new) or (
        f"format_version: {old.get('format_version')!r} -> {FORMAT_VERSION}")
    raise ResultsFolderError(
        f"{out_dir!r} holds the results of a different {what} (changed: "
        f"{changes}); they are never mixed. " + hint)
  for n in names:                                      # overwrite: our files
    p = os.path.join(out_dir, n)
    if os.path.isfile(p) and _own_file(spec, n):
      os.remove(p)
    elif (os.path.isdir(p) and n.startswith("grid_")
          and _is_engine_folder(p)):
      shutil.rmtree(p)


def _import_plots() -> dict[str, str]:
  importlib.import_module("ftrl_adam.lab.report.figures")
  return {}


def _write_run_json(spec: Any, path: str, config: Mapping[str, Any],
                    **extra: Any) -> None:
  grid.write_json(path, config=config, extra={
      "format": spec.FORMAT, "format_version": FORMAT_VERSION, **extra})


# ----------------------------------------------------------------------------
# The runner.
# ----------------------------------------------------------------------------

def run_experiment(
    spec: Any,
    *,
    out_dir: Optional[str | os.PathLike] = None,
    progress: bool = True,
    overwrite: bool = False,
    plots: bool = True,
    reproducible: bool = False,
    on_chunk: Optional[Callable[[grid.ChunkInfo], None]] = None,
) -> ExperimentResult:
  """Runs an experiment spec: size check, parts, table, summary, files.

  Args:
    spec: an experiment (from :func:`ftrl_adam.regret.beta_grid` or
      :func:`ftrl_adam.studies.make_study`).
    out_dir: results folder (resumable); nothing is written without it.
    progress: print the size, and progress lines (per chunk, and within long
      chunks) with an ETA over the whole run, to stderr.
    overwrite: discard this experiment's previous files in ``out_dir``.
    plots: write the figures (needs ``out_dir``).
    reproducible: compile with :func:`ftrl_adam.grid.compiler_options`: every
      cell then equals its single run bit for bit whatever the chunking and
      batching (2-3x slower on CPU).  Default:
      :func:`ftrl_adam.grid.fast_compiler_options` (XLA's defaults, LLVM at
      -O2 on CPU); a cell
      equals its single run to float32 rounding, and the same arguments on
      the same device count give identical bytes.  Part of the fingerprint.
    on_chunk: called after each computed chunk (see
      :func:`ftrl_adam.grid.run_grid`); an exception it raises stops the run
      with the finished chunks kept.

  Returns:
    An :class:`ExperimentResult`.

  Raises:
    TooBigError: the experiment cannot fit this machine (nothing written).
    ftrl_adam.grid.ResultsFolderError: an ``out_dir`` that cannot be used.
  """
  if not isinstance(overwrite, bool):
    raise ValueError(f"`overwrite` must be True or False, got {overwrite!r}.")
  if not isinstance(reproducible, bool):
    raise ValueError(
        f"`reproducible` must be True or False, got {reproducible!r}.")
  size = spec.size()
  check_size(size)
  writer = _is_writer()
  if progress and writer:
    print(f"{spec.WHAT}: {size.describe()}", file=sys.stderr, flush=True)
  out = None if out_dir is None else os.fspath(out_dir)
  config = {**spec.config(), "reproducible": reproducible}
  if out is not None:
    error = None
    if writer:
      try:
        open_out_dir(spec, out, config, overwrite)
        _write_run_json(spec, os.path.join(out, RUN_JSON), config,
                        status="running")
      except (ResultsFolderError, OSError) as e:
        error = e
    _agree(error)

  t_start = time.perf_counter()
  parts = spec.parts()
  tables = [p.table() for p in parts]
  works = [p.n_cells * p.work_per_cell for p in parts]
  options = None if reproducible else grid.fast_compiler_options()
  # Trace the parts one by one, each compiled in a thread as soon as it is
  # traced (XLA compiles without the GIL); a part runs once its own program is
  # compiled, while the later ones still compile.
  pool = compiled = None
  if len(parts) > 1:
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=min(len(parts), os.cpu_count() or 1))
    compiled = [pool.submit(grid.compile_ahead(
        p.cell_fn, t, chunk_size=p.chunk_size, group_size=p.group_size,
        compiler_options=options))
                for p, t in zip(parts, tables, strict=True)]
  # Figures in one thread: Matplotlib's import (about 0.5 s) and each part's
  # figures overlap the compilation and the computation of the later parts.
  figures_pool = part_figures = None
  drawing: list[concurrent.futures.Future] = []
  if plots and out is not None and writer:
    figures_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    drawing.append(figures_pool.submit(_import_plots))
    part_figures = getattr(spec, "part_figures", None)
  seconds: dict[str, float] = {"compute": 0.0}
  results = []
  try:
    for i, (part, table) in enumerate(zip(parts, tables, strict=True)):
      if compiled is not None:
        compiled[i].result()
      t0 = time.perf_counter()
      timings: dict[str, float] = {}
      res = grid.run_grid(
          part.cell_fn, table, chunk_size=part.chunk_size,
          out_dir=None if out is None else os.path.join(out, f"grid_{part.name}"),
          config=part.config, progress=progress, overwrite=overwrite,
          on_chunk=on_chunk,
          compiler_options=options,
          group_size=part.group_size,
          progress_label=f"{spec.WHAT} {part.name} ({i + 1}/{len(parts)})",
          work_per_cell=part.work_per_cell, work_after=sum(works[i + 1:]),
          timings=timings)
      seconds[part.name] = time.perf_counter() - t0
      seconds["compute"] += timings.get("compute", 0.0)
      results.append((part, res))
      if part_figures is not None:
        drawing.append(figures_pool.submit(part_figures, part, res, out))
  except BaseException:
    if pool is not None:
      pool.shutdown(wait=False, cancel_futures=True)
    if figures_pool is not None:   # no figure written after we return
      figures_pool.shutdown(wait=True, cancel_futures=True)
    if out is not None and writer:
      try:
        _write_run_json(spec, os.path.join(out, RUN_JSON), config,
                        status="interrupted",
                        note="run the same command again to resume")
      except OSError:
        pass
    raise
  if pool is not None:
    pool.shutdown()
  table = spec.assemble(results)
  extra = spec.extra_tables(table)
  summary = spec.summarize(table, extra)
  seconds["wall"] = time.perf_counter() - t_start
  result = ExperimentResult(spec=spec, table=table, extra=extra,
                            summary=summary, seconds=seconds, files={})
  if out is not None and writer:
    files = result.files
    files["csv"] = os.path.join(out, CSV_NAME)
    grid.write_csv(table, files["csv"], columns=spec.csv_columns(table))
    for name, t in extra.items():
      files[name] = os.path.join(out, f"{name}.csv")
      grid.write_csv(t, files[name])
    if plots:
      # The rest of the figures while the thread finishes the last part's.
      rest = (spec.figures(result, out, drawn=[p.name for p, _ in results])
              if part_figures is not None else spec.figures(result, out))
      for future in drawing:
        files.update(future.result() or {})
      figures_pool.shutdown()
      files.update(rest)
    files["summary"] = os.path.join(out, SUMMARY_NAME)
    _store.atomic_write_text(files["summary"], result.text + "\n")
    files["json"] = os.path.join(out, RUN_JSON)
    _write_run_json(
        spec, files["json"], config, status="complete",
        size=dataclasses.asdict(size), seconds=seconds,
        files={k: os.path.basename(v) for k, v in files.items()},
        summary=summary)
  return result


def result_seconds_line(result: ExperimentResult) -> str:
  """'in 3.2 s (compute 2.9 s over all runs)' for summaries."""
  s = result.seconds
  return (f"{s.get('wall', 0.0):.1f} s (compute {s.get('compute', 0.0):.1f} s "
          f"summed over every run that contributed chunks)")


def concat(tables: Sequence[Mapping[str, np.ndarray]],
           columns: Sequence[str]) -> dict[str, np.ndarray]:
  """Rows of several tables with the same columns, in order."""
  return {k: np.concatenate([np.asarray(t[k]) for t in tables])
          for k in columns}
