"""Recording the gradients a regret monitor saw, for replay (host side).

:func:`ftrl_adam.regret_monitor` built with ``record_every=B`` keeps the last
B monitored gradients in its state; a :class:`RegretRecorder` called after the
training steps appends them to a folder, and :func:`recorded_gradients`
reads them back (:func:`ftrl_adam.regret.replay` plays them in the
beta-grid).  The folder is one of the package's self-verifying folders
(``ftrl_adam._store``)::

    directory/
      .lock                          the writer's lock (one recorder at a time)
      manifest.json                  format, coordinates, rounds and, per
                                     chunk, its rounds and SHA-256
      g_000000001_000000004.npz      rounds 1-4 (float32[4, d] and the rounds)
      g_000000005_000000008.npz      ...

A chunk is written atomically, then the manifest that lists it: a recorder
killed in between leaves a chunk the manifest does not list, which a reader
ignores and the next recorder deletes.  A reader checks every chunk against
the manifest (name, rounds, digest, shape) and refuses anything else with a
one-line ``ValueError`` naming the file.
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional, Union

import jax
import numpy as np

from ftrl_adam import _checks
from ftrl_adam import _store
from ftrl_adam.monitor import state_of

FORMAT = "ftrl_adam.gradient_recording"
VERSION = 2          # 2: per-chunk roles and SHA-256, one writer (a lock)
_WHAT = "gradient recording"
_CHUNK_RE = re.compile(r"^g_\d{9}_\d{9}\.npz$")


def _chunk_name(first: int, last: int) -> str:
  return f"g_{first:09d}_{last:09d}.npz"


def _header(directory: str, manifest: dict) -> dict:
  """The manifest's version and header fields, checked."""
  path = os.path.join(directory, _store.MANIFEST)
  if manifest["version"] != VERSION:
    old = manifest["version"] < VERSION
    raise _store.StoreError(
        f"{directory!r} is a {_WHAT} of format version {manifest['version']}"
        + (", written by an earlier ftrl_adam without content digests: it "
           "cannot be verified, so it is refused (record it again)."
           if old else f" (this ftrl_adam reads {VERSION}): upgrade ftrl_adam."))
  ints = ("rounds", "max_rounds")
  if (any(isinstance(manifest.get(k), bool)
          or not isinstance(manifest.get(k), int) for k in ints)
      or not (manifest.get("d") is None or isinstance(manifest["d"], int))):
    raise _store.StoreError(f"{path!r} has a mangled header: {directory!r} is "
                            "damaged.")
  return manifest


def _read(directory: str) -> dict:
  """The recording's manifest, header and chunk rounds checked (no data read)."""
  manifest = _header(directory, _store.read_manifest(directory, FORMAT, _WHAT))
  expect = 1
  for entry in manifest["files"]:
    role = entry["role"]
    first, last = role.get("first"), role.get("last")
    if (not isinstance(first, int) or not isinstance(last, int)
        or first != expect or last < first):
      raise _store.StoreError(
          f"the manifest of the {_WHAT} {directory!r} lists "
          f"{entry['file']!r} for rounds {first}-{last}, expected rounds from "
          f"{expect} on: refused.")
    expect = last + 1
  if expect - 1 != manifest["rounds"]:
    raise _store.StoreError(
        f"the manifest of the {_WHAT} {directory!r} says {manifest['rounds']} "
        f"rounds but lists chunks up to round {expect - 1}: refused.")
  return manifest


def recorded_gradients(directory: Union[str, os.PathLike]) -> np.ndarray:
  """The gradients a :class:`RegretRecorder` wrote, as one float32 array.

  Row t - 1 is round t's gradient on the monitored coordinates (the leaves
  ravelled and concatenated in ``jax.tree.leaves`` order, the subset's
  entries in index order, or the sketch's buckets).  Every chunk is checked
  against the manifest: its name and rounds, its SHA-256, its shape.

  Args:
    directory: the recording's folder (read only: no lock is taken).

  Returns:
    A ``(T, d)`` float32 NumPy array (T = the rounds recorded).

  Raises:
    ValueError: not a recording, a missing, moved, swapped, rewritten or
      corrupt chunk (one line naming the file), or no round recorded yet.

  Example:
    >>> import tempfile, jax.numpy as jnp, optax, ftrl_adam as fa
    >>> folder = tempfile.mkdtemp()
    >>> tx = fa.regret_monitor(optax.sgd(0.1), radius=1.0, b1=0.9,
    ...                        record_every=2)
    >>> recorder = fa.RegretRecorder(folder, max_rounds=100)
    >>> params = jnp.zeros(2)
    >>> state = tx.init(params)
    >>> for t in range(1, 4):
    ...   _, state = tx.update(jnp.array([t, -t], jnp.float32), state, params)
    ...   _ = recorder.update(state)     # writes rounds 1-2 at step 2
    >>> _ = recorder.flush(state)        # and round 3
    >>> fa.recorded_gradients(folder).tolist()
    [[1.0, -1.0], [2.0, -2.0], [3.0, -3.0]]
  """
  directory = os.fspath(directory)
  manifest = _read(directory)
  parts = []
  for entry in manifest["files"]:
    first, last = entry["role"]["first"], entry["role"]["last"]
    arrays = _store.load_arrays(
        directory, entry, name=_chunk_name(first, last),
        role={"first": first, "last": last}, keys=("g",), what=_WHAT)
    g = arrays["g"]
    want = (last - first + 1, manifest["d"])
    if g.dtype != np.float32 or g.shape != want:
      raise _store.StoreError(
          f"{os.path.join(directory, entry['file'])!r} holds {g.dtype}"
          f"{list(g.shape)}, expected float32{list(want)}: refused.")
    parts.append(g)
  if not parts:
    raise ValueError(f"recording {directory!r} holds no round yet.")
  return np.concatenate(parts, axis=0)


