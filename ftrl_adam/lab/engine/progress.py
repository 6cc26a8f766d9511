"""Progress of a grid on stderr, passed in; no module-level state.

A :class:`Progress` is made by whoever runs a grid (the runner makes one per
part, :func:`ftrl_adam.grid.run_grid` one when asked with ``progress=True``)
and passed to the engine, which reports each finished chunk to it.

Within a long chunk, a cell function can report the rounds (the studies: the
training steps) of its ``lax.scan`` with :func:`report_rounds`.  The engine
traces a program under :func:`reporting_to` its ``Progress``:
:func:`report_rounds` then compiles a host callback bound to *that* object
into the program.  Traced with no ``Progress`` (progress off, or outside the
engine), :func:`report_rounds` adds nothing to the program: no host callback,
so the program lowers for any platform and can be cached.  A program traced
for one ``Progress`` reports to it alone; after :meth:`Progress.close` its
callbacks print nothing (an interrupted run leaves no stray lines and no
traceback).
"""

from __future__ import annotations

import _thread
import contextlib
import functools
import gc
import logging
import math
import signal
import socket
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
def ctrl_c_stops_chunks(progress: Optional["Progress"] = None
                        ) -> Iterator[None]:
  """While chunks run: a Ctrl-C stops the running chunk at its next progress
  callback, not at its end, and is not logged by JAX as a failed callback.

  The main thread waits inside XLA while a chunk runs, and Python handles a
  signal only when that wait returns: a Ctrl-C waited for the chunk's end
  (``ftrl-adam regret --T 2000000 --chunk-size 100``, chunks of ~57 min, was
  still running 30 s after its Ctrl-C).  Here the signal's number is also
  written to a socket (``signal.set_wakeup_fd``, in the main thread, where no
  other wake-up fd is set) that :meth:`Progress.tick` reads, from whatever
  thread XLA runs it in: it raises ``KeyboardInterrupt`` in the callback, XLA
  ends the program with an error, and the engine raises ``KeyboardInterrupt``.
  Without progress (no callbacks in the program) the chunk runs to its end.

  A ``KeyboardInterrupt`` raised in a callback (or in JAX's frames around
  it) would be logged by JAX as "jax.debug.callback failed" with its
  traceback; those records (and only those) are dropped.
  """
  logger = logging.getLogger("jax._src.debugging")
  quiet = _NoCtrlCRecords()
  ends = None
  try:
    logger.addFilter(quiet)
    ends = _wakeup_socket()
    if progress is not None:   # a Ctrl-C of an earlier run is not this one's
      progress.interrupted, progress._running = False, True
      progress._signals = ends[0] if ends is not None else None
    yield
  finally:
    if ends is not None:       # first: a second Ctrl-C cannot leave it set
      _wakeup_fd_unset(ends[1])
    if progress is not None:   # later ticks (a chunk left running) are quiet
      progress._running, progress._signals = False, None
    logger.removeFilter(quiet)
    if ends is not None:
      for end in ends:
        end.close()


def _wakeup_socket() -> Optional[tuple[socket.socket, socket.socket]]:
  """(read end, write end) of a socket that signals now wake, or None (not
  the main thread, a Ctrl-C handler or a wake-up fd of someone else's)."""
  if (threading.current_thread() is not threading.main_thread()
      or signal.getsignal(signal.SIGINT) not in (signal.default_int_handler,
                                                 _sigint)):
    return None     # a Ctrl-C handler of the caller's decides, not the chunk
  ends, previous = socket.socketpair(), None
  try:
    for end in ends:
      end.setblocking(False)
    previous = signal.set_wakeup_fd(ends[1].fileno(), warn_on_full_buffer=False)
  finally:
    if previous != -1:   # theirs was set (e.g. an event loop's), or a failure
      _wakeup_fd_unset(ends[1])
      if previous is not None:
        signal.set_wakeup_fd(previous)
      for end in ends:
        end.close()
  return ends if previous == -1 else None


def _wakeup_fd_unset(write: socket.socket) -> None:
  """Unsets the wake-up fd if it is ``write``'s (someone else's stays)."""
  current = signal.set_wakeup_fd(-1)
  if current not in (-1, write.fileno()):
    signal.set_wakeup_fd(current)


