"""The experiment runner: one results folder, one resume protocol, every experiment.

An *experiment* (:class:`ftrl_adam.lab.protocol.Experiment`: the beta-grid
of :func:`ftrl_adam.regret.beta_grid`, a training study of
:func:`ftrl_adam.studies.make_study`) owns its options and checks and
answers the runner's questions with data; :func:`run_experiment` runs any of
them the same way, calling the experiment in one direction only:

1. **Size first.**  ``spec.size()`` states the work before anything is
   allocated; what cannot fit this machine is refused with a one-line
   :class:`TooBigError` naming the options to change, and nothing is written.
2. **Parts.**  ``spec.parts(done)`` returns the compiled programs to run next
   (the beta-grid: one per adversary, all at once); each is traced, compiled
   in a thread while the previous one runs, and run through
   :func:`ftrl_adam.grid.run_grid` into ``out_dir/grid_<part>/`` (chunks
   written atomically, resumed on the next identical call).  The runner asks
   again with the parts done until the experiment has no more.
3. **Results, then pictures.**  ``spec.assemble`` joins the parts into one
   tidy table; ``results.csv``, the extra tables, ``summary.txt`` and
   ``run.json`` are written; only then are the figures the experiment
   describes (``spec.figures``: :class:`ftrl_adam.lab.protocol.Heatmap` data)
   drawn by :mod:`ftrl_adam.lab.report.figures`, on this thread, from the
   tables just written.

The results folder::

    out_dir/
      run.json          the spec's configuration, versions, status, timings
      results.csv       one row per cell, every setting a column
      <extra>.csv       derived tables (a study's tuned.csv)
      summary.txt       what the command prints
      *.png             the figures
      grid_<part>/      the engine's manifest and chunk files

The run holds the folder's lock (``out_dir/.lock``, ``ftrl_adam._store``)
from before anything is written or deleted until it returns; a second run on
the folder is refused with one line naming the holder's pid, and the OS
releases the lock of a process that dies.  ``run.json`` is written first
(``"status": "running"`` and the pid), then at the end (``"complete"``, with
the wall time of this call and the compute time summed over every call that
contributed chunks); an interrupted call leaves ``"interrupted"`` and the
finished chunks.  A run killed (or stopped by a full disk) leaves
``"running"`` with no process holding the folder: :func:`run_status` tells
it from a live run, and the next call resumes it and says so.  A folder of
another experiment or configuration is refused
(:class:`ftrl_adam.grid.ResultsFolderError`), never mixed.  Calling again on a complete folder computes nothing and, unless
``redraw``, draws only the figures that are missing.
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
from ftrl_adam.lab import engine
from ftrl_adam.lab.engine import _folder
from ftrl_adam.lab.engine import devices as _devices
from ftrl_adam.lab.engine._folder import ResultsFolderError
from ftrl_adam.lab.protocol import Experiment
from ftrl_adam.lab.protocol import Part
from ftrl_adam.lab.protocol import Result
from ftrl_adam.lab.protocol import Size
from ftrl_adam.lab.protocol import Table
from ftrl_adam.lab.protocol import format_bytes

RUN_JSON = "run.json"
CSV_NAME = "results.csv"
SUMMARY_NAME = "summary.txt"
# 4: the folders on ftrl_adam._store (a writer lock, chunks bound to their
#    role and SHA-256: the engine's results format 3), run.json's pid;
# 3: figures listed in run.json; the engine's fingerprints hold the device
#    count.
FORMAT_VERSION = 4

# Host memory a results table may take, as a fraction of what is available.
_HOST_FRACTION = 0.5


class TooBigError(ValueError):
  """An experiment that cannot fit this machine (refused before allocating)."""


def check_size(size: Size) -> None:
  """Raises :class:`TooBigError` when the experiment cannot fit this machine."""
  host, dev = _devices.available_memory(), _devices.device_memory()
  if size.host_bytes > _HOST_FRACTION * host:
    raise TooBigError(
        f"too big for this machine: {size.cells:,} cells need about "
        f"{format_bytes(size.host_bytes)} of host memory for the results (available: "
        f"{format_bytes(host)}); {size.too_big_hint}. Nothing was written.")
  if size.chunk_bytes > _HOST_FRACTION * dev:
    raise TooBigError(
        f"too big for this machine: one chunk needs about "
        f"{format_bytes(size.chunk_bytes)} of device memory (available: "
        f"{format_bytes(dev)}); lower `chunk_size`. Nothing was written.")


# ----------------------------------------------------------------------------
# The results folder.
# ----------------------------------------------------------------------------

def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
  """What differs between two configs: `key`: old -> new (for a dict, the
  entries that differ), numbers stored from float32 shown as float32."""
  out = []
  for k in sorted(set(old) | set(new)):
    a, b = old.get(k), new.get(k)
    if a == b:
      continue
    if isinstance(a, dict) and isinstance(b, dict):
      inner = "; ".join(f"{s}: {_shown(a.get(s))} -> {_shown(b.get(s))}"
                        for s in sorted(set(a) | set(b)) if a.get(s) != b.get(s))
      out.append(f"{k} ({inner})")   # not an option: no flag for it
    else:
      out.append(f"`{k}`: {_shown(a)} -> {_shown(b)}")
  return ", ".join(out)


def _shown(x: Any) -> str:
  """A config value as a person reads it: 0.9, not 0.8999999761581421."""
  if isinstance(x, float) and np.isfinite(x) and float(np.float32(x)) == x:
    return str(np.float32(x))
  if isinstance(x, (list, tuple)):
    return "[" + ", ".join(_shown(v) for v in x) + "]"
  if isinstance(x, dict):
    return "{" + ", ".join(f"{k!r}: {_shown(v)}" for k, v in x.items()) + "}"
  return repr(x)


def _is_engine_folder(path: str) -> bool:
  names = os.listdir(path)
  return bool(names) and len(_folder.engine_files(names)) == len(names)


def _own_file(spec: Any, name: str) -> bool:
  extra = tuple(f"{k}.csv" for k in getattr(spec, "EXTRA_TABLES", ()))
  return (name in (RUN_JSON, CSV_NAME, SUMMARY_NAME) + extra
          or (name.endswith(".png") and name.startswith(spec.FIGURE_PREFIXES)))


def _check_out_dir(spec: Any, out_dir: str, config: Mapping[str, Any],
                   overwrite: bool) -> Optional[dict]:
  """Refuses a folder that is not this experiment's (reads only); returns
  its run.json (None for a new or empty folder)."""
  what = spec.WHAT
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ResultsFolderError(
        f"out_dir {out_dir!r} exists and is not a folder. Pick another out_dir.")
  names = sorted(n for n in os.listdir(out_dir) if not n.startswith(".")) if (
      os.path.isdir(out_dir)) else []
  if not names:
    return None
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
        f"out_dir.") from None
  if not isinstance(old, dict) or old.get("format") != spec.FORMAT:
    raise ResultsFolderError(
        f"{path!r} is not the run.json of a {what} ({spec.FORMAT!r}), so "
        f"{out_dir!r} is not a {what} results folder. Pick a new (or empty) "
        f"out_dir.")
  if old.get("format_version", 0) > FORMAT_VERSION:
    raise ResultsFolderError(
        f"{out_dir!r} was written by a newer ftrl_adam (format "
        f"{old.get('format_version')}). Upgrade or pick a new out_dir.")
  hint = (f"Pick a new (or empty) out_dir, or pass overwrite=True to discard "
          f"the results in {out_dir!r}.")
  if old.get("format_version", 0) < FORMAT_VERSION and not overwrite:
    raise ResultsFolderError(
        f"{out_dir!r} was written by an earlier ftrl_adam (results format "
        f"{old.get('format_version')}; this version writes format "
        f"{FORMAT_VERSION}, whose chunks carry content digests and whose "
        f"fingerprints hold the device count): its chunks cannot be verified, "
        f"so it is not resumed. " + hint)
  new = json.loads(_folder.canonical_json(dict(config)))
  if not overwrite and (old.get("config") != new
                        or old.get("format_version") != FORMAT_VERSION):
    changes = _changed(old.get("config") or {}, new) or (
        f"format_version: {old.get('format_version')!r} -> {FORMAT_VERSION}")
    raise ResultsFolderError(
        f"{out_dir!r} holds the results of a different {what} (changed: "
        f"{changes}); they are never mixed. To resume it, give the values "
        f"it was run with; or " + hint[0].lower() + hint[1:])
  return old


def _refuse_linked_parts(spec: Any, out_dir: str, overwrite: bool) -> None:
  """A ``grid_*`` entry that is a symbolic link is not a folder this
  experiment wrote: never resumed (written through) nor deleted."""
  for n in sorted(os.listdir(out_dir)):
    p = os.path.join(out_dir, n)
    if n.startswith("grid_") and os.path.islink(p):
      what = ("so overwrite=True does not delete it" if overwrite else
              "so its chunks are neither trusted nor written through it")
      raise ResultsFolderError(
          f"{p!r} is a symbolic link, not a folder the {spec.WHAT} wrote, "
          f"{what}: remove the link yourself, or pick a new (or empty) "
          "out_dir.")


def _clear(spec: Any, out_dir: str) -> None:
  """overwrite: deletes the experiment's own files and engine folders."""
  for n in sorted(os.listdir(out_dir)):
    p = os.path.join(out_dir, n)
    if os.path.isfile(p) and _own_file(spec, n):
      os.remove(p)
    elif os.path.isdir(p) and n.startswith("grid_") and _is_engine_folder(p):
      shutil.rmtree(p)