class RegretRecorder:
  """Writes the monitored gradients to a folder of chunks, during training.

  Host side, outside ``jit``: build the monitor with
  ``regret_monitor(..., record_every=B)`` (it keeps the last B monitored
  gradients in its state) and call :meth:`update` with the optimizer state
  after each step (or every B steps): when B new rounds are buffered, they are
  appended to ``directory`` as one ``.npz`` chunk, then ``manifest.json``
  lists it with its rounds and SHA-256 (both written atomically: an
  interrupted write leaves the recording as it was).  :meth:`flush` writes
  the rounds buffered so far (call it after the last step); :meth:`close`
  releases the folder.

  * **One writer**: the recorder holds the folder's lock from construction to
    :meth:`close` (or until it is collected, or the process dies); a second
    recorder on the folder, in this process or another, is refused with a
    ``ValueError`` naming the holder's pid.
  * **Bounded**: at most ``max_rounds`` rounds; a round beyond is refused
    with a ``ValueError`` (the rounds that fit are written first).
  * **Resumable with the run**: a new recorder on an existing folder
    continues it.  Rounds already on disk are skipped (a run resumed from a
    checkpoint replays them), and the monitor's coordinates must be the same
    (same parameter layout, ``coords`` and ``seed``).
  * Read it back with :func:`recorded_gradients`, or replay it in the
    beta-grid with :func:`ftrl_adam.regret.replay`.

  The state must be unbatched (one run).

  Args:
    directory: the folder (created if needed).
    max_rounds: the most rounds the recording may hold, an int >= 1 (its
      size is ``max_rounds * coords * 4`` bytes).
    name: the monitor's ``name``, when the state holds several.

  Raises:
    ValueError: a bad ``max_rounds`` (or below the rounds already recorded),
      a folder that holds files but no recording, a damaged recording, or a
      folder another recorder holds.

  Example:
    >>> import tempfile, jax.numpy as jnp, optax, ftrl_adam as fa
    >>> folder = tempfile.mkdtemp()
    >>> tx = fa.regret_monitor(optax.sgd(0.1), radius=1.0, b1=0.9,
    ...                        record_every=4)
    >>> recorder = fa.RegretRecorder(folder, max_rounds=10)
    >>> params, state = jnp.zeros(3), tx.init(jnp.zeros(3))
    >>> for t in range(9):
    ...   _, state = tx.update(jnp.ones(3), state, params)
    ...   _ = recorder.update(state)
    >>> recorder.rounds                   # two chunks of 4; round 9 buffered
    8
    >>> recorder.close()                  # e.g. the run stops here
    >>> with fa.RegretRecorder(folder, max_rounds=10) as resumed:
    ...   resumed.flush(state)
    1
  """

  def __init__(self, directory: Union[str, os.PathLike], *, max_rounds: int,
               name: Optional[str] = None):
    self.max_rounds = _checks.check_positive_int("max_rounds", max_rounds)
    if name is not None and not isinstance(name, str):
      raise ValueError(f"`name` must be a string or None, got {name!r}.")
    self.name = name
    self.directory = os.fspath(directory)
    self._lock = _store.FolderLock(self.directory, _WHAT,
                                   check=self._refuse_foreign)
    try:
      self._manifest = self._open()
    except BaseException:
      self._lock.release()
      raise

  def _refuse_foreign(self) -> list:
    names = [n for n in os.listdir(self.directory) if not n.startswith(".")]
    if names and _store.MANIFEST not in names:
      raise ValueError(
          f"`directory` {self.directory!r} holds files but no "
          f"{_store.MANIFEST}: not a gradient recording (give an empty or "
          "new folder).")
    return names

  def _open(self) -> dict:
    names = self._refuse_foreign()
    if _store.MANIFEST not in names:
      manifest = {"format": FORMAT, "version": VERSION, "d": None,
                  "coords_id": None, "fraction": None, "rounds": 0,
                  "max_rounds": self.max_rounds, "files": []}
      _store.write_manifest(self.directory, manifest)
      return manifest
    manifest = _read(self.directory)
    _store.check_listed(self.directory, manifest, _WHAT)
    listed = {e["file"] for e in manifest["files"]}
    for n in names:      # a chunk of a killed recorder that was never listed
      if _CHUNK_RE.match(n) and n not in listed:
        os.remove(os.path.join(self.directory, n))
    if manifest["rounds"] > self.max_rounds:
      raise ValueError(
          f"`max_rounds` = {self.max_rounds} is below the "
          f"{manifest['rounds']} rounds already in {self.directory!r}.")
    return manifest

  @property
  def rounds(self) -> int:
    """The rounds written so far."""
    return int(self._manifest["rounds"])

  def close(self) -> None:
    """Releases the folder to another recorder (nothing is flushed)."""
    self._lock.release()

  def __enter__(self) -> "RegretRecorder":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def update(self, opt_state: Any) -> int:
    """Writes the buffered rounds once ``record_every`` of them are new.

    Returns:
      The number of rounds written (0 if none).

    Raises:
      ValueError: no monitor with ``record_every`` in the state, rounds lost
        (more than ``record_every`` steps since the last write), other
        coordinates than the recording's, ``max_rounds`` exceeded, or a
        closed recorder.
    """
    return self._write(opt_state, force=False)

  def flush(self, opt_state: Any) -> int:
    """Writes every buffered round not on disk yet (e.g. after the last step).

    Returns:
      The number of rounds written.

    Raises:
      ValueError: as :meth:`update`.
    """
    return self._write(opt_state, force=True)

  def _rows(self, opt_state: Any, force: bool):
    """(the new rounds' gradients [n, d] or None, coords_id, fraction)."""
    st = state_of(opt_state, self.name)
    leaves = [np.asarray(x) for x in jax.tree.leaves(st.recent)]
    if not leaves:
      raise ValueError(
          "The monitor keeps no gradients to record: build it with "
          "`regret_monitor(..., record_every=B)`.")
    if np.ndim(st.count) != 0:
      raise ValueError("`RegretRecorder` records one run: the monitor's state "
                       f"is batched (count of shape {np.shape(st.count)}).")
    count, done = int(st.count), self.rounds
    size = leaves[0].shape[0]
    if count <= done:
      return None, None, None   # a resumed run recomputing rounds on disk
    if count - done > size:
      raise ValueError(
          f"Rounds {done + 1}-{count - size} were not recorded: the monitor "
          f"keeps the last {size} gradients (record_every), and the recording "
          f"{self.directory!r} ends at round {done}. Call `update` at least "
          f"every {size} steps.")
    if not force and count - done < size:
      return None, None, None
    rows = [(t - 1) % size for t in range(done + 1, count + 1)]
    g = np.concatenate([x.reshape(size, -1) for x in leaves], axis=1)[rows]
    return g, int(st.coords_id), float(st.fraction)

  def _write(self, opt_state: Any, force: bool) -> int:
    if not self._lock.held:
      raise ValueError(f"This RegretRecorder of {self.directory!r} is closed: "
                       "make a new one to continue the recording.")
    g, cid, frac = self._rows(opt_state, force)
    if g is None:
      return 0
    manifest, done = dict(self._manifest), self.rounds
    if manifest["d"] is None:
      manifest.update(d=int(g.shape[1]), coords_id=cid, fraction=frac)
    elif (manifest["d"], manifest["coords_id"]) != (g.shape[1], cid):
      raise ValueError(
          f"The recording {self.directory!r} holds other coordinates "
          f"({manifest['d']} of selection {manifest['coords_id']}) than this "
          f"monitor ({g.shape[1]} of selection {cid}): same parameter layout, "
          "`coords` and `seed` are needed to continue it.")
    fits = g[:self.max_rounds - done]
    if len(fits):
      first, last = done + 1, done + len(fits)
      entry = _store.save_arrays(
          self.directory, _chunk_name(first, last),
          {"g": fits.astype(np.float32)}, {"first": first, "last": last})
      manifest.update(files=[*manifest["files"], entry], rounds=last,
                      max_rounds=self.max_rounds)
      _store.write_manifest(self.directory, manifest)
      self._manifest = manifest     # only once the manifest is on disk
    if len(fits) < len(g):
      raise ValueError(
          f"The recording {self.directory!r} is full: max_rounds = "
          f"{self.max_rounds} rounds recorded, round {self.max_rounds + 1} "
          "refused (give a larger `max_rounds` to a new RegretRecorder on "
          "this folder to continue, or start a new folder).")
    return len(fits)
