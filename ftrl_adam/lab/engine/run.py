"""Running a grid: chunks of a table through one program, resumable (run_grid)."""

from __future__ import annotations

import functools
import json
import os
import time
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import jax
import numpy as np

from ftrl_adam.lab.engine import _folder
from ftrl_adam.lab.engine import devices as _devices
from ftrl_adam.lab.engine import files as _files
from ftrl_adam.lab.engine.program import CellFn
from ftrl_adam.lab.engine.program import Layout
from ftrl_adam.lab.engine.program import Program
from ftrl_adam.lab.engine.progress import Progress
from ftrl_adam.lab.engine.progress import ctrl_c_outside_callbacks
from ftrl_adam.lab.engine.progress import ctrl_c_stops_chunks
from ftrl_adam.lab.engine.tables import Table
from ftrl_adam.lab.engine.tables import canonical_table
from ftrl_adam.lab.engine.tables import n_rows
from ftrl_adam.lab.identity import code_digest

Outputs = Mapping[str, tuple[tuple[int, ...], np.dtype]]


class ChunkInfo(NamedTuple):
  """What :func:`run_grid` passes to ``on_chunk`` after computing a chunk.

  Attributes:
    index: chunk number, from 0.
    start: the chunk's first row in the table.
    stop: one past the chunk's last row (rows ``start:stop``).
    n_chunks: number of chunks of the run.
    seconds: wall time from dispatch to results on the host (and on disk).
  """

  index: int
  start: int
  stop: int
  n_chunks: int
  seconds: float


def _manifest(program: Program, table: Table, n: int, config: Any
              ) -> dict[str, Any]:
  """The results folder's manifest: the fingerprint of everything that
  decides the bits of a result, and the chunk layout."""
  lay = program.layout
  parts = {
      "format_version": _folder.FORMAT_VERSION,
      "versions": _files.fingerprint_versions(),
      "config": config if config is not None else {},
      "n_cells": n,
      "columns": [[k, v.dtype.str, list(v.shape[1:])] for k, v in table.items()],
      "table_digest": _folder.table_digest(table),
      "outputs": [[k, list(s), d.str] for k, (s, d) in program.outputs.items()],
      "compiler_options": program.options,
      "group_size": program.group_size,
      # What cell_fn computes with: its code, closure values and the module
      # values it reads, so that changed code never resumes old chunks.
      "code": code_digest(program.cell_fn),
      # Without the reproducible options XLA's choices (and the last bits)
      # depend on how many cells share a device: a resume must see as many.
      "device_count": (None if _devices.is_reproducible(program.options)
                       else lay.n_devices),
  }
  parts = json.loads(_folder.canonical_json(parts))   # as read back
  return {"format": _folder.FORMAT, **parts,
          "fingerprint": _folder.fingerprint(parts),
          "chunk_size": lay.chunk, "n_chunks": lay.n_chunks,
          "created": datetime.now(timezone.utc).isoformat(),
          "device_count_at_creation": lay.n_devices}


def _resume(out_dir: Optional[str], manifest: Optional[Mapping[str, Any]],
            overwrite: bool, lay: Layout, n: int, outputs: Outputs
            ) -> tuple[dict[int, tuple[dict[str, np.ndarray], float]],
                       Optional[_folder.ResultsFolder]]:
  """Takes out_dir on process 0 (its lock, held by the returned folder until
  closed); the finished chunks, on every process."""
  if out_dir is None:
    return {}, None
  done, error, folder = {}, None, None
  if jax.process_index() == 0:
    try:
      folder = _folder.open_folder(out_dir, manifest, overwrite=overwrite)
      for i in folder.finished():
        done[i] = folder.load_chunk(i, *lay.rows(i, n), outputs)
    except Exception as e:  # pylint: disable=broad-except  # agreed below
      error = e
      if folder is not None:
        folder.close()
  _devices.agree(error, f"it refused out_dir {out_dir!r}")
  if jax.process_count() == 1:
    return done, folder
  # Every process runs the chunks process 0 did not find.
  mask = np.zeros(lay.n_chunks, np.int32)
  mask[list(done)] = 1
  secs = np.zeros(lay.n_chunks, np.float64)
  full = {k: np.zeros((n,) + s, d) for k, (s, d) in outputs.items()}
  for i, (arrs, sec) in done.items():
    secs[i] = sec
    start, stop = lay.rows(i, n)
    for k in full:
      full[k][start:stop] = arrs[k]
  mask, full, secs = _devices.broadcast((mask, full, secs))
  return {i: ({k: v[slice(*lay.rows(i, n))] for k, v in full.items()},
              float(secs[i]))
          for i in np.flatnonzero(mask).tolist()}, folder


