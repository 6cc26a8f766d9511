"""Results folders, fingerprints, atomic writes and progress of the grid engine (private).

A *results folder* is what :func:`ftrl_adam.grid.run_grid` writes under
``out_dir``::

    out_dir/
      manifest.json         written first, atomically: format, fingerprint, layout
      chunk_000000.npz      one per finished chunk, written atomically
      chunk_000001.npz      (results of the chunk's cells + its range + fingerprint)
      ...                   other files (a CSV, a JSON, PNGs) are tolerated

Every file is written to a hidden temporary name in the same folder, flushed,
``fsync``-ed and moved into place with ``os.replace``, so a reader sees either
the old file, or the whole new one, never a half-written one.  A crash can
leave a hidden ``.chunk_*.tmp-*`` file behind; it is deleted on the next run.

Nothing here imports JAX: the module is plain NumPy, JSON and ``os``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
import zipfile
from typing import Any, Mapping, Sequence, TextIO

import numpy as np

FORMAT = "ftrl_adam.grid"
FORMAT_VERSION = 2  # 2: chunk files carry their compute seconds
MANIFEST = "manifest.json"
_CHUNK_RE = re.compile(r"^chunk_(\d+)\.npz$")
_TMP_RE = re.compile(r"^\.(chunk_\d+\.npz|manifest\.json)\.tmp-.*$")
_START, _STOP, _FPR, _SECONDS = ("__start__", "__stop__", "__fingerprint__",
                                 "__seconds__")
RESERVED = (_START, _STOP, _FPR, _SECONDS)


class ResultsFolderError(ValueError):
  """An ``out_dir`` that the grid engine refuses to read from or write to."""


def chunk_name(index: int) -> str:
  return f"chunk_{index:06d}.npz"


# ----------------------------------------------------------------------------
# Canonical JSON and fingerprints.
# ----------------------------------------------------------------------------

def json_default(x: Any) -> Any:
  if isinstance(x, np.ndarray):
    return x.tolist()
  if isinstance(x, np.generic):
    return x.item()
  raise TypeError(
      f"`config` must be JSON-serialisable (dicts, lists, str, numbers, "
      f"bool, None, NumPy scalars/arrays); got {type(x).__name__}: {x!r}.")


def canonical_json(obj: Any) -> str:
  """Deterministic JSON: sorted keys, no whitespace, NumPy values as Python."""
  return json.dumps(obj, sort_keys=True, separators=(",", ":"),
                    default=json_default, allow_nan=True)


def table_digest(table: Mapping[str, np.ndarray]) -> str:
  """SHA-256 of the column names, dtypes, shapes and bytes, in column order."""
  h = hashlib.sha256()
  for name, col in table.items():
    col = np.ascontiguousarray(col)
    h.update(canonical_json([name, col.dtype.str, list(col.shape)]).encode())
    h.update(col.tobytes())
  return h.hexdigest()


def fingerprint(parts: Mapping[str, Any]) -> str:
  """SHA-256 of the canonical JSON of ``parts`` (which hold the table digest)."""
  return hashlib.sha256(canonical_json(dict(parts)).encode()).hexdigest()


# ----------------------------------------------------------------------------
# Atomic writes.
# ----------------------------------------------------------------------------

def _tmp_path(path: str) -> str:
  folder, name = os.path.split(path)
  return os.path.join(folder, f".{name}.tmp-{os.getpid()}")


def _fsync_dir(folder: str) -> None:
  try:
    fd = os.open(folder, os.O_RDONLY)
  except OSError:  # pragma: no cover - e.g. Windows
    return
  try:
    os.fsync(fd)
  except OSError:  # pragma: no cover
    pass
  finally:
    os.close(fd)


def _atomic(path: str, write) -> None:
  tmp = _tmp_path(path)
  try:
    with open(tmp, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  _fsync_dir(os.path.dirname(path) or ".")


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes ``data`` to ``path`` through a temporary file and ``os.replace``."""
  _atomic(path, lambda f: f.write(data))


