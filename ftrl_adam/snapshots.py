"""Post-hoc EMA snapshots: kept during training, stored, loaded (host side).

:func:`ftrl_adam.posthoc_ema_params` keeps several power EMAs of the
parameters; a :class:`PosthocSnapshotKeeper` stores them every k steps, in
memory or in a folder; :class:`PosthocSnapshots` holds them for
:func:`ftrl_adam.posthoc_ema` (module ``ftrl_adam._synthesis``; the
mathematics in ``ftrl_adam.posthoc``).  A snapshot folder is one of the package's self-verifying
folders (``ftrl_adam._store``; its format is ``ftrl_adam._snapshot_folder``)::

    directory/
      .lock                    the keeper's lock (one keeper at a time)
      manifest.json            the powers, the tree's leaves (key path, shape,
                               dtype) and, per step, its file and SHA-256
      step_000000005.npz       the EMAs of step 5, one array per power and leaf
      step_000000010.npz       ...

A step's file is written, then the manifest that lists it, both atomically,
in a thread of the keeper's (training is not held up); a write that fails
(a full disk) raises at the keeper's next call, and ``keeper.steps`` lists
the steps on disk.  :meth:`PosthocSnapshots.load` checks every file against
the manifest (name, step and powers, SHA-256, leaves) and the whole against
``like``; anything else is a one-line ``ValueError`` naming the file.
Nothing is unpickled: the tree's structure is its key paths in the manifest.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Sequence
from typing import Any, Optional, Union

import jax
import numpy as np

from ftrl_adam import _snapshot_folder as folder
from ftrl_adam import _store
from ftrl_adam import posthoc


# ----------------------------------------------------------------------------
# The snapshots.
# ----------------------------------------------------------------------------

@jax.tree_util.register_pytree_node_class
class PosthocSnapshots:
  """Stored post-hoc EMA snapshots: their steps, powers and parameters.

  A pytree whose leaves are the parameters only: ``steps`` and ``powers`` are
  static, so :func:`ftrl_adam.posthoc_ema` can be jitted with the snapshots
  as an argument (a new set of steps retraces, new values do not).

  Attributes:
    steps: tuple of N ints, the step t_k of each snapshot, non-decreasing.
    powers: tuple of N floats, the exponent p_k of each snapshot.
    params: a tree like the params whose leaves carry a leading axis of size
      N: leaf[k] belongs to snapshot k.

  Build one with :meth:`PosthocSnapshotKeeper.snapshots`,
  :meth:`PosthocSnapshots.load` (a keeper's folder),
  :meth:`PosthocSnapshots.from_trees` (one tree per snapshot) or the
  constructor (stacked leaves).

  Example:
    >>> import numpy as np, ftrl_adam as fa
    >>> snaps = fa.PosthocSnapshots.from_trees(
    ...     steps=[10, 10], powers=[3.0, 7.0],
    ...     trees=[{"w": np.ones(2)}, {"w": np.zeros(2)}])
    >>> len(snaps), snaps.params["w"].shape
    (2, (2, 2))
  """

  def __init__(self, steps: Any, powers: Any, params: Any):
    t = posthoc.check_steps("steps", steps)
    p = posthoc.check_powers("powers", powers, allow_empty=True)
    if len(t) != len(p):
      raise ValueError(f"`steps` and `powers` must have one entry per "
                       f"snapshot, got {len(t)} and {len(p)}.")
    if np.any(np.diff(t) < 0):
      raise ValueError("`steps` must be non-decreasing (snapshots in the "
                       f"order they were taken), got {t.tolist()}.")
    leaves = jax.tree.leaves(params)
    if not leaves:
      raise ValueError("`params` has no array leaves.")
    bad = [np.shape(v) for v in leaves
           if np.ndim(v) == 0 or np.shape(v)[0] != len(t)]
    if bad:
      raise ValueError(
          f"Every leaf of `params` must have a leading axis of size "
          f"{len(t)} (one entry per snapshot), found shapes {bad[:3]}.")
    self.steps = tuple(int(v) for v in t)
    self.powers = tuple(float(v) for v in p)
    self.params = params

  @classmethod
  def from_trees(cls, steps: Any, powers: Any,
                 trees: Sequence[Any]) -> "PosthocSnapshots":
    """Snapshots from one parameter tree per snapshot (stacked on axis 0).

    Raises:
      ValueError: the trees differ in structure, shape or dtype, or their
        number differs from that of ``steps``.
    """
    trees = list(trees)
    if not trees:
      raise ValueError("Too few snapshots: `trees` is empty.")
    if len(trees) != len(np.atleast_1d(steps)):
      raise ValueError(f"`trees` must hold one tree per step: got "
                       f"{len(trees)} trees and {len(np.atleast_1d(steps))} "
                       "steps.")
    first, struct = folder.layout_of(trees[0]), jax.tree.structure(trees[0])
    for k, tree in enumerate(trees[1:], start=1):
      why = folder.mismatch(first, folder.layout_of(tree))
      if why is None and jax.tree.structure(tree) != struct:
        why = f"tree structure {jax.tree.structure(tree)} instead of {struct}"
      if why is not None:
        raise ValueError(f"Snapshot trees do not match: tree {k} has {why}.")
    stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                           *trees)
    return cls(steps, powers, stacked)

  @classmethod
  def load(cls, directory: Union[str, os.PathLike],
           like: Any = None) -> "PosthocSnapshots":
    """The snapshots a :class:`PosthocSnapshotKeeper` wrote to ``directory``.

    Every file is checked against the folder's manifest (its name, step and
    powers, its SHA-256, its leaves) before it is used; no lock is taken, so
    a read-only folder loads.

    Args:
      directory: the keeper's folder.
      like: optional, one EMA tree as :func:`ftrl_adam.posthoc_emas_of`
        returns it (or its ``jax.ShapeDtypeStruct`` version): the snapshots
        are returned in its structure, and its leaves' shapes and dtypes must
        be the stored ones (nothing is cast).  Without it the tree is rebuilt
        from the stored key paths as nested dicts and lists.

    Raises:
      ValueError: no such folder, not a snapshot folder (an Orbax folder of
        an earlier ftrl_adam included), no snapshots, a missing, swapped,
        rewritten or corrupt file (one line naming it), or snapshots that do
        not match ``like``.
    """
    return _load(os.fspath(directory), like)

  def __len__(self) -> int:
    return len(self.steps)

  @property
  def sigma_rels(self) -> tuple:
    """The relative width of each snapshot's profile."""
    return tuple(float(s) for s in posthoc.sigma_rel_of_power(self.powers))

  def __repr__(self) -> str:
    times = sorted(set(self.steps))
    span = f"steps {times[0]}..{times[-1]}" if times else "no steps"
    widths = ", ".join(f"{s:.4g}" for s in sorted(set(self.sigma_rels)))
    return f"PosthocSnapshots({len(self)} snapshots, {span}, sigma_rel {widths})"

  def tree_flatten(self):
    return (self.params,), (self.steps, self.powers)

  @classmethod
  def tree_unflatten(cls, aux, children):
    obj = object.__new__(cls)
    obj.steps, obj.powers = aux
    (obj.params,) = children
    return obj