def open_out_dir(spec: Any, out_dir: str, config: Mapping[str, Any],
                 overwrite: bool) -> tuple[_store.FolderLock, Optional[dict]]:
  """Takes ``out_dir`` for this run: its lock (held by the returned lock
  until released), then accepts a new/empty folder or this run's folder
  (with ``overwrite``, after deleting this experiment's own files), and
  refuses anything else.  Returns the lock and the old run.json (or None).

  Raises:
    ftrl_adam.grid.ResultsFolderError: a folder that is not this run's, or
      one another live run holds (the message names its pid).
  """
  try:
    lock = _store.FolderLock(
        out_dir, f"{spec.WHAT} results folder",
        check=lambda: _check_out_dir(spec, out_dir, config, overwrite))
  except _store.StoreError as e:
    raise e if isinstance(e, ResultsFolderError) else ResultsFolderError(
        str(e)) from None
  try:
    old = _check_out_dir(spec, out_dir, config, overwrite)
    if old is not None:
      _refuse_linked_parts(spec, out_dir, overwrite)
    if overwrite and old is not None:
      _clear(spec, out_dir)
  except BaseException:
    lock.release()
    raise
  return lock, old


def run_status(out_dir: str | os.PathLike) -> str:
  """How the run in ``out_dir`` stands, from its run.json and its lock.

  Returns:
    ``"complete"``, ``"interrupted"`` (stopped by an error or Ctrl-C, with
    its finished chunks kept), ``"running (pid N)"`` (a live process holds
    the folder), ``"stopped without finishing"`` (run.json says running but
    no process holds the folder: killed, or its disk full), or
    ``"no run"``.
  """
  out = os.fspath(out_dir)
  status = _read_run_json(out).get("status")
  if status != "running":
    return status or "no run"
  pid = _store.holder(out)
  return "stopped without finishing" if pid is None else f"running (pid {pid})"


