"""Folders you can trust: the one integrity design of every folder written (private).

Every folder the package writes - a results folder of the grid engine, a
gradient recording, a post-hoc snapshot folder - goes through this module
(DESIGN.md, "Folders you can trust"):

* **One writer.**  :class:`FolderLock` takes an exclusive ``fcntl.flock`` on
  the file ``.lock`` in the folder before anything is written or cleaned
  (the file holds the writer's pid and is removed on release); the OS
  releases the lock when the process dies, so a killed writer never leaves a
  folder locked.  A second writer (another process, or a second object in
  this one) is refused with one line naming the folder and the holder's pid
  (:class:`FolderBusyError`).  Readers take no lock; :func:`holder` tells
  whether a writer is alive.
* **Atomic writes.**  :func:`atomic_write` is the package's one atomic
  writer: a hidden temporary ``.NAME.tmp-PID-N`` in the same folder, written,
  ``fsync``-ed and moved into place with ``os.replace``, then the folder
  ``fsync``-ed; files get mode 0666 as the umask allows (0644 usually).  A
  killed writer leaves its temporary behind; the next writer deletes the
  temporaries of dead processes (:func:`clean_stale`).
* **Self-verifying files.**  :func:`save_arrays` writes a ``.npz`` archive
  (no pickle) holding the arrays and the file's *role* (e.g. chunk 3 of cells
  [96, 128), rounds 1-4, step 25 and its powers) and returns the manifest
  entry ``{"file", "role", "sha256"}``, the SHA-256 of the file's bytes; the
  folder's manifest (:func:`write_manifest`, written after the file, lists
  every file written) binds each file to its role and digest.
  :func:`load_arrays` checks an entry before trusting a byte: a plain name
  (no separators, no ``..``, no absolute path), the name the role implies,
  the file present, its digest, a readable archive, the role inside it and
  the arrays expected.  Anything else is a one-line :class:`StoreError`
  (a ``ValueError``) naming the file.

Only NumPy, JSON, ``hashlib``, ``os`` and ``fcntl``: no JAX, nothing
unpickled or executed.  Arrays of the ``ml_dtypes`` types (bfloat16,
float8) are stored as unsigned integers of their width and their dtype's
name, and viewed back on reading.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import importlib
import io
import itertools
import json
import os
import re
import time
import zipfile
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

LOCK = ".lock"
MANIFEST = "manifest.json"
_META = "__meta__"            # the role and special dtypes inside an archive
_TMP_RE = re.compile(r"^\..+\.tmp-(\d+)(?:-\d+)?$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_counter = itertools.count()


class StoreError(ValueError):
  """A folder or file that does not check out (the message names it)."""


class FolderBusyError(StoreError):
  """A folder that another live writer holds."""


# ----------------------------------------------------------------------------
# Names and the lock.
# ----------------------------------------------------------------------------

def is_plain_name(name: Any) -> bool:
  """A file name inside a folder: no separator, no ``..``, not hidden."""
  seps = {"/", "\\", os.sep, os.altsep or "/", "\0"}
  return (isinstance(name, str) and bool(name) and not name.startswith(".")
          and not any(s in name for s in seps) and not os.path.isabs(name))


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:       # another user's process
    return True
  except OSError:               # pragma: no cover - e.g. pid out of range
    return False
  return True


def _read_pid(fd: int) -> Optional[int]:
  try:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
  except OSError:               # pragma: no cover
    return None
  return int(text) if text.isdigit() else None


class FolderLock:
  """The exclusive writer lock of ``folder`` (created if missing).

  Held until :meth:`release` (or the object is collected, or the process
  dies).  On taking it, the temporaries of dead writers are deleted.  The
  lock file ``.lock`` holds the writer's pid; :meth:`release` removes it
  (a killed writer leaves it behind, unlocked).  A writer that locked a
  file another writer removed meanwhile tries again, so two writers never
  hold two lock files of one folder.

  Args:
    folder: the folder.
    what: what the folder is, for messages (e.g. ``"gradient recording"``).
    check: called before the lock file is made, to refuse a folder that is
      not of this kind (the caller checks again once the lock is held), so
      that nothing is written into a folder that is refused.

  Raises:
    StoreError: ``folder`` exists and is not a folder.
    FolderBusyError: another writer holds it (the message names its pid).
    OSError: the folder cannot be created or written (read-only media).
  """

  def __init__(self, folder: str, what: str, *,
               check: Optional[Callable[[], None]] = None,
               wait_s: float = 0.2):
    self.folder = os.fspath(folder)
    self._fd: Optional[int] = None
    if os.path.exists(self.folder) and not os.path.isdir(self.folder):
      raise StoreError(f"{self.folder!r} exists and is not a folder, so it "
                       f"cannot be a {what}: give a folder.")
    if check is not None and os.path.isdir(self.folder):
      check()
    os.makedirs(self.folder, exist_ok=True)
    self._path = os.path.join(self.folder, LOCK)
    deadline = time.monotonic() + wait_s   # a reader's brief probe (holder)
    while self._fd is None:
      fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        if time.monotonic() < deadline:
          os.close(fd)
          time.sleep(0.01)
          continue
        self._refuse(fd, what)
      if _same_file(fd, self._path):
        self._fd = fd
      else:                    # the holder removed it as we opened it
        os.close(fd)
    os.ftruncate(self._fd, 0)
    os.pwrite(self._fd, f"{os.getpid()}\n".encode("ascii"), 0)
    clean_stale(self.folder)

  def _refuse(self, fd: int, what: str) -> None:
    pid = _read_pid(fd)
    os.close(fd)
    who = ("an unknown process" if pid is None else
           f"this process (pid {pid})" if pid == os.getpid() else
           f"process {pid}")
    raise FolderBusyError(
        f"{self.folder!r} is in use: another {what} writer, {who}, holds "
        f"its lock {self._path!r}. One writer at a time: wait for it to "
        "finish (or close it), or use another folder.")

  @property
  def held(self) -> bool:
    return self._fd is not None

  def release(self) -> None:
    """Releases the lock and removes the lock file (idempotent)."""
    fd, self._fd = self._fd, None
    if fd is not None:
      try:
        if _same_file(fd, self._path):
          os.unlink(self._path)    # while still held: no one else has it
      except OSError:
        pass
      os.close(fd)               # closing the descriptor drops the flock

  def __enter__(self) -> "FolderLock":
    return self

  def __exit__(self, *exc) -> None:
    self.release()

  def __del__(self):
    try:
      self.release()
    except Exception:  # pylint: disable=broad-except  # interpreter shutdown
      pass


def _same_file(fd: int, path: str) -> bool:
  try:
    st = os.stat(path)
  except FileNotFoundError:
    return False
  fst = os.fstat(fd)
  return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def holder(folder: str) -> Optional[int]:
  """The pid of the live writer holding ``folder``'s lock (0: pid not known
  yet), or None when no writer holds it.

  A shared lock is tried for an instant (a writer starting meanwhile waits
  for it, see :class:`FolderLock`); nothing is created.
  """
  path = os.path.join(os.fspath(folder), LOCK)
  try:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
  except OSError:
    return None
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
  except BlockingIOError:
    pid = _read_pid(fd)
    os.close(fd)
    return 0 if pid is None else pid
  os.close(fd)
  return None


def is_temporary(name: str) -> bool:
  """A temporary file of :func:`atomic_write` (``.NAME.tmp-PID-N``)."""
  return bool(_TMP_RE.match(name))


def clean_stale(folder: str) -> list[str]:
  """Deletes the temporaries of dead writers in ``folder``; returns their names."""
  gone = []
  for name in sorted(os.listdir(folder)):
    m = _TMP_RE.match(name)
    if m and not _alive(int(m.group(1))):
      try:
        os.remove(os.path.join(folder, name))
        gone.append(name)
      except FileNotFoundError:  # pragma: no cover - removed meanwhile
        pass
  return gone


# ----------------------------------------------------------------------------
# The atomic writer.
# ----------------------------------------------------------------------------

def _fsync_dir(folder: str) -> None:
  try:
    fd = os.open(folder, os.O_RDONLY)
  except OSError:  # pragma: no cover - e.g. Windows
    return
  try:
    os.fsync(fd)
  except OSError:  # pragma: no cover - some file systems refuse it
    pass
  finally:
    os.close(fd)


def atomic_write(path: str, data: bytes) -> str:
  """Writes ``data`` to ``path`` atomically and durably; returns its SHA-256.

  Through a temporary file in the same folder (``.NAME.tmp-PID-N``),
  ``fsync``, ``os.replace`` and an ``fsync`` of the folder: a reader sees the
  old file or the whole new one, and a crash leaves at most the temporary.
  The file's mode is 0666 as the umask allows.  On an error the temporary is
  removed and the error raised (an ``OSError`` naming the path).
  """
  path = os.fspath(path)
  folder, name = os.path.split(path)
  folder = folder or "."
  tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}-{next(_counter)}")
  try:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                 0o666)
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    try:
      os.remove(tmp)
    except OSError:
      pass
    if isinstance(e, OSError) and e.filename is None:
      raise OSError(e.errno, e.strerror or str(e), path) from e
    raise
  _fsync_dir(folder)
  return hashlib.sha256(data).hexdigest()


def atomic_write_text(path: str, text: str) -> str:
  """:func:`atomic_write` of UTF-8 text."""
  return atomic_write(path, text.encode("utf-8"))


def write_manifest(folder: str, manifest: Mapping[str, Any]) -> None:
  """Writes ``folder/manifest.json`` atomically (sorted keys; a NaN in a
  configuration is written as JSON's ``NaN``, which Python reads back).

  Compact JSON on one line: the json module's C encoder (no indentation)
  keeps rewriting the manifest of a thousand files after each new one cheap.
  """
  text = json.dumps(dict(manifest), sort_keys=True)
  atomic_write_text(os.path.join(folder, MANIFEST), text + "\n")


# ----------------------------------------------------------------------------
# Manifests.
# ----------------------------------------------------------------------------

def read_manifest(folder: str, fmt: str, what: str,
                  version_key: str = "version") -> dict:
  """The manifest of a ``what`` of format ``fmt``, with its entries checked.

  Checks the JSON, the format name, an int version (at ``version_key``) and
  that ``files`` is a list of entries ``{"file": plain name, "role": dict,
  "sha256": hex}``; the caller checks the version and the roles.

  Raises:
    StoreError: no or an unreadable manifest, another format, a mangled
      entry (the message names the manifest and what is wrong).
  """
  path = os.path.join(os.fspath(folder), MANIFEST)
  try:
    with open(path, "rb") as f:
      manifest = json.loads(f.read().decode("utf-8"))
  except FileNotFoundError:
    raise StoreError(f"{folder!r} is not a {what}: it has no {MANIFEST}."
                     ) from None
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise StoreError(f"{path!r} is unreadable ({type(e).__name__}: {e}): "
                     f"{folder!r} is damaged or not a {what}.") from None
  if not isinstance(manifest, dict) or manifest.get("format") != fmt:
    raise StoreError(f"{path!r} is not the manifest of a {what} (format "
                     f"{fmt!r} expected): {folder!r} is not a {what}.")
  version = manifest.get(version_key)
  if isinstance(version, bool) or not isinstance(version, int):
    raise StoreError(f"{path!r} has no valid format version: {folder!r} is "
                     f"damaged.")
  files = manifest.get("files", [])
  if not isinstance(files, list):
    raise StoreError(f"{path!r}: `files` is not a list: {folder!r} is "
                     "damaged.")
  for entry in files:
    if (not isinstance(entry, dict) or not isinstance(entry.get("role"), dict)
        or not isinstance(entry.get("sha256"), str)
        or not _HEX64.match(entry["sha256"])):
      raise StoreError(f"{path!r} lists a mangled entry {entry!r}: {folder!r} "
                       "is damaged.")
    if not is_plain_name(entry.get("file")):
      raise StoreError(
          f"{path!r} lists the file {entry.get('file')!r}, which is not a "
          f"plain name inside {folder!r} (no separators, '..' or absolute "
          "paths): refused.")
  return manifest


def check_listed(folder: str, manifest: Mapping[str, Any], what: str) -> None:
  """Every file the manifest lists is present and the one written there (its
  SHA-256): a writer reopening a folder adds nothing to a damaged one.
  Every file is read once, as a reader would.
  """
  for entry in manifest.get("files", []):
    path = os.path.join(folder, entry["file"])
    if not os.path.isfile(path) or os.path.islink(path):
      raise StoreError(f"{path!r} is listed in the manifest of the {what} "
                       f"{folder!r} but missing: the {what} is incomplete.")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):   # noqa: B023
        digest.update(block)
    if digest.hexdigest() != entry["sha256"]:
      raise _not_as_written(path, folder, f"the {what} is not added to")


def _not_as_written(path: str, folder: str, refused: str = "") -> StoreError:
  """The error of a file whose bytes are not those its manifest's digest
  names (readers and reopening writers say the same)."""
  return StoreError(
      f"{path!r} does not match its SHA-256 in the manifest of {folder!r}: "
      "the file is corrupt (truncated, damaged) or not the one written "
      f"there (rewritten, swapped). Refused{': ' + refused if refused else ''}.")


# ----------------------------------------------------------------------------
# Arrays in files.
# ----------------------------------------------------------------------------

def _canonical(obj: Any) -> str:
  return json.dumps(obj, sort_keys=True, separators=(",", ":"),
                    allow_nan=False)


def npz_bytes(arrays: Mapping[str, np.ndarray], role: Mapping[str, Any]
              ) -> bytes:
  """A ``.npz`` archive of ``arrays`` and ``role``, as bytes (no pickle)."""
  out, special = {}, {}
  for k, a in arrays.items():
    if k == _META:
      raise ValueError(f"array name {_META!r} is reserved.")
    a = np.asarray(a)
    if a.dtype.isbuiltin == 2 or a.dtype.kind == "V":   # ml_dtypes types
      special[k] = a.dtype.name
      a = a.view(f"u{a.dtype.itemsize}")
    elif a.dtype.hasobject:
      raise ValueError(f"array {k!r} has dtype object: not storable.")
    out[k] = a
  out[_META] = np.array(_canonical({"role": dict(role), "dtypes": special}))
  buf = io.BytesIO()
  np.savez(buf, **out)
  return buf.getvalue()


def save_arrays(folder: str, name: str, arrays: Mapping[str, np.ndarray],
                role: Mapping[str, Any]) -> dict:
  """Writes ``folder/name`` (arrays + role) atomically; returns its entry.

  The entry ``{"file": name, "role": role, "sha256": digest}`` goes into the
  folder's manifest, written after this call returns.
  """
  if not is_plain_name(name):
    raise ValueError(f"{name!r} is not a plain file name.")
  digest = atomic_write(os.path.join(folder, name), npz_bytes(arrays, role))
  return {"file": name, "role": json.loads(_canonical(dict(role))),
          "sha256": digest}


def _dtype(name: str) -> np.dtype:
  try:
    return np.dtype(name)
  except TypeError:
    importlib.import_module("ml_dtypes")   # registers bfloat16, float8_*
    return np.dtype(name)


def load_arrays(folder: str, entry: Mapping[str, Any], *, name: str,
                role: Mapping[str, Any], keys: Optional[Sequence[str]] = None,
                what: str = "folder") -> dict[str, np.ndarray]:
  """The arrays of a manifest entry, after checking everything about it.

  Args:
    folder: the folder.
    entry: the manifest's entry (from :func:`read_manifest`).
    name: the file name the role implies (e.g. ``chunk_000003.npz``).
    role: the role the reader expects at this place of the manifest.
    keys: the array names expected (None: any).
    what: what the folder is, for messages.

  Raises:
    StoreError: one line naming the file: another name or role than
      expected, missing, a digest that does not match (rewritten, swapped,
      truncated, bit-flipped), not a readable archive, another role inside,
      other arrays.
  """
  file = entry.get("file")
  path = os.path.join(folder, str(file))
  if not is_plain_name(file) or file != name:
    raise StoreError(f"the manifest of the {what} {folder!r} lists {file!r} "
                     f"where {name!r} belongs: refused.")
  if _canonical(entry.get("role")) != _canonical(dict(role)):
    raise StoreError(f"{path!r}: the manifest gives it the role "
                     f"{entry.get('role')}, expected {dict(role)}: refused.")
  try:
    if os.path.islink(path):
      raise OSError(errno.ELOOP, "a symbolic link, not a file")
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    why = "missing" if isinstance(e, FileNotFoundError) else (
        e.strerror or type(e).__name__)
    raise StoreError(f"{path!r} of the {what} {folder!r} is unreadable "
                     f"({why}): the {what} is incomplete.") from None
  if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
    raise _not_as_written(path, folder)
  try:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}      # reading checks every CRC
    meta = json.loads(str(arrays.pop(_META)))
  except (OSError, ValueError, EOFError, KeyError, TypeError,
          NotImplementedError, RuntimeError, zipfile.BadZipFile) as e:
    raise StoreError(f"{path!r} is not a readable archive ({type(e).__name__}"
                     f": {e}): refused.") from None
  if not isinstance(meta, dict) or _canonical(meta.get("role")) != _canonical(
      dict(role)):
    got = meta.get("role") if isinstance(meta, dict) else meta
    raise StoreError(f"{path!r} holds the role {got}, not {dict(role)}: "
                     "refused.")
  if keys is not None and sorted(arrays) != sorted(keys):
    raise StoreError(f"{path!r} holds the arrays {sorted(arrays)}, expected "
                     f"{sorted(keys)}: refused.")
  for k, dtype in (meta.get("dtypes") or {}).items():
    arrays[k] = arrays[k].view(_dtype(dtype))
  return arrays
