"""Results folders and fingerprints of the grid engine (private).

A *results folder* is what :func:`ftrl_adam.grid.run_grid` writes under
``out_dir``, one of the package's self-verifying folders
(``ftrl_adam._store``; DESIGN.md, "Folders you can trust")::

    out_dir/
      .lock                 the running writer's lock (one run at a time)
      manifest.json         format, fingerprint, layout and, per finished
                            chunk, its file, role (index, cells) and SHA-256
      chunk_000000.npz      one per finished chunk: its cells' results and
      chunk_000001.npz      compute seconds (and its role, again)
      ...                   other files (a CSV, a JSON, PNGs) are tolerated

:class:`ResultsFolder` takes the folder's lock before anything is read,
written or cleaned (a second run on the folder is refused with one line
naming the holder's pid, and its start-up never touches the first run's
files), then accepts a new folder, this run's folder (a resume) or, with
``overwrite``, one of its own kind to start afresh, and refuses anything
else.  A chunk is written atomically, then the manifest that lists it; on a
resume every listed chunk is checked (name, role, SHA-256, arrays), so a
chunk swapped, rewritten with other well-formed values, truncated or
bit-flipped is refused with one line naming it; a chunk the manifest does
not list (written by a run killed before its manifest) is deleted and
computed again, and so is a listed chunk whose file was deleted (results are
recomputed, never guessed).

Nothing here imports JAX: the module is plain NumPy, JSON and ``os``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any, Mapping, Sequence

import numpy as np

from ftrl_adam import _store

FORMAT = "ftrl_adam.grid"
FORMAT_VERSION = 3  # 3: chunk digests in the manifest, a writer lock;
                    # 2: chunk files carry their compute seconds
MANIFEST = _store.MANIFEST
_CHUNK_RE = re.compile(r"^chunk_(\d+)\.npz$")
_SECONDS = "__seconds__"
_WHAT = "grid results folder"


class ResultsFolderError(_store.StoreError):
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
# The results folder.
# ----------------------------------------------------------------------------

def _fix_hint() -> str:
  return ("Pick a new (or empty) out_dir, or pass overwrite=True to delete "
          "these results and start again.")


def engine_files(names: Sequence[str]) -> list[str]:
  """The names among ``names`` that a results folder's writer owns."""
  return [n for n in names if n in (MANIFEST, _store.LOCK)
          or _CHUNK_RE.match(n) or _store.is_temporary(n)]


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
  keys = ("config", "table_digest", "n_cells", "columns", "outputs",
          "compiler_options", "versions", "format_version", "group_size",
          "code", "device_count")
  changed = [k for k in keys if old.get(k) != new.get(k)]
  return ", ".join(changed) if changed else "unknown"


def _read_manifest(folder: str) -> dict:
  """The manifest, its entries checked; errors as :class:`ResultsFolderError`."""
  try:
    manifest = _store.read_manifest(folder, FORMAT, _WHAT, "format_version")
  except _store.StoreError as e:
    raise ResultsFolderError(
        f"{e} Pick a new (or empty) out_dir; the engine does not delete files "
        "it cannot identify as its own.") from None
  version = manifest["format_version"]
  if version > FORMAT_VERSION:
    raise ResultsFolderError(
        f"{folder!r} was written by a newer ftrl_adam (results format "
        f"{version} > {FORMAT_VERSION}). Upgrade ftrl_adam or pick a new "
        "out_dir.")
  return manifest


def _check_keys(folder: str, manifest: Mapping[str, Any]) -> None:
  """The keys a resume reads, present and of their types (else one line)."""
  for key, kind in (("fingerprint", str), ("n_chunks", int),
                    ("chunk_size", int)):
    value = manifest.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
      raise ResultsFolderError(
          f"{os.path.join(folder, MANIFEST)!r} has no valid {key!r} (got "
          f"{value!r}): the folder is damaged. " + _fix_hint())