def _write_run_json(spec: Experiment, path: str, config: Mapping[str, Any],
                    **extra: Any) -> None:
  engine.write_json(path, config=config, extra={
      "format": spec.FORMAT, "format_version": FORMAT_VERSION, **extra})


def _read_run_json(out: str) -> dict[str, Any]:
  try:
    with open(os.path.join(out, RUN_JSON), encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


# ----------------------------------------------------------------------------
# The runner.
# ----------------------------------------------------------------------------

def _run_parts(spec: Experiment, out: Optional[str], *, progress: bool,
               overwrite: bool, options: Optional[Mapping[str, Any]],
               on_chunk: Optional[Callable[[engine.ChunkInfo], None]],
               plots: bool, seconds: dict[str, float]
               ) -> tuple[list[tuple[Part, Table]], int]:
  """Runs the spec's parts until it has no more: the parts done, cells computed.

  Each batch of parts is traced in order, compiled in threads (XLA compiles
  without the GIL), and run in order as soon as its own program is ready.
  """
  done: list[tuple[Part, Table]] = []
  computed = 0
  writer = jax.process_index() == 0
  parts = list(spec.parts(done))
  with concurrent.futures.ThreadPoolExecutor(
      max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
    while parts:
      tables = [p.table() for p in parts]
      works = [p.n_cells * p.work_per_cell for p in parts] + list(
          parts[-1].later)
      programs = []
      for i, (part, table) in enumerate(zip(parts, tables, strict=True)):
        number = f"{len(done) + i + 1}/{len(done) + len(works)}"
        bar = engine.Progress(
            enabled=progress and writer,
            label=f"{spec.WHAT} {part.name} ({number})",
            work_per_cell=part.work_per_cell, work_after=sum(works[i + 1:]))
        program = engine.compile_ahead(
            part.cell_fn, table, chunk_size=part.chunk_size,
            group_size=part.group_size, compiler_options=options, progress=bar)
        # A part whose chunks are all on disk compiles only if one turns out
        # missing (run_grid compiles what it needs).
        finished = out is not None and _folder.chunks_listed(os.path.join(
            out, f"grid_{part.name}")) >= program.layout.n_chunks
        programs.append((program, None if finished
                         else pool.submit(program.compile)))
      if plots and out is not None and writer:
        # Matplotlib's import (0.5 s) here, on this thread, while XLA compiles.
        importlib.import_module("ftrl_adam.lab.report.figures")
      for part, table, (program, compiling) in zip(parts, tables, programs,
                                                    strict=True):
        if compiling is not None:
          compiling.result()
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        res = engine.run_grid(
            part.cell_fn, table, chunk_size=part.chunk_size,
            out_dir=None if out is None else os.path.join(out, f"grid_{part.name}"),
            config=part.config, overwrite=overwrite, on_chunk=on_chunk,
            group_size=part.group_size, program=program, timings=timings)
        seconds[part.name] = time.perf_counter() - t0
        seconds["compute"] += timings["compute"]
        computed += int(timings["computed_cells"])
        done.append((part, res))
      parts = list(spec.parts(done))
  return done, computed


def run_experiment(
    spec: Experiment,
    *,
    out_dir: Optional[str | os.PathLike] = None,
    progress: bool = True,
    overwrite: bool = False,
    plots: bool = True,
    redraw: bool = False,
    reproducible: bool = False,
    on_chunk: Optional[Callable[[engine.ChunkInfo], None]] = None,
) -> Result:
  """Runs an experiment: size check, parts, table, summary, files, then figures.

  Args:
    spec: an experiment (from :func:`ftrl_adam.regret.beta_grid` or
      :func:`ftrl_adam.studies.make_study`).
    out_dir: results folder (resumable); nothing is written without it.
    progress: print the size, and progress lines (per chunk, and within long
      chunks) with an ETA over the whole run, to stderr.
    overwrite: discard this experiment's previous files in ``out_dir``.
    plots: draw the figures (needs ``out_dir``).
    redraw: draw every figure again even if it is on disk (by default a
      call that computed nothing draws only the missing ones).
    reproducible: compile with :func:`ftrl_adam.grid.compiler_options`: every
      cell then equals its single run bit for bit whatever the chunking and
      batching (2-3x slower on CPU).  Default:
      :func:`ftrl_adam.grid.fast_compiler_options` (XLA's defaults, LLVM at
      -O2 on CPU); a cell equals its single run to float32 rounding, and the
      same arguments on the same device count give identical bytes.  Part of
      the fingerprint.
    on_chunk: called after each computed chunk (see
      :func:`ftrl_adam.grid.run_grid`); an exception it raises stops the run
      with the finished chunks kept.

  Returns:
    A :class:`~ftrl_adam.lab.protocol.Result`.

  Raises:
    TooBigError: the experiment cannot fit this machine (nothing written).
    ftrl_adam.grid.ResultsFolderError: an ``out_dir`` that cannot be used.
  """
  for name, flag in (("overwrite", overwrite), ("reproducible", reproducible),
                     ("redraw", redraw)):
    if not isinstance(flag, bool):
      raise ValueError(f"`{name}` must be True or False, got {flag!r}.")
  size = spec.size()
  check_size(size)
  writer = jax.process_index() == 0
  if progress and writer:
    print(f"{spec.WHAT}: {size.describe()}", file=sys.stderr, flush=True)
  out = None if out_dir is None else os.fspath(out_dir)
  config = {**spec.config(), "reproducible": reproducible}
  old_figures, lock, previous, finished = [], None, {}, None
  old_bytes = None
  if out is not None:
    error = None
    if writer:
      try:
        lock, old = open_out_dir(spec, out, config, overwrite)
        old_json = _read_run_json(out)
        old_bytes = _read_bytes(os.path.join(out, RUN_JSON))
        old_figures = old_json.get("figures") or []
        if old_json.get("status") == "complete" and not overwrite:
          finished = _finished_files(out, old_json)
        previous = _previous(spec, out, None if overwrite else old, progress)
        _write_run_json(spec, os.path.join(out, RUN_JSON), config,
                        status="running", pid=os.getpid(), **previous)
      except (ResultsFolderError, OSError) as e:
        error = e
        if lock is not None:
          lock.release()
    _devices.agree(error, "it refused the results folder")
  try:
    return _run(spec, out, config, size, old_figures, previous, finished,
                old_bytes, progress=progress, overwrite=overwrite, plots=plots,
                redraw=redraw, reproducible=reproducible, on_chunk=on_chunk)
  finally:
    if lock is not None:
      lock.release()


def _previous(spec: Experiment, out: str, old: Optional[dict],
              progress: bool) -> dict[str, str]:
  """What run.json says of the run before this one, when it did not finish."""
  if not old or old.get("status") not in ("running", "interrupted"):
    return {}
  # This process holds the folder now, so a run.json still "running" was
  # left by a run that died (killed, or its disk full) before saying so.
  how = ("stopped without finishing (killed, or its disk full)"
         if old["status"] == "running" else "interrupted")
  if progress:
    said = "was interrupted" if how == "interrupted" else how
    print(f"{spec.WHAT}: resuming {out}: the previous run {said}.",
          file=sys.stderr, flush=True)
  return {"previous_run": how}


def _read_bytes(path: str) -> Optional[bytes]:
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError:
    return None


def _finished_files(out: str, old_json: Mapping[str, Any]
                    ) -> Optional[dict[str, bytes]]:
  """A finished run's result files and their bytes (None if one is missing)."""
  files = {}
  for name in list(old_json.get("files") or []) + [RUN_JSON]:
    try:
      with open(os.path.join(out, os.path.basename(name)), "rb") as f:
        files[os.path.basename(name)] = f.read()
    except OSError:
      return None
  return files


def _run(spec: Experiment, out: Optional[str], config: Mapping[str, Any],
         size: Size, old_figures: Sequence[str], previous: Mapping[str, str],
         finished: Optional[Mapping[str, bytes]],
         old_bytes: Optional[bytes], *, progress: bool,
         overwrite: bool, plots: bool, redraw: bool, reproducible: bool,
         on_chunk: Optional[Callable[[engine.ChunkInfo], None]]) -> Result:
  """The run after the folder is taken: parts, tables, files, figures."""
  writer = jax.process_index() == 0
  t_start = time.perf_counter()
  options = engine.compiler_options() if reproducible else \
      engine.fast_compiler_options()
  seconds: dict[str, float] = {"compute": 0.0}
  try:
    done, computed = _run_parts(
        spec, out, progress=progress, overwrite=overwrite, options=options,
        on_chunk=on_chunk, plots=plots, seconds=seconds)
  except BaseException as e:
    if out is not None and writer:
      try:
        if isinstance(e, ResultsFolderError) and old_bytes is not None:
          # Refused (e.g. chunks of another device count): the folder's
          # run.json says again what it said before this run looked at it.
          _store.atomic_write(os.path.join(out, RUN_JSON), old_bytes)
        else:
          _write_run_json(spec, os.path.join(out, RUN_JSON), config,
                          status="interrupted",
                          note="run the same command again to resume")
      except OSError:
        pass
    raise
  table = spec.assemble(done)
  extra = spec.extra_tables(table)
  summary = spec.summarize(table, extra)
  seconds["wall"] = time.perf_counter() - t_start
  result = Result(spec=spec, table=table, extra=extra, summary=summary,
                  seconds=seconds, files={}, computed=computed)
  result = dataclasses.replace(result, text=spec.format_summary(result))
  if out is not None and writer:
    if computed == 0 and finished:
      # A finished folder with nothing computed: its files stay as the run
      # that made them wrote them (run.json back from "running").
      _store.atomic_write(os.path.join(out, RUN_JSON), finished[RUN_JSON])
    else:
      _write_results(spec, result, out, config, size, previous)
    if plots:
      _draw(spec, result, out, redraw or computed > 0, old_figures)
  return result


def _write_results(spec: Experiment, result: Result, out: str,
                   config: Mapping[str, Any], size: Size,
                   previous: Mapping[str, str]) -> None:
  """results.csv, the extra tables, summary.txt and run.json (complete)."""
  files = result.files
  files["csv"] = os.path.join(out, CSV_NAME)
  engine.write_csv(result.table, files["csv"],
                   columns=spec.csv_columns(result.table))
  for name, t in result.extra.items():
    files[name] = os.path.join(out, f"{name}.csv")
    engine.write_csv(t, files[name])
  files["summary"] = os.path.join(out, SUMMARY_NAME)
  _store.atomic_write_text(files["summary"], result.text + "\n")
  files["json"] = os.path.join(out, RUN_JSON)
  figures = [f"{h.name}.png" for h in spec.figures(result)]
  _write_run_json(
      spec, files["json"], config, status="complete",
      size=dataclasses.asdict(size), seconds=result.seconds,
      files=sorted(os.path.basename(v) for v in files.values()),
      figures=figures, summary=result.summary, **previous)


def _draw(spec: Experiment, result: Result, out: str, everything: bool,
          old_figures: Sequence[str]) -> None:
  """The figures, from the tables just written, on this thread."""
  from ftrl_adam.lab.report import figures  # pylint: disable=import-outside-toplevel
  wanted = list(spec.figures(result))
  if not everything:   # a finished folder: only what is missing
    wanted = [h for h in wanted if f"{h.name}.png" not in old_figures
              or not os.path.exists(os.path.join(out, f"{h.name}.png"))]
  tables = {"results": result.table, **result.extra}
  result.files.update(figures.draw(wanted, tables, out))