@contextlib.contextmanager
def ctrl_c_outside_callbacks() -> Iterator[None]:
  """While the block runs (in the main thread, under Python's own Ctrl-C
  handler): a Ctrl-C that lands inside a garbage-collector callback or a
  ``__del__`` is raised a moment later (as a real signal: a wait in C ends).

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
    threading.Timer(0.01, _signal_main_thread, (signum,)).start()
    return
  raise KeyboardInterrupt


def _signal_main_thread(signum: int) -> None:
  """The signal again, as a real one to the main thread: a wait there in C
  (a sleep, a lock, a queue) ends at once; ``_thread.interrupt_main`` only
  flags it, and the Ctrl-C waited for the wait's end (a 60 s sleep: 60 s)."""
  if hasattr(signal, "pthread_kill"):
    signal.pthread_kill(threading.main_thread().ident, signum)
  else:                                     # Windows
    _thread.interrupt_main(signum)


def _in_a_finaliser(frame: Any) -> bool:
  """Whether ``frame`` runs (within) a gc callback or a ``__del__``."""
  codes = {getattr(cb, "__code__", None) for cb in gc.callbacks}
  while frame is not None:
    if frame.f_code in codes or frame.f_code.co_name == "__del__":
      return True
    frame = frame.f_back
  return False


def _sigint_read(signals: socket.socket) -> bool:
  """Whether a SIGINT was written to the wake-up socket since the last read."""
  try:
    return signal.SIGINT in signals.recv(512)
  except (BlockingIOError, OSError):
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

  One line when the grid starts (cells, chunks, devices, the measured trace and
  compile time), one per finished chunk (bar, cells, cells/s, ETA); while a
  chunk runs, :meth:`tick` (fed by :func:`report_rounds` from inside the
  compiled program) prints the chunk's progress in rounds (or steps), at most
  every ``min_interval`` seconds.  With ``work_per_cell`` and ``work_after``
  (the work of the parts still to run) the ETA covers the whole run.  On a
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
    #: A Ctrl-C seen by :meth:`tick`, for the engine to raise.
    self.interrupted = False
    #: Whether a program traced for this progress reports its rounds.
    self.reports_rounds = False
    self._running = False                            # ctrl_c_stops_chunks'
    self._signals: Optional[socket.socket] = None    # ... and its socket

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

  def tick(self, t: Any, total: int, unit: str = "round") -> None:
    """Round (or step: ``unit``) ``t`` of ``total`` of the running chunk (a
    host callback).

    After a Ctrl-C (caught in here, or read from the wake-up socket of
    :func:`ctrl_c_stops_chunks`) it raises ``KeyboardInterrupt``, which ends
    the program: XLA returns an error, the engine raises the Ctrl-C.
    """
    try:
      signals = self._signals
      if not self.interrupted and signals is not None and _sigint_read(signals):
        self.interrupted = True    # only ever set here: ticks run at once
      if not self.interrupted:
        self._tick(t, total, unit)
    except KeyboardInterrupt:
      self.interrupted = True
    if self.interrupted and self._running:
      raise KeyboardInterrupt

  def _tick(self, t: Any, total: int, unit: str) -> None:
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
        f"{100 * fraction:.0f}% ({unit} {t}/{total}){eta}", final=False)

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


def report_rounds(t: jax.Array, total: int, *, times: int = 50,
                  unit: str = "round") -> None:
  """Reports round ``t`` of ``total`` to the progress of the grid being traced.

  Call it inside a cell function's ``lax.scan`` over rounds (``t`` the
  round, not batched over cells): about ``times`` times per chunk the host
  prints how far the chunk has got, so a single long chunk still shows
  progress, and a Ctrl-C stops the chunk there.  Outside a grid traced with
  progress on, it adds nothing to the program; it never changes a result.
  Its test of ``t`` is not free: in a scan over single cheap rounds, call it
  once per block of rounds, as the games do (one call per round made a
  20M-round scan of 4 cells on 2 CPU devices take 3.5 s instead of 0.3 s);
  the studies call it every training step, which costs far more than the
  test.  Each report is a host callback (about 0.6 ms on CPU).  ``unit``
  names what ``t`` counts in the progress line (``"step"`` for the studies).
  """
  progress = getattr(_TRACING, "progress", None)
  if progress is None:
    return
  every = max(1, int(total) // max(1, times))
  progress.reports_rounds = True
  jax.lax.cond(t % every == 0,
               lambda: jax.debug.callback(
                   functools.partial(progress.tick, unit=unit), t, int(total)),
               lambda: None)