def atomic_write_text(path: str, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npz(path: str, arrays: Mapping[str, np.ndarray]) -> None:
  """``np.savez`` to ``path`` atomically (the name is used as given)."""
  _atomic(path, lambda f: np.savez(f, **arrays))


# ----------------------------------------------------------------------------
# The results folder.
# ----------------------------------------------------------------------------

def _fix_hint(folder: str) -> str:
  return (f"Pick a new (or empty) out_dir, or pass overwrite=True to delete the "
          f"results in {folder!r} and start again.")


def _read_manifest(folder: str) -> dict:
  path = os.path.join(folder, MANIFEST)
  try:
    with open(path, "r", encoding="utf-8") as f:
      manifest = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ResultsFolderError(
        f"{path!r} is unreadable ({type(e).__name__}: {e}); {folder!r} is not "
        f"a grid results folder or it is damaged. Pick a new (or empty) "
        f"out_dir; the engine does not delete files it cannot identify as its "
        f"own.") from e
  if (not isinstance(manifest, dict) or manifest.get("format") != FORMAT
      or not isinstance(manifest.get("fingerprint"), str)
      or not isinstance(manifest.get("format_version"), int)):
    raise ResultsFolderError(
        f"{path!r} is not a manifest of {FORMAT!r} results, so {folder!r} is "
        f"not a grid results folder. Pick a new (or empty) out_dir; the engine "
        f"does not delete files it cannot identify as its own.")
  if manifest["format_version"] > FORMAT_VERSION:
    raise ResultsFolderError(
        f"{folder!r} was written by a newer ftrl_adam (results format "
        f"{manifest['format_version']} > {FORMAT_VERSION}). Upgrade ftrl_adam "
        f"or pick a new out_dir.")
  return manifest


def engine_files(names: Sequence[str]) -> list[str]:
  return [n for n in names
          if n == MANIFEST or _CHUNK_RE.match(n) or _TMP_RE.match(n)]


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
  keys = ("config", "table_digest", "n_cells", "columns", "outputs",
          "compiler_options", "versions", "format_version", "group_size",
          "code")
  changed = [k for k in keys if old.get(k) != new.get(k)]
  return ", ".join(changed) if changed else "unknown"


def open_folder(folder: str, manifest: Mapping[str, Any], *,
                overwrite: bool) -> None:
  """Makes ``folder`` a results folder for ``manifest``, or refuses.

  * missing or empty folder: created, manifest written;
  * folder with ``manifest.json`` of the same fingerprint and chunk size: kept
    (a resume); leftover temporary files are deleted;
  * another fingerprint, or the same with another ``chunk_size``: refused;
  * ``overwrite=True`` and a readable manifest: the engine's own files (the
    manifest, chunk files) are deleted and the run starts afresh; other files
    are kept;
  * files but no readable manifest: refused, whatever ``overwrite`` says.
  """
  folder = os.fspath(folder)
  if os.path.exists(folder) and not os.path.isdir(folder):
    raise ResultsFolderError(
        f"out_dir {folder!r} exists and is not a folder. Pick another out_dir.")
  os.makedirs(folder, exist_ok=True)
  names = sorted(os.listdir(folder))
  for n in names:  # debris of an interrupted write
    if _TMP_RE.match(n):
      os.remove(os.path.join(folder, n))
  names = [n for n in names if not _TMP_RE.match(n)]

  if MANIFEST not in names:
    if names:
      shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
      raise ResultsFolderError(
          f"out_dir {folder!r} is not a grid results folder: it holds files "
          f"({shown}) but no {MANIFEST}. Pick a new (or empty) out_dir; the "
          f"engine does not delete files it did not write.")
    _write_manifest(folder, manifest)
    return

  old = _read_manifest(folder)
  if overwrite:
    for n in engine_files(names):
      os.remove(os.path.join(folder, n))
    _write_manifest(folder, manifest)
    return
  if old["fingerprint"] != manifest["fingerprint"]:
    raise ResultsFolderError(
        f"{folder!r} holds results of a different run (fingerprint "
        f"{old['fingerprint'][:12]}... != {manifest['fingerprint'][:12]}...; "
        f"changed: {_changes(old, manifest)}); they are never mixed with "
        f"this run's. " + _fix_hint(folder))
  if old.get("chunk_size") != manifest["chunk_size"]:
    raise ResultsFolderError(
        f"{folder!r} holds results of this run written with chunk_size="
        f"{old.get('chunk_size')}, not {manifest['chunk_size']}. Pass "
        f"chunk_size={old.get('chunk_size')} to resume it. " + _fix_hint(folder))
  # A resume: every chunk file must be one of this run's.
  for n in names:
    m = _CHUNK_RE.match(n)
    if m and (n != chunk_name(int(m.group(1)))
              or int(m.group(1)) >= manifest["n_chunks"]):
      raise ResultsFolderError(
          f"{os.path.join(folder, n)!r} is not a chunk of this run (it has "
          f"{manifest['n_chunks']} chunks). Delete the file or pick a new "
          f"out_dir.")


def _write_manifest(folder: str, manifest: Mapping[str, Any]) -> None:
  text = json.dumps(dict(manifest), indent=2, sort_keys=True,
                    default=json_default)
  atomic_write_text(os.path.join(folder, MANIFEST), text + "\n")


def finished_chunks(folder: str, n_chunks: int) -> list[int]:
  return [i for i in range(n_chunks)
          if os.path.exists(os.path.join(folder, chunk_name(i)))]


def save_chunk(folder: str, index: int, start: int, stop: int, fpr: str,
               results: Mapping[str, np.ndarray], seconds: float = 0.0) -> str:
  """Writes one finished chunk (with the seconds it took to compute)."""
  path = os.path.join(folder, chunk_name(index))
  arrays = dict(results)
  arrays[_SECONDS] = np.float64(seconds)
  arrays[_START] = np.int64(start)
  arrays[_STOP] = np.int64(stop)
  arrays[_FPR] = np.array(fpr)
  atomic_save_npz(path, arrays)
  return path


def load_chunk(folder: str, index: int, start: int, stop: int, fpr: str,
               outputs: Mapping[str, tuple[tuple[int, ...], np.dtype]]
               ) -> tuple[dict[str, np.ndarray], float]:
  """Reads and validates one chunk file: (results, compute seconds).

  Raises ResultsFolderError if the file is not a sound chunk of this run.
  """
  path = os.path.join(folder, chunk_name(index))

  def bad(why: str) -> ResultsFolderError:
    return ResultsFolderError(
        f"chunk file {path!r} is corrupt or not part of this run ({why}). "
        f"Delete it to recompute that chunk, or pick a new out_dir.")

  try:
    with np.load(path, allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}  # reading checks every CRC
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
    raise bad(f"{type(e).__name__}: {e}") from e
  expected = set(outputs) | set(RESERVED)
  if set(arrays) != expected:
    raise bad(f"it holds {sorted(arrays)}, expected {sorted(expected)}")
  if str(arrays[_FPR]) != fpr:
    raise bad("its fingerprint is another run's")
  if int(arrays[_START]) != start or int(arrays[_STOP]) != stop:
    raise bad(f"it covers cells [{int(arrays[_START])}, {int(arrays[_STOP])}), "
              f"expected [{start}, {stop})")
  out = {}
  for name, (shape, dtype) in outputs.items():
    a = arrays[name]
    want = (stop - start,) + tuple(shape)
    if a.shape != want or a.dtype != np.dtype(dtype):
      raise bad(f"{name!r} is {a.dtype}{list(a.shape)}, expected "
                f"{np.dtype(dtype)}{list(want)}")
    out[name] = a
  return out, float(arrays[_SECONDS])


# ----------------------------------------------------------------------------
# Progress.
# ----------------------------------------------------------------------------

def format_seconds(s: float) -> str:
  if not np.isfinite(s):
    return "?"
  if s < 60:
    return f"{s:.1f}s"
  s = int(round(s))
  h, rem = divmod(s, 3600)
  m, sec = divmod(rem, 60)
  return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
  """Progress of a grid on stderr: a line per chunk, and within a long chunk.

  One line per finished chunk (bar, cells, cells/s, ETA); while a chunk runs,
  :meth:`tick` (fed by :func:`ftrl_adam.grid.report_rounds` from inside the
  compiled program) prints the chunk's progress in rounds, at most every
  ``min_interval`` seconds.  With ``work_per_cell`` and ``work_after`` (the
  work of the parts still to run, e.g. later adversaries) the ETA covers the
  whole run, not only this grid.  On a terminal the line is redrawn in place
  (``\\r``); in a log file every update gets its own line.  ``enabled=False``
  prints nothing.
  """

  def __init__(self, *, n_cells: int, n_chunks: int, enabled: bool,
               stream: TextIO | None = None, width: int = 20,
               label: str = "grid", work_per_cell: float = 1.0,
               work_after: float = 0.0, min_interval: float = 2.0):
    self.n_cells, self.n_chunks = n_cells, n_chunks
    self.enabled = enabled
    self.stream = stream if stream is not None else sys.stderr
    self.width = width
    self.label = label
    self.work_per_cell = float(work_per_cell)
    self.work_after = float(work_after)
    self.min_interval = min_interval
    self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
    self._t0 = time.perf_counter()
    self._last = -math.inf
    self._cells0 = 0
    self._cells_done = 0
    self._chunks_done = 0
    self._chunk_cells = 0
    self._open_line = False

  def _emit(self, text: str, final: bool) -> None:
    if not self.enabled:
      return
    if self._tty:
      end = "\n" if final else ""
      self.stream.write("\r" + text + "\x1b[K" + end)
      self._open_line = not final
    else:
      self.stream.write(text + "\n")
    self.stream.flush()

  def start(self, *, chunks_done: int, cells_done: int, n_devices: int,
            padded: int, compile_s: float, out_dir: str | None) -> None:
    self._t0 = time.perf_counter()
    self._cells0 = self._cells_done = cells_done
    self._chunks_done = chunks_done
    where = f", out_dir {out_dir}" if out_dir else ""
    resumed = (f"; {chunks_done} chunk(s) ({cells_done} cells) already done"
               if chunks_done else "")
    self._emit(
        f"{self.label}: {self.n_cells} cells in {self.n_chunks} chunk(s) of "
        f"{padded} padded cells on {n_devices} device(s){where}; compiled in "
        f"{format_seconds(compile_s)}{resumed}", final=True)

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

  def tick(self, fraction: float, where: str = "") -> None:
    """Within the running chunk: ``fraction`` of it is done."""
    now = time.perf_counter()
    if not self.enabled or now - self._last < self.min_interval:
      return
    self._last = now
    done = self._cells_done + fraction * self._chunk_cells
    _, left = self._eta(done)
    eta = f", ETA {format_seconds(left)}" if math.isfinite(left) else ""
    self._emit(
        f"{self.label}: chunk {self._chunks_done + 1}/{self.n_chunks} "
        f"{100 * fraction:.0f}% ({where}){eta}", final=False)

  def update(self, *, chunks_done: int, cells_done: int) -> None:
    self._cells_done, self._chunks_done = cells_done, chunks_done
    self._last = time.perf_counter()
    rate, eta = self._eta(cells_done)
    fill = int(round(self.width * cells_done / max(self.n_cells, 1)))
    bar = "#" * fill + "." * (self.width - fill)
    done = chunks_done == self.n_chunks
    dt = time.perf_counter() - self._t0
    self._emit(
        f"{self.label}: [{bar}] chunk {chunks_done}/{self.n_chunks}, "
        f"{cells_done}/{self.n_cells} cells, {rate:,.1f} cells/s, "
        f"{'took ' + format_seconds(dt) if done else 'ETA ' + format_seconds(eta)}",
        final=done)

  def close(self) -> None:
    if self.enabled and self._open_line:
      self.stream.write("\n")
      self.stream.flush()
      self._open_line = False