def _load(directory: str, like: Any) -> PosthocSnapshots:
  steps, powers, layout, stacked = folder.load(directory)
  return PosthocSnapshots(steps, powers, folder.restructure(
      layout, stacked, like, repr(directory)))


# ----------------------------------------------------------------------------
# The keeper.
# ----------------------------------------------------------------------------

def _host(tree: Any) -> Any:
  """A host (NumPy) copy of a tree of arrays."""
  return jax.tree.map(lambda v: np.array(v), jax.device_get(tree))


def _single(name: str, value: Any) -> np.ndarray:
  """``value`` with any leading vmapped axes removed: every configuration
  must hold the same count (a scalar) or powers (a vector)."""
  arr = np.asarray(jax.device_get(value))
  rows = arr.reshape(-1) if name == "count" else arr.reshape(-1, arr.shape[-1])
  if not np.all(rows == rows[:1]):
    raise ValueError(f"The PosthocEmaState's `{name}` differs across the "
                     "vmapped configurations; a keeper needs one value.")
  return rows[0]


class PosthocSnapshotKeeper:
  """Stores the EMAs of :func:`ftrl_adam.posthoc_ema_params` every ``every`` steps.

  Call :meth:`update` with the optimizer state (or a ``TrainState``, an
  ``nnx.Optimizer``, anything holding one ``PosthocEmaState``) after each
  training step, or after each chunk of ``every`` steps: when the state's
  step count is a multiple of ``every`` (and not stored yet), the EMAs are
  copied to host memory, and, with ``directory``, written to that folder in
  a thread of the keeper's, so training goes on meanwhile (one write in
  flight at a time).  A new keeper on the folder continues it.  :meth:`save`
  stores the current step regardless of ``every`` (e.g. the last one).
  Vmapped states work: the snapshots keep the configuration axes.  Single
  process: the EMAs are gathered to the host.

  * **One writer**: a folder keeper holds the folder's lock until
    :meth:`close` (or until it is collected, or the process dies); a second
    keeper on the folder is refused with a ``ValueError`` naming the holder.
  * **Errors where they happen**: a ``directory`` that is a file is refused
    at construction; a write that fails (e.g. a full disk) raises an
    ``OSError`` naming the step at the keeper's first call after it failed
    (at the latest at the next store, :meth:`wait` or :meth:`close`), and
    :attr:`steps` lists only the steps on disk.  Nothing waits at exit
    beyond the write in flight.

  Args:
    every: store a snapshot every k >= 1 optimizer steps.
    directory: None (host memory) or a folder (created if needed; see
      ``ftrl_adam.snapshots`` for its layout).

  Raises:
    ValueError: a bad ``every``; a ``directory`` that is a file, a foreign
      or damaged folder, or one another keeper holds.

  Example:
    >>> import jax.numpy as jnp, optax, ftrl_adam as fa
    >>> tx = optax.chain(optax.sgd(0.1), fa.posthoc_ema_params())
    >>> params = {"w": jnp.ones(3)}
    >>> state = tx.init(params)
    >>> keeper = fa.PosthocSnapshotKeeper(every=5)
    >>> for _ in range(12):
    ...   updates, state = tx.update(params, state, params)
    ...   params = optax.apply_updates(params, updates)
    ...   _ = keeper.update(state)
    >>> keeper.steps
    (5, 10)
    >>> keeper.save(state)              # the last step too
    True
    >>> keeper.snapshots().steps
    (5, 5, 10, 10, 12, 12)
  """

  def __init__(self, every: int, directory: Optional[
      Union[str, os.PathLike]] = None):
    if isinstance(every, (bool, np.bool_)) or not isinstance(
        every, (int, np.integer)) or every < 1:
      raise ValueError(f"`every` must be an integer >= 1, got {every!r}.")
    self.every = int(every)
    self.directory = None if directory is None else os.fspath(directory)
    self._records: list = []       # memory: (step, tuple of host trees)
    self._powers: Optional[list] = None
    self._layout: Optional[list] = None
    self._saved: set = set()       # the steps stored (on disk for a folder)
    self._pending = None           # (step, future) of the write in flight
    self._failed = None            # (step, exception) not raised yet
    self._pool = None
    self._lock = None
    self._manifest: dict = {}
    if self.directory is not None:
      self._lock = _store.FolderLock(self.directory, folder.WHAT,
                                     check=self._refuse_foreign)
      try:
        self._open()
      except BaseException:
        self._lock.release()
        raise

  def _refuse_foreign(self) -> None:
    if not os.path.exists(os.path.join(self.directory, _store.MANIFEST)):
      folder.refuse_foreign(self.directory)

  def _open(self) -> None:
    if not os.path.exists(os.path.join(self.directory, _store.MANIFEST)):
      folder.refuse_foreign(self.directory)
      self._manifest = {"format": folder.FORMAT, "version": folder.VERSION,
                        "powers": None,
                        "leaves": None, "files": []}
      _store.write_manifest(self.directory, self._manifest)
      return
    self._manifest = folder.read(self.directory)
    _store.check_listed(self.directory, self._manifest, folder.WHAT)
    listed = {e["file"] for e in self._manifest["files"]}
    for n in os.listdir(self.directory):   # written, never listed: a killed keeper
      if n.startswith("step_") and n.endswith(".npz") and n not in listed:
        os.remove(os.path.join(self.directory, n))
    self._saved = {e["role"]["step"] for e in self._manifest["files"]}
    if self._saved:
      self._powers, self._layout = (self._manifest["powers"],
                                    self._manifest["leaves"])

  @property
  def steps(self) -> tuple:
    """The steps stored so far, in order (for a folder: the steps on disk,
    after the write in flight)."""
    self._collect(block=True)
    return tuple(sorted(self._saved))

  def _collect(self, block: bool) -> None:
    """Takes in the write in flight if it is done (or waits for it)."""
    if self._pending is None:
      return
    step, future = self._pending
    if not block and not future.done():
      return
    self._pending = None
    error = future.exception()
    if error is None:
      self._saved.add(step)
    else:
      self._failed = (step, error)

  def _raise_failure(self) -> None:
    if self._failed is None:
      return
    (step, e), self._failed = self._failed, None
    why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    path = os.path.join(self.directory, folder.file_name(step))
    raise OSError(
        getattr(e, "errno", None),
        f"the snapshot of step {step} could not be written to {path!r} "
        f"({type(e).__name__}: {why}); {self.directory!r} holds the steps "
        f"{sorted(self._saved)}. Free space (or fix the folder) and keep "
        "training: the next snapshots are stored again.") from e

  def _count(self, opt_state: Any):
    if self.directory is not None and not self._lock.held:
      raise ValueError(f"This PosthocSnapshotKeeper of {self.directory!r} is "
                       "closed: make a new one to continue.")
    self._collect(block=False)
    self._raise_failure()
    state = posthoc.posthoc_state_of(opt_state)
    return int(_single("count", state.count)), state

  def _known(self, count: int) -> bool:
    return count in self._saved or (
        self._pending is not None and self._pending[0] == count)

  def update(self, opt_state: Any) -> bool:
    """Stores the EMAs if the step count is a multiple of ``every``.

    Returns:
      True if a snapshot was stored (for a folder: handed to the writer).

    Raises:
      OSError: an earlier snapshot's write failed (see the class).
    """
    count, state = self._count(opt_state)
    if count == 0 or count % self.every or self._known(count):
      return False
    return self._store(count, state)

  def save(self, opt_state: Any) -> bool:
    """Stores the EMAs of the current step now (unless already stored).

    Raises:
      ValueError: no EMA update has happened yet (step 0).
      OSError: an earlier snapshot's write failed (see the class).
    """
    count, state = self._count(opt_state)
    if count == 0:
      raise ValueError("No snapshot at step 0: the EMAs have not been "
                       "updated yet (call save after a training step).")
    if self._known(count):
      return False
    return self._store(count, state)

  def _store(self, count: int, state: Any) -> bool:
    powers = [float(v) for v in _single("powers", state.powers)]
    if self._powers is None:
      self._powers = powers
    elif powers != self._powers:
      raise ValueError(
          f"The EMA powers changed at step {count}: {powers} instead of "
          f"{self._powers} (one keeper per posthoc_ema_params).")
    emas = _host(state.emas)
    layout = folder.layout_of(emas[0])
    if self._layout is None:
      self._layout = layout
    elif (why := folder.mismatch(self._layout, layout)) is not None:
      raise ValueError(f"Snapshot trees do not match: the EMAs at step "
                       f"{count} have {why}.")
    if self.directory is None:
      self._records.append((count, emas))
      self._saved.add(count)
      return True
    self._collect(block=True)          # one write in flight at a time
    self._raise_failure()
    if self._pool is None:
      self._pool = concurrent.futures.ThreadPoolExecutor(
          max_workers=1, thread_name_prefix="ftrl_adam-snapshots")
    self._pending = (count, self._pool.submit(self._write, count, emas))
    return True

  def _write(self, count: int, emas: tuple) -> None:
    """In the writer thread: the step's file, then the manifest listing it."""
    arrays = {f"e{k}_{i}": leaf for k, tree in enumerate(emas)
              for i, leaf in enumerate(jax.tree.leaves(tree))}
    entry = _store.save_arrays(self.directory, folder.file_name(count), arrays,
                               {"step": count, "powers": self._powers})
    manifest = dict(self._manifest, powers=self._powers, leaves=self._layout,
                    files=[*self._manifest["files"], entry])
    _store.write_manifest(self.directory, manifest)
    self._manifest = manifest

  def wait(self) -> None:
    """Waits for the write in flight (nothing to do in memory).

    Raises:
      OSError: a snapshot's write failed (see the class).
    """
    self._collect(block=True)
    self._raise_failure()

  def close(self) -> None:
    """Finishes the write in flight and releases the folder (idempotent).

    Raises:
      OSError: a snapshot's write failed (the folder is released first).
    """
    try:
      self._collect(block=True)
    finally:
      if self._pool is not None:
        self._pool.shutdown(wait=True)
        self._pool = None
      if self._lock is not None:
        self._lock.release()
    self._raise_failure()

  def snapshots(self, like: Any = None) -> PosthocSnapshots:
    """All stored snapshots, oldest first, the EMAs of each step in order.

    Args:
      like: the structure to return them in, checked as in
        :meth:`PosthocSnapshots.load` (shapes and dtypes must match).

    Raises:
      ValueError: nothing stored yet, or snapshots that do not fit ``like``.
      OSError: a snapshot's write failed (see the class).
    """
    if self.directory is not None:
      self.wait()
      return _load(self.directory, like)
    if not self._records:
      raise ValueError("Too few snapshots: the keeper has stored none yet "
                       f"(it stores every {self.every} steps).")
    records = sorted(self._records, key=lambda r: r[0])
    steps = [s for s, emas in records for _ in emas]
    powers = [p for _ in records for p in self._powers]
    trees = [tree for _, emas in records for tree in emas]
    snaps = PosthocSnapshots.from_trees(steps, powers, trees)
    if like is None:
      return snaps
    return PosthocSnapshots(snaps.steps, snaps.powers, folder.restructure(
        self._layout, jax.tree.leaves(snaps.params), like, "memory"))