class ResultsFolder:
  """A results folder this run writes: its lock held, its manifest in hand.

  Made by :func:`open_folder`; :meth:`close` releases the lock (the OS
  releases it if the process dies).
  """

  def __init__(self, folder: str, manifest: Mapping[str, Any], *,
               overwrite: bool):
    self.folder = os.fspath(folder)
    try:
      self._lock = _store.FolderLock(self.folder, _WHAT,
                                     check=self._refuse_foreign)
    except _store.StoreError as e:
      raise ResultsFolderError(str(e)) from None
    try:
      self._manifest = self._open(dict(manifest), overwrite)
    except BaseException:
      self._lock.release()
      raise
    self._entries = {e["role"]["index"]: e for e in self._manifest["files"]}

  def close(self) -> None:
    """Releases the folder (idempotent)."""
    self._lock.release()

  def _fresh(self, manifest: dict) -> dict:
    manifest["files"] = []
    _store.write_manifest(self.folder, manifest)
    return manifest

  def _refuse_foreign(self) -> list[str]:
    names = sorted(n for n in os.listdir(self.folder) if not n.startswith("."))
    if names and MANIFEST not in names:
      shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
      raise ResultsFolderError(
          f"{self.folder!r} is not a grid results folder: it holds files "
          f"({shown}) but no {MANIFEST}. Pick a new (or empty) out_dir; the "
          f"engine does not delete files it did not write.")
    return names

  def _open(self, manifest: dict, overwrite: bool) -> dict:
    names = self._refuse_foreign()
    if MANIFEST not in names:
      return self._fresh(manifest)
    old = _read_manifest(self.folder)
    if overwrite:
      for n in engine_files(names):
        os.remove(os.path.join(self.folder, n))
      return self._fresh(manifest)
    where = f"{self.folder!r}"
    if old["format_version"] < FORMAT_VERSION:
      raise ResultsFolderError(
          f"{where} was written by an earlier ftrl_adam (results format "
          f"{old['format_version']}, chunks without content digests): it "
          f"cannot be verified, so it is not resumed. " + _fix_hint())
    _check_keys(self.folder, old)
    if old["fingerprint"] != manifest["fingerprint"]:
      raise ResultsFolderError(
          f"{where} holds results of a different run (fingerprint "
          f"{old['fingerprint'][:12]}... != {manifest['fingerprint'][:12]}...; "
          f"changed: {_changes(old, manifest)}); they are never mixed with "
          f"this run's. " + _fix_hint())
    if old.get("chunk_size") != manifest["chunk_size"]:
      raise ResultsFolderError(
          f"{where} holds results of this run in chunks of "
          f"{old.get('chunk_size')} cells, not {manifest['chunk_size']}: give "
          f"`chunk_size` {old.get('chunk_size')} to resume them. " + _fix_hint())
    self._check_chunks(old, names)
    # A listed chunk whose file was deleted is computed again.
    old["files"] = [e for e in old["files"] if e["file"] in names]
    return old

  def _check_chunks(self, old: dict, names: Sequence[str]) -> None:
    """Listed chunks: one per index of this run.  Unlisted chunk files of
    this run's indices are a killed run's (written before the manifest):
    deleted.  Any other chunk file is refused."""
    seen = set()
    for e in old["files"]:
      i = e["role"].get("index")
      if (isinstance(i, bool) or not isinstance(i, int) or i in seen
          or not 0 <= i < old["n_chunks"]):
        raise ResultsFolderError(
            f"the manifest of {self.folder!r} lists {e['file']!r} as chunk "
            f"{i!r}, not a new chunk of this run's {old['n_chunks']}: the "
            "folder is damaged. " + _fix_hint())
      seen.add(i)
    listed = {e["file"] for e in old["files"]}
    for n in names:
      m = _CHUNK_RE.match(n)
      if not m or n in listed:
        continue
      path = os.path.join(self.folder, n)
      if n != chunk_name(int(m.group(1))) or int(m.group(1)) >= old["n_chunks"]:
        raise ResultsFolderError(
            f"{path!r} is not a chunk of this run (it has {old['n_chunks']} "
            f"chunks). Delete the file or pick a new out_dir.")
      os.remove(path)

  def finished(self) -> list[int]:
    """The indices of the chunks the manifest lists, in order."""
    return sorted(self._entries)

  def load_chunk(self, index: int, start: int, stop: int,
                 outputs: Mapping[str, tuple[tuple[int, ...], np.dtype]]
                 ) -> tuple[dict[str, np.ndarray], float]:
    """One listed chunk, checked: (results, compute seconds).

    Raises:
      ResultsFolderError: the chunk does not check out (one line naming it).
    """
    try:
      arrays = _store.load_arrays(
          self.folder, self._entries[index], name=chunk_name(index),
          role=self._role(index, start, stop),
          keys=[*outputs, _SECONDS], what=_WHAT)
    except _store.StoreError as e:
      raise ResultsFolderError(
          f"{e} Delete it to recompute that chunk, or pick a new out_dir."
          ) from None
    out = {}
    for name, (shape, dtype) in outputs.items():
      a, want = arrays[name], (stop - start,) + tuple(shape)
      if a.shape != want or a.dtype != np.dtype(dtype):
        raise ResultsFolderError(
            f"chunk file {os.path.join(self.folder, chunk_name(index))!r} "
            f"holds {name!r} as {a.dtype}{list(a.shape)}, expected "
            f"{np.dtype(dtype)}{list(want)}. Delete it to recompute that "
            "chunk, or pick a new out_dir.")
      out[name] = a
    return out, float(arrays[_SECONDS])

  @staticmethod
  def _role(index: int, start: int, stop: int) -> dict:
    # The run's fingerprint is the manifest's; the digest binds the file to it.
    return {"index": index, "start": int(start), "stop": int(stop)}

  def save_chunk(self, index: int, start: int, stop: int,
                 results: Mapping[str, np.ndarray], seconds: float = 0.0
                 ) -> str:
    """Writes one finished chunk, then the manifest that lists it."""
    arrays = {**results, _SECONDS: np.float64(seconds)}
    entry = _store.save_arrays(self.folder, chunk_name(index), arrays,
                               self._role(index, start, stop))
    manifest = dict(self._manifest, files=[
        *(e for e in self._manifest["files"] if e["role"]["index"] != index),
        entry])
    _store.write_manifest(self.folder, manifest)
    self._manifest = manifest
    self._entries[index] = entry
    return os.path.join(self.folder, entry["file"])