def _slice(host: np.ndarray, index: Any) -> np.ndarray:
  return host[index]


def _chunk_inputs(program: Program, table: Table, start: int, stop: int
                  ) -> dict[str, jax.Array]:
  """The rows ``start:stop`` padded to the program's shape, on the devices.

  Padding repeats the last group (the last cell without groups).
  """
  lay = program.layout
  gs = lay.group
  rows = np.arange(start, start + lay.padded * gs)
  last = stop - gs + (rows - start) % gs if gs > 1 else stop - 1
  rows = np.where(rows < stop, rows, last)
  out = {}
  for k, v in table.items():
    shape = program.shape + v.shape[1:]
    out[k] = jax.make_array_from_callback(
        shape, lay.sharding, functools.partial(_slice, v[rows].reshape(shape)))
  return out


def _check_program(program: Program, cell_fn: CellFn, table: Table,
                   chunk_size: int, group_size: Optional[int]) -> None:
  if program.cell_fn is not cell_fn or program.group_size != group_size:
    raise ValueError("`program` was built for another `cell_fn` or "
                     "`group_size`.")
  program.check_table(table)
  want = program.layout
  got = min(max(want.group, int(chunk_size) // want.group * want.group),
            n_rows(table))
  if got != want.chunk:
    raise ValueError(f"`program` was built for chunks of {want.chunk} rows, "
                     f"not {got}.")


class _Run:
  """One call of :func:`run_grid`: the results, the counts, the chunks' I/O."""

  def __init__(self, program: Program, n: int, out_dir: Optional[str],
               manifest: Optional[Mapping[str, Any]],
               on_chunk: Optional[Callable[[ChunkInfo], None]]):
    self.program, self.n, self.out_dir = program, n, out_dir
    self.manifest, self.on_chunk = manifest, on_chunk
    self.bar = program.progress or Progress(enabled=False)
    self.results = {k: np.empty((n,) + s, d)
                    for k, (s, d) in program.outputs.items()}
    self.seconds = {"compute": 0.0, "trace": program.trace_seconds,
                    "compile": 0.0, "computed_cells": 0}
    self.chunks_done = self.cells_done = 0
    self._last = 0.0   # when the previous chunk's results reached the host
    self.folder: Optional[_folder.ResultsFolder] = None   # process 0's

  def _store(self, start: int, stop: int, arrays: Mapping[str, np.ndarray]
             ) -> None:
    for k in self.results:
      self.results[k][start:stop] = arrays[k]
    self.chunks_done += 1
    self.cells_done += stop - start

  def start(self, done: Mapping[int, tuple[dict[str, np.ndarray], float]]
            ) -> None:
    """Takes the chunks found on disk, compiles if anything is left."""
    lay = self.program.layout
    for i, (arrays, secs) in done.items():
      self._store(*lay.rows(i, self.n), arrays)
      self.seconds["compute"] += secs
    if len(done) < lay.n_chunks:
      self.program.compile()
    self.seconds["compile"] = self.program.compile_seconds or 0.0
    self.bar.start(n_cells=self.n, n_chunks=lay.n_chunks,
                   chunks_done=self.chunks_done, cells_done=self.cells_done,
                   n_devices=lay.n_devices, padded=lay.padded * lay.group,
                   trace_s=self.seconds["trace"],
                   compile_s=self.seconds["compile"], out_dir=self.out_dir)

  def chunks(self, table: Table, done: Mapping[int, Any]) -> None:
    """Runs the chunks not done; the next is dispatched before this one is read."""
    lay = self.program.layout
    todo = [i for i in range(lay.n_chunks) if i not in done]
    if not todo:      # every chunk on disk: nothing to compile
      return
    compiled = self.program.compile()
    with ctrl_c_stops_chunks(self.bar):
      self._run_chunks(table, todo, compiled)

  def _run_chunks(self, table: Table, todo: Sequence[int], compiled: Any
                  ) -> None:
    lay, flight = self.program.layout, []
    try:
      for i in todo:
        start, stop = lay.rows(i, self.n)
        inputs = _chunk_inputs(self.program, table, start, stop)
        self.bar.chunk_started(stop - start)
        flight.append((i, start, stop, compiled(inputs), time.perf_counter()))
        if len(flight) == 2:
          self._finish(*flight[0])
          flight.pop(0)
      if flight:
        self._finish(*flight[0])
    except (jax.errors.JaxRuntimeError, KeyboardInterrupt) as e:
      # A Ctrl-C inside a progress callback reaches here as XLA's error
      # around the callback's traceback: it is the Ctrl-C.
      if not (isinstance(e, KeyboardInterrupt) or self.bar.interrupted
              or "KeyboardInterrupt" in str(e)):
        raise
      self.bar.interrupted = True
      if self.bar.reports_rounds:
        self._stop_in_flight(flight)
      raise KeyboardInterrupt from None

  def _stop_in_flight(self, flight: Sequence[Any]) -> None:
    """After a Ctrl-C: waits for the chunks in flight, which stop at their
    next progress callback, so that no program is left running.  A second
    Ctrl-C meanwhile (one re-sent out of a gc callback) is the same Ctrl-C."""
    for item in flight:
      try:
        jax.block_until_ready(item[3])
      except (jax.errors.JaxRuntimeError, KeyboardInterrupt):
        pass
    sharding = self.program.layout.sharding
    if sharding.is_fully_addressable:
      try:
        _callback_errors_cleared(sharding)
      except (Exception, KeyboardInterrupt):  # pylint: disable=broad-except
        pass    # at worst JAX prints the stopped program's error at exit

  def _finish(self, i: int, start: int, stop: int, out: Any, t0: float
              ) -> None:
    self._save(i, start, stop, out, t0)
    if self.bar.interrupted:     # a Ctrl-C kept by a progress callback
      raise KeyboardInterrupt

  def _save(self, i: int, start: int, stop: int, out: Any, t0: float
            ) -> None:
    outputs = self.program.outputs
    host = {k: _devices.to_host(v).reshape((-1,) + outputs[k][0])[:stop - start]
            for k, v in out.items()}
    # Chunks overlap (the next is dispatched before this one is fetched):
    # count each second once.
    now = time.perf_counter()
    secs = now - max(t0, self._last)
    self._last = now
    self.seconds["compute"] += secs
    self.seconds["computed_cells"] += stop - start
    if self.folder is not None:
      self.folder.save_chunk(i, start, stop, host, secs)
    self._store(start, stop, host)
    self.bar.update(chunks_done=self.chunks_done, cells_done=self.cells_done)
    if self.on_chunk is not None:
      self.on_chunk(ChunkInfo(i, start, stop, self.program.layout.n_chunks,
                              secs))


def _nothing() -> None:
  pass


@jax.jit
def _a_callback(x: jax.Array) -> jax.Array:
  jax.debug.callback(_nothing)
  return x


def _callback_errors_cleared(sharding: Any) -> None:
  """After programs stopped by a Ctrl-C in their progress callback.

  JAX keeps, per device, the completion of the last program with a host
  callback, and waits on it at exit: a stopped program's error was printed
  there as two ignored exceptions.  A program with a callback that does
  nothing, on the same devices, takes its place.
  """
  x = jax.device_put(np.zeros(sharding.mesh.devices.size, np.float32),
                     sharding)
  jax.block_until_ready(_a_callback(x))


@ctrl_c_outside_callbacks()
def run_grid(
    cell_fn: CellFn,
    table: Mapping[str, Any],
    *,
    chunk_size: int,
    out_dir: Optional[str | os.PathLike] = None,
    config: Optional[Mapping[str, Any]] = None,
    progress: bool | Progress = True,
    overwrite: bool = False,
    on_chunk: Optional[Callable[[ChunkInfo], None]] = None,
    compiler_options: Optional[Mapping[str, Any]] = None,
    group_size: Optional[int] = None,
    progress_label: str = "grid",
    work_per_cell: float = 1.0,
    work_after: float = 0.0,
    timings: Optional[dict[str, float]] = None,
    devices: Optional[Sequence[Any]] = None,
    program: Optional[Program] = None,
) -> Table:
  """Runs a pure per-cell JAX function over every cell of a table.

  ``jax.vmap(cell_fn)`` is traced and compiled once for a chunk of
  ``P = n_devices * max(MIN_CELLS_PER_DEVICE, ceil(chunk_size / n_devices))``
  cells whose cell axis is sharded over ``Mesh(jax.devices(), ("cells",))``
  (a :class:`Program`); each chunk of ``chunk_size`` table rows is padded to
  ``P`` by repeating its last cell, run, gathered to the host and unpadded.
  The next chunk is dispatched before the previous one is fetched, so the
  host work overlaps the device work.  A Ctrl-C stops it with
  ``KeyboardInterrupt`` (the finished chunks kept in ``out_dir``): at the
  running chunk's next :func:`~ftrl_adam.grid.report_rounds` if ``cell_fn``
  reports its rounds and progress is on (in the main thread of a single
  process), else when the chunk ends; also one
  that lands inside a garbage-collector callback, where Python would print
  it as ignored and go on (:func:`~ftrl_adam.lab.engine.progress.ctrl_c_outside_callbacks`).

  Args:
    cell_fn: ``cell -> {name: array}``, a pure JAX function of one cell: ``cell``
      is a dict of the table's columns for one cell (tracers: scalars, or the
      cell's array for a column with an array per cell); it returns a flat
      dict of arrays of fixed shapes.  Make a PRNG key with
      :func:`key_from_seed`.
    table: ``dict name -> numeric array`` with one entry per cell along the
      first axis (see :func:`product`).  Dtypes are canonicalised as JAX
      would (float64 -> float32 unless x64 is on).
    chunk_size: cells per chunk (bounds device memory).  Capped at the number
      of cells.
    out_dir: optional results folder: finished chunks are written atomically
      (``chunk_000012.npz``) next to a ``manifest.json`` holding the run's
      fingerprint (a hash of the table, ``config``, ``cell_fn``'s code, the
      output names, shapes and dtypes, the compiler options, the device count
      unless the options are the reproducible ones, and the
      ftrl_adam/jax/jaxlib versions and platform).  Calling again with the
      same arguments loads the finished chunks and computes the rest, giving
      the same table as an uninterrupted run.  A folder of another run, a
      chunk file that does not check out, or a folder that is not a results
      folder raise :class:`ResultsFolderError`.  Only process 0 touches the
      folder.
    config: JSON-serialisable description of everything ``cell_fn`` depends on
      besides the table (game, horizon, dimension, model, ...).  The
      fingerprint also holds a digest of ``cell_fn``'s code, closure values
      and the module values it reads (:func:`ftrl_adam.lab.identity.code_digest`),
      but not of code it reaches through imported modules or objects it cannot
      read: put the settings that change the results here too.
    progress: print a line per chunk (cells/s, ETA) to stderr, on process 0;
      or the :class:`Progress` to report to.
    overwrite: with ``out_dir``, delete the folder's previous grid results (its
      manifest and chunk files; other files are kept) and start again.  A folder
      without a readable manifest is refused even so.
    on_chunk: optional ``ChunkInfo -> None`` called after each *computed*
      chunk is stored (not for chunks loaded from ``out_dir``); an exception it
      raises stops the run, with the finished chunks kept on disk.
    compiler_options: XLA options for the compilation; default
      :func:`compiler_options` (reproducible on CPU); ``{}`` for XLA's defaults.
    group_size: ``None`` (default): ``cell_fn`` maps one cell.  An integer
      k: the table's rows come in consecutive groups of k cells that share an
      input stream (e.g. the gradients of one seed, played by k learners), and
      ``cell_fn`` maps a *group*: its argument is a dict of ``(k,)`` arrays and
      each output has a leading axis of k.  The engine vmaps and shards over
      groups; chunks hold whole groups.  The number of rows must divide by k.
    progress_label: what the progress lines call this grid.
    work_per_cell: units of work of one cell (e.g. coordinate-rounds), and
    work_after: the units of work still to run after this grid (e.g. later
      adversaries): with them the ETA covers the whole run.
    timings: an optional dict that receives ``compute`` (seconds spent
      computing the chunks, those of earlier, interrupted runs included, as
      recorded in their chunk files), ``trace`` and ``compile`` (this call's)
      and ``computed_cells`` (the cells this call computed).
    devices: the devices to shard over; default ``jax.devices()`` (every
      device of every process; a subset is for single-process use, e.g. to
      leave devices free or to time one device).
    program: the :class:`Program` of this call, built beforehand (e.g.
      compiled in a thread while another grid ran); it must have been built
      with the same ``cell_fn``, table columns, ``chunk_size``,
      ``group_size``, options and devices.  Its ``progress`` is used.

  Returns:
    The tidy table: the (canonicalised) input columns followed by one column
    per output of ``cell_fn``, sorted by name; each output has shape
    ``(n_cells, *cell_shape)``.

  Raises:
    ResultsFolderError: for an ``out_dir`` that cannot be used (see above).
    TypeError: for a bad table, output, or argument (wrong type).
    ValueError: for a bad table, output, or argument (wrong value).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from ftrl_adam import grid
    >>> table = grid.product(b1=[0.0, 0.5, 0.9], seed=grid.seeds(2))
    >>> def cell_fn(cell):
    ...   noise = jax.random.normal(grid.key_from_seed(cell["seed"]))
    ...   return {"geo": jnp.sum(cell["b1"] ** jnp.arange(10.0)), "noise": noise}
    >>> out = grid.run_grid(cell_fn, table, chunk_size=4, progress=False)
    >>> list(out)
    ['b1', 'seed', 'geo', 'noise']
    >>> out["geo"].astype(float).round(3).tolist()
    [1.0, 1.0, 1.998, 1.998, 6.513, 6.513]
  """
  table = canonical_table(table)
  n = n_rows(table)
  if not isinstance(overwrite, bool):
    raise ValueError(f"`overwrite` must be True or False, got {overwrite!r}.")
  if program is None:
    bar = progress if isinstance(progress, Progress) else Progress(
        enabled=bool(progress) and jax.process_index() == 0,
        label=progress_label, work_per_cell=work_per_cell,
        work_after=work_after)
    program = Program(cell_fn, table, chunk_size=chunk_size,
                      group_size=group_size, compiler_options=compiler_options,
                      devices=devices, progress=bar)
  else:
    _check_program(program, cell_fn, table, chunk_size, group_size)
  out_dir = None if out_dir is None else os.fspath(out_dir)
  manifest = None
  if out_dir is not None:
    manifest = _manifest(program, table, n, config)
  elif config is not None:
    _folder.canonical_json(config)  # the same error for a bad config either way
  run = _Run(program, n, out_dir, manifest, on_chunk)
  try:
    done, run.folder = _resume(out_dir, manifest, overwrite, program.layout, n,
                               program.outputs)
    run.start(done)
    run.chunks(table, done)
  finally:
    run.bar.close()
    if run.folder is not None:
      run.folder.close()
  if timings is not None:
    timings.update(run.seconds)
  return {**table, **dict(sorted(run.results.items()))}


def compile_ahead(cell_fn: CellFn, table: Mapping[str, Any], *,
                  chunk_size: int, group_size: Optional[int] = None,
                  compiler_options: Optional[Mapping[str, Any]] = None,
                  devices: Optional[Sequence[Any]] = None,
                  progress: Optional[Progress] = None) -> Program:
  """Traces the program :func:`run_grid` will run; compile it with ``.compile()``.

  Pass the returned :class:`Program` to :func:`run_grid` as ``program``.  XLA
  compiles without holding Python's GIL, so a runner with several grids
  traces them one after the other and compiles them in threads.
  """
  return Program(cell_fn, table, chunk_size=chunk_size, group_size=group_size,
                 compiler_options=compiler_options, devices=devices,
                 progress=progress)
