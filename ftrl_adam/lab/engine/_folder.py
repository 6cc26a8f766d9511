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
import os
import re
import zipfile
from typing import Any, Mapping, Sequence

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
          "code", "device_count")
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