def chunks_listed(folder: str) -> int:
  """How many chunks ``folder``'s manifest lists (0 when it has none or
  cannot be read): a cheap look, no lock and nothing verified, to skip
  compiling ahead for a finished part (the run itself checks everything)."""
  try:
    return len(_store.read_manifest(folder, FORMAT, _WHAT, "format_version")
               .get("files", []))
  except _store.StoreError:
    return 0


def open_folder(folder: str, manifest: Mapping[str, Any], *,
                overwrite: bool) -> ResultsFolder:
  """Takes ``folder`` for this run (its lock) and makes it a results folder
  for ``manifest``, or refuses.

  * missing or empty folder: created, manifest written;
  * folder with ``manifest.json`` of the same fingerprint and chunk size: kept
    (a resume); a chunk file the manifest does not list is deleted, a chunk
    it lists but whose file was deleted is computed again;
  * another fingerprint, the same with another ``chunk_size``, or a folder
    of an earlier results format (its chunks cannot be verified): refused;
  * ``overwrite=True`` and a readable manifest: the engine's own files (the
    manifest, chunk files) are deleted and the run starts afresh; other files
    are kept;
  * files but no readable manifest: refused, whatever ``overwrite`` says;
  * another live run holds the folder: refused, naming its pid.
  """
  return ResultsFolder(folder, manifest, overwrite=overwrite)
