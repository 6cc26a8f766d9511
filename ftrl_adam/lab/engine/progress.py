"""Progress of a grid on stderr, passed in; no module-level state.

A :class:`Progress` is made by whoever runs a grid (the runner makes one per
part, :func:`ftrl_adam.grid.run_grid` one when asked with ``progress=True``)
and passed to the engine, which reports each finished chunk to it.

Within a long chunk, a cell function can report the rounds of its
``lax.scan`` with :func:`report_rounds`.  The engine traces a program under
:func:`reporting_to` its ``Progress``: :func:`report_rounds` then compiles a
host callback bound to *that* object into the program.  Traced with no
``Progress`` (progress off, or outside the engine), :func:`report_rounds`
adds nothing to the program: no host callback, so the program lowers for any
platform and can be cached.  A program traced for one ``Progress`` reports
to it alone; after :meth:`Progress.close` its callbacks print nothing (an
interrupted run leaves no stray lines and no traceback).
"""

from __future__ import annotations

import _thread
import contextlib
import gc
import logging
import math
import signal
import sys
import threading
import time
from typing import Any, Iterator, Optional, TextIO

import jax
import numpy as np

# The Progress a program is being traced for, per tracing thread (the
# runner traces parts in one thread and compiles them in others).  Set only
# inside `reporting_to`; read only while tracing.
_TRACING = threading.local()


class _NoCtrlCRecords(logging.Filter):
  """Drops a log record of a KeyboardInterrupt (and only that)."""

  def filter(self, record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, KeyboardInterrupt)


@contextlib.contextmanager
def ctrl_c_unlogged() -> Iterator[None]:
  """While chunks run: a Ctrl-C that lands in JAX's own frames around a
  progress callback (before :meth:`Progress.tick`'s ``try``) is not logged
  by JAX as a failed callback with its traceback; the engine raises it as
  ``KeyboardInterrupt`` when the chunk returns, as one caught in ``tick``.
  Signals are handled on the main thread, so only the callbacks run there
  while the chunks run can meet one."""
  logger = logging.getLogger("jax._src.debugging")
  quiet = _NoCtrlCRecords()
  logger.addFilter(quiet)
  try:
    yield
  finally:
    logger.removeFilter(quiet)


@contextlib.contextmanager
def ctrl_c_outside_callbacks() -> Iterator[None]:
  """While the block runs (in the main thread, under Python's own Ctrl-C
  handler): a Ctrl-C that lands inside a garbage-collector callback or a
  ``__del__`` is raised a moment later, in the code that runs next.

  Python runs a signal's handler in whatever Python code the main thread is
  executing, and a ``KeyboardInterrupt`` raised inside a ``gc.callbacks``
  function (JAX registers one) or a finaliser cannot propagate: Python
  prints "Exception ignored in ... KeyboardInterrupt" with a traceback and
  the Ctrl-C is lost (seen in 1 of 12 runs of the interrupt test, 6 signals
  each, on loaded cores).  Elsewhere the handler raises at once, as Python's.
  """
  if (threading.current_thread() is not threading.main_thread()
      or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
    yield       # another thread, or a handler of the caller's: left alone
    return
  signal.signal(signal.SIGINT, _sigint)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _sigint(signum: int, frame: Any) -> None:
  if _in_a_finaliser(frame):
    threading.Timer(0.01, _thread.interrupt_main, (signum,)).start()
    return
  raise KeyboardInterrupt


def _in_a_finaliser(frame: Any) -> bool:
  """Whether ``frame`` runs (within) a gc callback or a ``__del__``."""
  codes = {getattr(cb, "__code__", None) for cb in gc.callbacks}
  while frame is not None:
    if frame.f_code in codes or frame.f_code.co_name == "__del__":
      return True
    frame = frame.f_back
  return False


def format_seconds(s: float) -> str:
  """``12.3s``, ``4:05`` or ``1:02:03``; ``?`` if not finite."""
  if not np.isfinite(s):
    return "?"
  if s < 60:
    return f"{s:.1f}s"
  s = int(round(s))
  h, rem = divmod(s, 3600)
  m, sec = divmod(rem, 60)
  return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
  """Progress of one grid on stderr: a line per chunk, and within a long chunk.

  One line when the grid starts (cells, chunks, devices, the measured trace
  and compile time), one per finished chunk (bar, cells, cells/s, ETA);
  while a chunk runs, :meth:`tick` (fed by :func:`report_rounds` from inside
  the compiled program) prints the chunk's progress in rounds, at most every
  ``min_interval`` seconds.  With ``work_per_cell`` and ``work_after`` (the
  work of the parts still to run) the ETA covers the whole run.  On a
  terminal the line is redrawn in place; in a log file every update gets its
  own line.  ``enabled=False`` prints nothing.
  """

  def __init__(self, *, enabled: bool = True, label: str = "grid",
               stream: Optional[TextIO] = None, work_per_cell: float = 1.0,
               work_after: float = 0.0, width: int = 20,
               min_interval: float = 2.0):
    self.enabled = bool(enabled)
    self.label = label
    self.stream = stream if stream is not None else sys.stderr
    self.work_per_cell = float(work_per_cell)
    self.work_after = float(work_after)
    self.width = width
    self.min_interval = min_interval
    self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
    self._lock = threading.Lock()
    self._t0 = time.perf_counter()
    self._last = -math.inf
    self.n_cells = self.n_chunks = 0
    self._cells0 = self._cells_done = self._chunks_done = 0
    self._chunk_cells = 0
    self._open_line = False
    #: A Ctrl-C caught inside :meth:`tick`, for the engine to raise.
    self.interrupted = False

  def _emit(self, text: str, final: bool) -> None:
    with self._lock:
      if not self.enabled:
        return
      if self._tty:
        self.stream.write("\r" + text + "\x1b[K" + ("\n" if final else ""))
        self._open_line = not final
      else:
        self.stream.write(text + "\n")
      self.stream.flush()

  def start(self, *, n_cells: int, n_chunks: int, chunks_done: int,
            cells_done: int, n_devices: int, padded: int, trace_s: float,
            compile_s: float, out_dir: Optional[str]) -> None:
    """The grid starts: its size, and how long tracing and compiling took."""
    self.n_cells, self.n_chunks = n_cells, n_chunks
    self._t0 = time.perf_counter()
    self._cells0 = self._cells_done = cells_done
    self._chunks_done = chunks_done
    where = f", folder {out_dir}" if out_dir else ""
    if chunks_done == n_chunks:
      self._emit(f"{self.label}: {n_cells:,} cells already done{where}; nothing "
                 f"to compute", final=True)
      return
    resumed = (f"; {chunks_done:,} chunk(s) ({cells_done:,} cells) already done"
               if chunks_done else "")
    self._emit(
        f"{self.label}: {n_cells:,} cells in {n_chunks:,} chunk(s) of {padded:,} "
        f"padded cells on {n_devices} device(s){where}; traced in "
        f"{format_seconds(trace_s)}, compiled in {format_seconds(compile_s)}"
        f"{resumed}", final=True)

  def _eta(self, cells_done: float) -> tuple[float, float]:
    """(cells/s, seconds left for this grid and the parts after it)."""
    dt = time.perf_counter() - self._t0
    new = cells_done - self._cells0
    rate = new / dt if dt > 0 and new > 0 else 0.0
    if rate <= 0:
      return 0.0, math.inf
    left = (self.n_cells - cells_done) / rate
    left += self.work_after / (rate * self.work_per_cell)
    return rate, left

  def chunk_started(self, cells: int) -> None:
    """A chunk of ``cells`` cells was dispatched (for :meth:`tick`)."""
    self._chunk_cells = cells
    self._last = time.perf_counter()

  def tick(self, t: Any, total: int) -> None:
    """Round ``t`` of ``total`` of the running chunk (a host callback).

    A Ctrl-C that lands in here is kept in :attr:`interrupted` (raised inside
    a callback, XLA would turn it into a ``JaxRuntimeError``); the engine
    raises ``KeyboardInterrupt`` when the chunk returns.
    """
    try:
      self._tick(t, total)
    except KeyboardInterrupt:
      self.interrupted = True

  def _tick(self, t: Any, total: int) -> None:
    now = time.perf_counter()
    if not self.enabled or now - self._last < self.min_interval:
      return
    self._last = now
    t = int(np.max(np.asarray(t)))
    fraction = t / max(1, int(total))
    done = self._cells_done + fraction * self._chunk_cells
    _, left = self._eta(done)
    eta = f", ETA {format_seconds(left)}" if math.isfinite(left) else ""
    self._emit(
        f"{self.label}: chunk {self._chunks_done + 1}/{self.n_chunks} "
        f"{100 * fraction:.0f}% (round {t}/{total}){eta}", final=False)

  def update(self, *, chunks_done: int, cells_done: int) -> None:
    """A chunk finished: ``chunks_done`` chunks, ``cells_done`` cells in all."""
    self._cells_done, self._chunks_done = cells_done, chunks_done
    self._last = time.perf_counter()
    rate, eta = self._eta(cells_done)
    fill = int(round(self.width * cells_done / max(self.n_cells, 1)))
    bar = "#" * fill + "." * (self.width - fill)
    done = chunks_done == self.n_chunks
    dt = time.perf_counter() - self._t0
    self._emit(
        f"{self.label}: [{bar}] chunk {chunks_done:,}/{self.n_chunks:,}, "
        f"{cells_done:,}/{self.n_cells:,} cells, {rate:,.1f} cells/s, "
        f"{'took ' + format_seconds(dt) if done else 'ETA ' + format_seconds(eta)}",
        final=done)

  def close(self) -> None:
    """Ends the progress: a line left open is ended, later ticks print nothing."""
    with self._lock:
      if self.enabled and self._open_line:
        self.stream.write("\n")
        self.stream.flush()
      self._open_line = False
      self.enabled = False


@contextlib.contextmanager
def reporting_to(progress: Optional[Progress]) -> Iterator[None]:
  """Traces inside this block report their rounds to ``progress`` (or nowhere)."""
  previous = getattr(_TRACING, "progress", None)
  _TRACING.progress = progress if progress is not None and progress.enabled \
      else None
  try:
    yield
  finally:
    _TRACING.progress = previous


def report_rounds(t: jax.Array, total: int, *, times: int = 50) -> None:
  """Reports round ``t`` of ``total`` to the progress of the grid being traced.

  Call it inside a cell function's ``lax.scan`` over rounds (``t`` the
  round, not batched over cells): about ``times`` times per chunk the host
  prints how far the chunk has got, so a single long chunk still shows
  progress.  Outside a grid traced with progress on, it adds nothing to the
  program; it never changes a result.
  """
  progress = getattr(_TRACING, "progress", None)
  if progress is None:
    return
  every = max(1, int(total) // max(1, times))
  jax.lax.cond(t % every == 0,
               lambda: jax.debug.callback(progress.tick, t, int(total)),
               lambda: None)
