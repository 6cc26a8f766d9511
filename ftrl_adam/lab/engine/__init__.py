"""Vectorised grids: a tidy table of cells, one compiled program, every device.

The engine behind the (b1, b2) regret grid and the vectorised training
studies.  A feature supplies a *per-cell function* and a *table*; the engine
does the rest:

1. **Axes and the table.**  :func:`linspace`, :func:`logspace`,
   :func:`logspace_one_minus` (b values log-spaced in ``1 - b``), :func:`seeds`,
   explicit lists, or :func:`parse_axis` for command-line specs; :func:`product`
   makes the Cartesian product as a tidy table: ``dict name -> 1-D array``, one
   entry per cell.
2. **Execution.**  :func:`run_grid` jits ``jax.vmap(cell_fn)`` once, runs the
   table in chunks of ``chunk_size`` cells (bounding device memory), each
   chunk's cell axis sharded over every device JAX sees
   (``Mesh(jax.devices(), ("cells",))``), padded to a fixed shape so there is
   exactly one compilation, padding dropped after.  On CPU,
   :func:`use_cpu_cores` (called by the ``ftrl-adam`` command) makes one
   device per core, so a chunk's shards run on all cores at once.
3. **No lost work.**  With ``out_dir`` every finished chunk is written
   atomically with a manifest holding the run's fingerprint; the same call
   again resumes; a different run never mixes with old results
   (:class:`ResultsFolderError`).
4. **Output.**  :func:`write_csv` (one row per cell), :func:`write_json` (the
   configuration and versions); heatmaps live in :mod:`ftrl_adam.plots`.  This
   module imports neither plotting nor the CLI.

Reproducibility contract (measured with jax/jaxlib 0.10 on CPU; see
``tests/test_grid_engine.py``):

* **Chunk size and device count do not change a bit.**  Two things in XLA
  would otherwise break this, and the engine neutralises both.
  (a) XLA:CPU hands a reduction to the YNNPACK library when its cost model
  finds the operand big enough (XNNPACK and oneDNN fusions work the same way);
  the operand's size includes the cell axis, so whether a ``jnp.sum`` inside a
  cell ran XLA's loop or the library's - whose summation order differs -
  depended on how many cells shared a device.  :func:`run_grid` compiles
  with those library fusions off (:func:`compiler_options`).  (b) A batch of
  exactly one cell is squeezed back to unbatched shapes, which changes the
  kernels a ``dot`` gets (next point); the engine gives every device at least
  :data:`MIN_CELLS_PER_DEVICE` cells.
* **Grid cell == single ``jax.jit(cell_fn, compiler_options=grid.compiler_options())``
  call** for the ftrl_adam transforms and the regret games (tested), and in
  our measurements for elementwise maths, transcendental functions,
  reductions, ``lax.scan``/``while`` and PRNG.  This is best effort, not a
  guarantee of XLA: it may contract ``a*b + c`` into a fused multiply-add
  or fold constants differently when the fusions of the batched and the
  unbatched program differ; a ``jax.lax.optimization_barrier`` around data
  and loss inputs pins such boundaries (``ftrl_adam.studies`` does this).
  It does **not** hold for contractions (``@``,
  ``jnp.dot``, ``einsum``, ``tensordot``, convolutions): XLA rewrites a small
  unbatched dot into an elementwise multiply and a reduce loop, while the
  batched dot of the grid goes to a dot kernel with another summation order, so
  the last bits differ.  Write small contractions as ``jnp.sum(a * b, axis=...)``
  where cell-vs-grid equality matters.
* **Grid == plain ``jax.jit(jax.vmap(cell_fn))``** over the whole table when
  the plain call is compiled with the same options:
  ``jax.jit(f, compiler_options=grid.compiler_options())`` (or with
  ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=`` set for the process).
  With XLA's default options a big enough reduction takes the library path and
  differs in the last bits.  Pass ``compiler_options={}`` to :func:`run_grid` to
  trade this reproducibility for XLA's defaults.
* GPU/TPU: untested here.  Reduction and GEMM algorithms are chosen by shape,
  so bit equality across chunk sizes and device counts is not promised there;
  a resume must use the same ``chunk_size`` (enforced), and should use the
  same device count.

What ``cell_fn`` must be: a pure JAX function of one cell (a dict of scalar
arrays, one per table column; no Python ``if`` on their values, no side
effects that matter), returning a flat dict of numeric arrays of fixed shapes
whose names differ from the table's columns.  Randomness comes from the seed
column (:func:`key_from_seed`).  Everything else it depends on (horizon,
dimension, game, model) belongs in ``config``: the fingerprint that guards
``out_dir`` holds a digest of ``cell_fn``'s own code and closure values, but
cannot see everything code can reach.

Multi-host: the code uses only multi-controller-safe APIs - the global mesh
over ``jax.devices()``, inputs built with ``jax.make_array_from_callback``
(each process fills its own devices' shards from its copy of the table),
outputs gathered with ``multihost_utils.process_allgather``; process 0 alone
reads and writes ``out_dir`` and prints progress, and broadcasts the finished
chunks to the other processes (``broadcast_one_to_all``) so that all run the
same chunks.  Every process must call :func:`run_grid` with the same arguments.
Tested: one process with 1 and 8 (simulated CPU) devices, a resume on a
different device count, and two processes under ``jax.distributed`` on
127.0.0.1 writing the table of one (tests/test_beta_grid_open.py).  Not
tested: several hosts.
"""

from __future__ import annotations

import collections
import csv
import functools
import io
import json
import os
import platform
import time
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ftrl_adam import _store
from ftrl_adam.lab.engine import _folder as _grid_io
from ftrl_adam.lab.engine._folder import ResultsFolderError
from ftrl_adam.lab.identity import code_digest

__all__ = (
    "ChunkInfo",
    "MIN_CELLS_PER_DEVICE",
    "ResultsFolderError",
    "compile_ahead",
    "compiler_options",
    "fast_compiler_options",
    "key_from_seed",
    "linspace",
    "logspace",
    "logspace_one_minus",
    "parse_axis",
    "pivot",
    "product",
    "report_rounds",
    "run_grid",
    "run_info",
    "seeds",
    "use_cpu_cores",
    "select",
    "write_csv",
    "write_json",
)

Table = dict[str, np.ndarray]
CellFn = Callable[[dict[str, jax.Array]], Mapping[str, jax.Array]]

# Never run a per-device batch of one cell: XLA drops a size-1 batch dimension,
# which sends a batched dot back to the unbatched kernels (see module doc).
MIN_CELLS_PER_DEVICE = 2

# XLA:CPU library fusions whose use depends on operand size (module doc).
_CPU_LIBRARY_FUSION_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "",
    "xla_cpu_experimental_xnn_fusion_type": "",
    "xla_cpu_experimental_onednn_fusion_type": "",
    # XLA CPU's newer (MLIR) fusion emitters round some element-wise chains
    # differently depending on the fusion they land in, and fusions differ
    # between a batched and an unbatched program: measured on jax 0.10 with the
    # exact l2-ball argmin of ftrl_adam (1-ulp differences from step 2 on,
    # tests/test_ftrl_vmap.py).  The classic emitters do not.
    "xla_cpu_use_fusion_emitters": False,
}


# ============================================================================
# One XLA device per CPU core.
# ============================================================================

def use_cpu_cores(n: Optional[int] = None) -> Optional[int]:
  """Splits the CPU into one XLA device per core, before JAX starts; the count set.

  XLA:CPU runs a device's program as a sequence of kernels, each split over
  the cores.  A game's round is about twenty small kernels over the cells'
  state, so a scan over rounds on one device is bound by the per-kernel cost
  (thread hand-offs), not by arithmetic.  With one device per core, the
  engine shards a chunk's cells over the devices and each core runs its own
  shard's whole loop: the default beta-grid ran 2.2-2.5x faster on the 2
  cores of the development machine (``ftrl-adam bench grid``).  The
  ``ftrl-adam`` command calls this first; call it at the top of your own
  script, before any JAX computation, to get the same.

  Results stay deterministic: the same arguments on the same device count
  give the same bytes (with ``reproducible=True`` the device count does not
  matter either; see the module docstring).

  Does nothing (returns None) when the count was already chosen
  (``JAX_NUM_CPU_DEVICES``, ``jax.config.update("jax_num_cpu_devices", k)``
  or ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS``), or when
  JAX's backends have started (too late to change; one device stays).

  Args:
    n: devices to make; default the CPU cores this process may run on
      (``os.sched_getaffinity``, else ``os.cpu_count()``).

  Returns:
    The device count requested, or None when nothing was changed.
  """
  if n is None:
    try:
      n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
      n = os.cpu_count() or 1
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"`n` must be an integer >= 1 or None, got {n!r}.")
  if (jax.config.jax_num_cpu_devices != -1
      or "xla_force_host_platform_device_count" in os.environ.get(
          "XLA_FLAGS", "")):
    return None
  try:
    jax.config.update("jax_num_cpu_devices", int(n))
  except RuntimeError:   # the backends are up: too late
    return None
  return int(n)


# ============================================================================
# Axes and tables.
# ============================================================================

def _check_n(n: Any) -> int:
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"`n` must be an integer >= 1, got {n!r}.")
  return int(n)


def linspace(lo: float, hi: float, n: int) -> np.ndarray:
  """``n`` evenly spaced values from ``lo`` to ``hi`` inclusive (float64).

  Example:
    >>> from ftrl_adam import grid
    >>> grid.linspace(0.0, 0.9, 4).tolist()
    [0.0, 0.3, 0.6, 0.9]
  """
  return np.linspace(float(lo), float(hi), _check_n(n))


def logspace(lo: float, hi: float, n: int) -> np.ndarray:
  """``n`` log-spaced values from ``lo`` to ``hi`` inclusive (learning rates, radii).

  Example:
    >>> from ftrl_adam import grid
    >>> grid.logspace(1e-3, 1e-1, 3).tolist()
    [0.001, 0.01, 0.1]
  """
  lo, hi = float(lo), float(hi)
  if not (lo > 0 and hi > 0):
    raise ValueError(f"logspace needs lo > 0 and hi > 0, got {lo!r}, {hi!r}.")
  out = np.geomspace(lo, hi, _check_n(n))
  out[0], out[-1] = lo, hi
  return out


def logspace_one_minus(lo: float, hi: float, n: int) -> np.ndarray:
  """``n`` values of b from ``lo`` to ``hi`` with ``1 - b`` log-spaced.

  The natural axis for momentum parameters: 0.9, 0.99, 0.999 are equally
  spaced.  Both ends are included exactly.

  Args:
    lo: the first b, in [0, 1).
    hi: the last b, in [0, 1).
    n: number of values.

  Returns:
    float64 array of b values.

  Example:
    >>> from ftrl_adam import grid
    >>> grid.logspace_one_minus(0.9, 0.999, 3).round(6).tolist()
    [0.9, 0.99, 0.999]
  """
  lo, hi = float(lo), float(hi)
  for name, v in (("lo", lo), ("hi", hi)):
    if not 0.0 <= v < 1.0:
      raise ValueError(f"`{name}` must lie in [0, 1), got {v!r}.")
  out = 1.0 - np.geomspace(1.0 - lo, 1.0 - hi, _check_n(n))
  out[0], out[-1] = lo, hi
  return out


def seeds(n: int, start: int = 0) -> np.ndarray:
  """The integer seeds ``start, ..., start + n - 1`` (int32).

  Example:
    >>> from ftrl_adam import grid
    >>> grid.seeds(3).tolist()
    [0, 1, 2]
  """
  return np.arange(int(start), int(start) + _check_n(n), dtype=np.int32)


_AXIS_FORMS = ("'v1,v2,...'", "'lin:lo:hi:n'", "'log:lo:hi:n'",
               "'log1m:lo:hi:n' (1-b log-spaced)", "'range:stop'",
               "'range:start:stop[:step]'")


def parse_axis(spec: str | Sequence[float] | np.ndarray,
               dtype: Optional[Any] = None) -> np.ndarray:
  """An axis from a command-line spec, or an explicit list.

  Forms: ``"0.9,0.99,0.999"`` (floats), ``"lin:0:0.9:10"`` (:func:`linspace`),
  ``"log:1e-4:1e-1:4"`` (:func:`logspace`), ``"log1m:0.5:0.999:8"``
  (:func:`logspace_one_minus`), ``"range:8"`` or ``"range:2:10:2"`` (integers).

  Args:
    spec: the string, or a list/array that is returned as an array.
    dtype: optional dtype to cast to.

  Returns:
    a 1-D NumPy array.

  Example:
    >>> from ftrl_adam import grid
    >>> grid.parse_axis("log1m:0.9:0.999:3").round(6).tolist()
    [0.9, 0.99, 0.999]
    >>> grid.parse_axis("range:3").tolist()
    [0, 1, 2]
  """
  if not isinstance(spec, str):
    out = np.atleast_1d(np.asarray(spec))
  else:
    text = spec.strip()
    kind, _, rest = text.partition(":") if ":" in text else ("", "", text)
    try:
      if kind == "":
        items = rest.split(",")
        if any(not v.strip() for v in items):
          raise ValueError("an empty item between commas")
        out = np.array([float(v) for v in items])
      elif kind in ("lin", "log", "log1m"):
        lo, hi, n = rest.split(":")
        fn = {"lin": linspace, "log": logspace, "log1m": logspace_one_minus}
        out = fn[kind](float(lo), float(hi), int(n))
      elif kind == "range":
        out = np.arange(*[int(v) for v in rest.split(":")], dtype=np.int64)
      else:
        raise ValueError(f"unknown axis kind {kind!r}")
    except (ValueError, TypeError) as e:
      raise ValueError(
          f"Cannot parse axis {spec!r} ({e}); use one of "
          f"{', '.join(_AXIS_FORMS)}.") from e
  if dtype is not None:
    out = out.astype(dtype)
  if out.ndim != 1 or out.size == 0:
    raise ValueError(f"Axis {spec!r} must give a non-empty 1-D list of values.")
  return out


def _axis_values(name: str, values: Any) -> np.ndarray:
  arr = np.atleast_1d(np.asarray(values))
  if arr.ndim != 1 or arr.size == 0:
    raise ValueError(
        f"Axis `{name}` must be a non-empty 1-D list of numbers, got shape "
        f"{arr.shape}.")
  if arr.dtype.kind == "f":
    return arr.astype(np.float32)
  if arr.dtype.kind in "iu":
    info = np.iinfo(np.int32)
    if arr.min() < info.min or arr.max() > info.max:
      raise ValueError(f"Axis `{name}` does not fit in int32: {arr.tolist()!r}.")
    return arr.astype(np.int32)
  if arr.dtype.kind == "b":
    return arr
  raise ValueError(
      f"Axis `{name}` must hold numbers (float, int or bool), got dtype "
      f"{arr.dtype}; strings cannot be vmapped - encode them as integers.")


def product(**axes: Any) -> Table:
  """The Cartesian product of named axes as a tidy table, one entry per cell.

  The first axis varies slowest (like ``itertools.product``).  Floats become
  float32 and integers int32 - the package's hyperparameter dtypes, so the
  table holds exactly what each cell computes with.  Build the dict by hand
  for other dtypes; :func:`run_grid` takes any numeric table.

  Args:
    **axes: ``name=values`` (a list, an array, or a scalar for a constant
      column).

  Returns:
    ``dict name -> 1-D array``, all of length ``prod(len(values))``.

  Example:
    >>> from ftrl_adam import grid
    >>> t = grid.product(b1=[0.0, 0.9], b2=[0.99, 0.999], seed=grid.seeds(2))
    >>> len(t["b1"]), t["b1"].dtype.name, t["seed"].dtype.name
    (8, 'float32', 'int32')
    >>> t["b1"], t["seed"]
    (array([0. , 0. , 0. , 0. , 0.9, 0.9, 0.9, 0.9], dtype=float32), array([0, 1, 0, 1, 0, 1, 0, 1], dtype=int32))
  """
  if not axes:
    raise ValueError("product() needs at least one axis, e.g. b1=[0.9].")
  cols = {name: _axis_values(name, v) for name, v in axes.items()}
  grids = np.meshgrid(*cols.values(), indexing="ij")
  return {name: g.reshape(-1).copy() for name, g in zip(cols, grids, strict=False)}


def _mask(table: Mapping[str, np.ndarray], where: Optional[Mapping[str, Any]]
          ) -> np.ndarray:
  n = _n_rows(table)
  mask = np.ones(n, bool)
  for name, value in (where or {}).items():
    if name not in table:
      raise KeyError(f"`where` names column {name!r}; the table has "
                     f"{list(table)}.")
    col = np.asarray(table[name])
    vals = np.atleast_1d(np.asarray(value)).astype(col.dtype)
    mask &= np.isin(col, vals)
  return mask


def select(table: Mapping[str, np.ndarray], **where: Any) -> Table:
  """The rows whose columns equal the given values (or lie in given lists).

  Values are cast to the column's dtype first, so ``b1=0.9`` matches a float32
  column.

  Example:
    >>> from ftrl_adam import grid
    >>> t = grid.product(b1=[0.0, 0.9], seed=grid.seeds(3))
    >>> grid.select(t, b1=0.9, seed=[0, 2])["seed"].tolist()
    [0, 2]
  """
  mask = _mask(table, where)
  return {k: np.asarray(v)[mask] for k, v in table.items()}


_REDUCERS = {"mean": np.mean, "median": np.median, "min": np.min,
             "max": np.max, "std": np.std}


def pivot(
    table: Mapping[str, np.ndarray],
    value: str,
    *,
    x: str = "b1",
    y: str = "b2",
    reduce: str | Callable[[np.ndarray], Any] = "mean",
    where: Optional[Mapping[str, Any]] = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A (y, x) matrix of ``value``, reduced over the cells sharing (x, y).

  Typically the reduction is over seeds; fix every other varying column with
  ``where``.  A NaN in a group makes its mean NaN (a diverged seed shows).

  Args:
    table: a tidy table (e.g. from :func:`run_grid`).
    value: name of a scalar column.
    x: name of the axis column across.
    y: name of the axis column up.
    reduce: ``"mean"``, ``"median"``, ``"min"``, ``"max"``, ``"std"`` or a
      function of a 1-D array.
    where: ``{column: value or list}`` filter applied first.

  Returns:
    ``(xs, ys, z)``: sorted unique x and y values, and ``z[i, j]`` for
    ``(ys[i], xs[j])`` (NaN where no cell).

  Example:
    >>> from ftrl_adam import grid
    >>> t = grid.product(b1=[0.0, 0.5], b2=[0.9], seed=grid.seeds(2))
    >>> t["loss"] = t["b1"] + t["seed"]
    >>> xs, ys, z = grid.pivot(t, "loss", x="b1", y="b2")
    >>> z.tolist()
    [[0.5, 1.0]]
  """
  for name in (x, y, value):
    if name not in table:
      raise KeyError(f"Column {name!r} not in the table; it has {list(table)}.")
  vals = np.asarray(table[value])
  if vals.ndim != 1:
    raise ValueError(f"`value` column {value!r} must hold one number per cell, "
                     f"got shape {vals.shape}.")
  fn = _REDUCERS.get(reduce) if isinstance(reduce, str) else reduce
  if fn is None:
    raise ValueError(f"`reduce` must be one of {', '.join(map(repr, _REDUCERS))}"
                     f" or a function; got {reduce!r}.")
  mask = _mask(table, where)
  xv, yv, vv = (np.asarray(table[x])[mask], np.asarray(table[y])[mask],
                vals[mask])
  xs, ix = np.unique(xv, return_inverse=True)
  ys, iy = np.unique(yv, return_inverse=True)
  z = np.full((len(ys), len(xs)), np.nan)
  gid = iy * len(xs) + ix
  order = np.argsort(gid, kind="stable")
  groups, starts = np.unique(gid[order], return_index=True)
  for g, part in zip(groups, np.split(vv[order], starts[1:]), strict=False):
    z[g // len(xs), g % len(xs)] = fn(part.astype(np.float64))
  return xs, ys, z


def key_from_seed(seed: jax.Array | int) -> jax.Array:
  """A typed PRNG key from a cell's integer seed: ``jax.random.key(seed)``.

  Use it inside ``cell_fn`` (``key_from_seed(cell["seed"])``); identical for a
  grid cell and a single call with the same seed.

  Example:
    >>> import jax
    >>> from ftrl_adam import grid
    >>> float(jax.random.uniform(grid.key_from_seed(0))) == float(
    ...     jax.random.uniform(jax.random.key(0)))
    True
  """
  return jax.random.key(seed)


# ============================================================================
# Execution.
# ============================================================================

@functools.lru_cache(maxsize=None)
def _option_supported(name: str, value: Any = "") -> bool:
  try:
    jax.jit(lambda v: v + 1).lower(np.float32(0)).compile(
        compiler_options={name: value})
    return True
  except Exception:  # pylint: disable=broad-except  # "No such compile option"
    return False


def compiler_options() -> dict[str, Any]:
  """The XLA options :func:`run_grid` compiles with by default, on this backend.

  On CPU: XLA's size-dependent library fusions (YNNPACK, XNNPACK, oneDNN) off,
  so a cell's numbers do not depend on how many cells share a device (module
  doc), and the classic fusion emitters instead of the MLIR ones, whose
  rounding of some element-wise chains depends on the fusion.  Elsewhere: none.  Compile a reference with the same options to compare
  bit for bit: ``jax.jit(f, compiler_options=grid.compiler_options())``.

  Example:
    >>> from ftrl_adam import grid
    >>> isinstance(grid.compiler_options(), dict)
    True
  """
  if jax.default_backend() != "cpu":
    return {}
  return {k: v for k, v in _CPU_LIBRARY_FUSION_OPTIONS.items()
          if _option_supported(k, v)}


def fast_compiler_options() -> dict[str, Any]:
  """XLA's default options, with LLVM at -O2 on CPU: the fast mode's options.

  ``xla_backend_optimization_level`` 2 instead of 3 compiles a beta-grid
  program about 30% faster (1.09 s -> 0.75 s for the default Gaussian part)
  and runs it as fast (0.83 s -> 0.78 s), measured on the 2-core development
  machine; LLVM's levels do not reassociate floating-point arithmetic, so
  the numbers are those of level 3.  The experiments' default
  (``reproducible=False``); elsewhere than CPU: ``{}``.

  Example:
    >>> from ftrl_adam import grid
    >>> isinstance(grid.fast_compiler_options(), dict)
    True
  """
  if jax.default_backend() != "cpu":
    return {}
  name, value = "xla_backend_optimization_level", 2
  return {name: value} if _option_supported(name, value) else {}


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


def _n_rows(table: Mapping[str, Any]) -> int:
  if not isinstance(table, Mapping) or not table:
    raise ValueError("`table` must be a non-empty dict name -> 1-D array.")
  lengths = {k: len(np.asarray(v)) if np.ndim(v) else -1
             for k, v in table.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(f"Table columns must have equal lengths; got {lengths}.")
  return next(iter(lengths.values()))


def _canonical_table(table: Mapping[str, Any]) -> Table:
  out = {}
  for name, col in table.items():
    if not isinstance(name, str) or name.startswith("__"):
      raise ValueError(f"Table column names must be strings not starting with "
                       f"'__'; got {name!r}.")
    arr = np.asarray(col)
    if arr.ndim != 1 or arr.size == 0:
      raise ValueError(f"Table column {name!r} must be a non-empty 1-D array, "
                       f"got shape {arr.shape}.")
    if arr.dtype.kind not in "biuf":
      raise ValueError(f"Table column {name!r} must be numeric (bool, int, "
                       f"float), got dtype {arr.dtype}.")
    out[name] = np.ascontiguousarray(
        arr.astype(jax.dtypes.canonicalize_dtype(arr.dtype)))
  _n_rows(out)
  return out


_ALLOWED_OUT_KINDS = "biufc"


class _Program(NamedTuple):
  traced: Any
  outputs: dict[str, tuple[tuple[int, ...], np.dtype]]
  compiled: list  # [compiled executable] once compiled


_PROGRAMS: "collections.OrderedDict[Any, _Program]" = collections.OrderedDict()
_PROGRAM_CACHE_SIZE = 8


def _program(cell_fn: CellFn, table: Table, padded: int, mesh: Mesh,
             sharding: NamedSharding, options: Mapping[str, Any],
             group_size: Optional[int] = None) -> _Program:
  """Traces ``shard_map(vmap(cell_fn))`` for one padded chunk (cached).

  ``padded`` counts cells, or groups of ``group_size`` cells.
  """
  key = (cell_fn, tuple((k, v.dtype.str) for k, v in table.items()), padded,
         tuple(d.id for d in mesh.devices.flat),
         tuple(sorted(options.items())), group_size)
  try:
    hit = _PROGRAMS.get(key)
  except TypeError:  # an unhashable callable: no caching
    key, hit = None, None
  if hit is not None:
    _PROGRAMS.move_to_end(key)
    return hit

  # check_vma=False: a cell_fn must not need to know it runs under shard_map
  # (a lax.scan whose carry starts from constants would otherwise fail).
  if mesh.devices.size == 1:   # nothing to shard: the plain vmapped program
    body = jax.vmap(cell_fn)
  else:
    body = jax.shard_map(jax.vmap(cell_fn), mesh=mesh, in_specs=P("cells"),
                         out_specs=P("cells"), check_vma=False)
  shape = (padded,) if group_size is None else (padded, group_size)
  specs = {k: jax.ShapeDtypeStruct(shape, v.dtype, sharding=sharding)
           for k, v in table.items()}
  traced = jax.jit(body).trace(specs)
  info = traced.out_info
  if not isinstance(info, dict) or not all(
      isinstance(k, str) and isinstance(v, jax.ShapeDtypeStruct)
      for k, v in info.items()):
    raise TypeError(
        "`cell_fn` must return a flat dict name -> array (a scalar or a small "
        f"array per cell); got the structure {jax.tree.structure(info)}.")
  outputs = {}
  for name, sds in info.items():
    dtype = np.dtype(sds.dtype) if not jax.dtypes.issubdtype(
        sds.dtype, jax.dtypes.extended) else None
    if dtype is None or dtype.kind not in _ALLOWED_OUT_KINDS:
      raise TypeError(
          f"`cell_fn` output {name!r} has dtype {sds.dtype}; results must be "
          f"bool, int, float16/32/64 or complex (cast bfloat16 to float32, "
          f"turn PRNG keys into data with jax.random.key_data).")
    if name.startswith("__") or name in table:
      raise ValueError(
          f"`cell_fn` output {name!r} clashes with "
          f"{'a table column' if name in table else 'a reserved name'}; "
          f"rename it.")
    if group_size is not None and sds.shape[1:2] != (group_size,):
      raise ValueError(
          f"`cell_fn` maps a group of {group_size} cells, so output {name!r} "
          f"needs a leading axis of {group_size}; got shape "
          f"{tuple(sds.shape[1:])}.")
    outputs[name] = (tuple(int(s) for s in sds.shape[len(shape):]), dtype)
  prog = _Program(traced, outputs, [])
  if key is not None:
    _PROGRAMS[key] = prog
    while len(_PROGRAMS) > _PROGRAM_CACHE_SIZE:
      _PROGRAMS.popitem(last=False)
  return prog


def _compile(prog: _Program, options: Mapping[str, Any]) -> Any:
  if not prog.compiled:
    prog.compiled.append(
        prog.traced.lower().compile(compiler_options=dict(options) or None))
  return prog.compiled[0]


def _to_host(x: jax.Array) -> np.ndarray:
  if x.is_fully_addressable:
    return np.asarray(x)
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _fingerprint_versions() -> dict[str, Any]:
  return {"ftrl_adam": _package_version(), "jax": jax.__version__,
          "jaxlib": _version("jaxlib"), "platform": jax.default_backend()}


def _broadcast(tree: Any) -> Any:
  return jax.tree.map(np.asarray, multihost_utils.broadcast_one_to_all(tree))


def _resume(out_dir: Optional[str], manifest: Mapping[str, Any],
            overwrite: bool, chunk: int, n: int,
            outputs: Mapping[str, tuple[tuple[int, ...], np.dtype]]
            ) -> dict[int, dict[str, np.ndarray]]:
  """Prepares out_dir on process 0; returns the finished chunks, on every process."""
  if out_dir is None:
    return {}, None
  n_chunks = manifest["n_chunks"]
  done, error, folder = {}, None, None
  if jax.process_index() == 0:
    try:
      folder = _grid_io.open_folder(out_dir, manifest, overwrite=overwrite)
      for i in folder.finished():
        done[i] = folder.load_chunk(i, i * chunk, min((i + 1) * chunk, n),
                                    outputs)
    except Exception as e:  # pylint: disable=broad-except
      error = e
      if folder is not None:
        folder.close()
  if jax.process_count() == 1:
    if error is not None:
      raise error
    return done, folder
  # Multi-process (untested here): agree on the folder and the finished chunks.
  if int(_broadcast(np.int32(error is not None))):
    raise error if error is not None else ResultsFolderError(
        f"process 0 refused out_dir {out_dir!r}; see its error message.")
  mask = np.zeros(n_chunks, np.int32)
  mask[list(done)] = 1
  mask = _broadcast(mask)
  secs = np.zeros(n_chunks, np.float64)
  full = {k: np.zeros((n,) + s, d) for k, (s, d) in outputs.items()}
  for i, (arrs, sec) in done.items():
    secs[i] = sec
    for k in full:
      full[k][i * chunk:min((i + 1) * chunk, n)] = arrs[k]
  full, secs = _broadcast((full, secs))
  return {i: ({k: v[i * chunk:min((i + 1) * chunk, n)] for k, v in full.items()},
              float(secs[i]))
          for i in np.flatnonzero(mask).tolist()}, folder


class _Layout(NamedTuple):
  group: int
  chunk: int
  n_chunks: int
  padded: int
  n_devices: int
  mesh: Mesh
  sharding: NamedSharding


def _layout(n: int, chunk_size: Any, group_size: Any,
            devices: Optional[Sequence[Any]] = None) -> _Layout:
  """Chunks (whole groups), padding and the mesh of a run of ``n`` rows."""
  gs = 1 if group_size is None else group_size
  if (isinstance(gs, bool) or not isinstance(gs, (int, np.integer))
      or gs < 1):
    raise ValueError(f"`group_size` must be None or an integer >= 1, got "
                     f"{group_size!r}.")
  if n % gs:
    raise ValueError(f"`group_size` {gs} must divide the number of rows {n}.")
  gs = int(gs)
  # Chunks hold whole groups; in groups: `chunk // gs` per chunk.
  chunk = min(max(gs, int(chunk_size) // gs * gs), n)
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError("`devices` must hold at least one device.")
  n_dev = len(devices)
  min_per_device = MIN_CELLS_PER_DEVICE if group_size is None else 1
  padded = n_dev * max(min_per_device, -(-(chunk // gs) // n_dev))
  mesh = Mesh(np.asarray(devices), ("cells",))
  return _Layout(gs, chunk, -(-n // chunk), padded, n_dev, mesh,
                 NamedSharding(mesh, P("cells")))


def compile_ahead(cell_fn: CellFn, table: Mapping[str, Any], *,
                  chunk_size: int, group_size: Optional[int] = None,
                  compiler_options: Optional[Mapping[str, Any]] = None,
                  devices: Optional[Sequence[Any]] = None
                  ) -> Callable[[], None]:
  """Traces the program :func:`run_grid` will run now; returns its compiler.

  Calling the returned function compiles it; the later :func:`run_grid`
  call with the same arguments finds the compiled program in the cache.
  XLA compiles without holding Python's GIL, so a runner with several grids
  traces them one after the other and compiles them in parallel threads.
  """
  table = _canonical_table(table)
  lay = _layout(_n_rows(table), chunk_size, group_size, devices)
  options = (_compiler_options_default() if compiler_options is None
             else dict(compiler_options))
  prog = _program(cell_fn, table, lay.padded, lay.mesh, lay.sharding, options,
                  group_size)
  return functools.partial(_compile, prog, options)


def run_grid(
    cell_fn: CellFn,
    table: Mapping[str, Any],
    *,
    chunk_size: int,
    out_dir: Optional[str | os.PathLike] = None,
    config: Optional[Mapping[str, Any]] = None,
    progress: bool = True,
    overwrite: bool = False,
    on_chunk: Optional[Callable[[ChunkInfo], None]] = None,
    compiler_options: Optional[Mapping[str, Any]] = None,
    group_size: Optional[int] = None,
    progress_label: str = "grid",
    work_per_cell: float = 1.0,
    work_after: float = 0.0,
    timings: Optional[dict[str, float]] = None,
    devices: Optional[Sequence[Any]] = None,
) -> Table:
  """Runs a pure per-cell JAX function over every cell of a table.

  ``jax.vmap(cell_fn)`` is traced and compiled once for a chunk of
  ``P = n_devices * max(MIN_CELLS_PER_DEVICE, ceil(chunk_size / n_devices))``
  cells whose cell axis is sharded over ``Mesh(jax.devices(), ("cells",))``;
  each chunk of ``chunk_size`` table rows is padded to ``P`` by repeating its
  last cell, run, gathered to the host and unpadded.  The next chunk is
  dispatched before the previous one is fetched, so the host work overlaps the
  device work.

  Args:
    cell_fn: ``cell -> {name: array}``, a pure JAX function of one cell: ``cell``
      is a dict of the table's columns as scalar arrays (tracers); it returns a
      flat dict of arrays of fixed shapes (a scalar or a small array each).
      Make a PRNG key with :func:`key_from_seed`.  Traced once; compiled
      programs are cached by the identity of ``cell_fn`` (as ``jax.jit`` does),
      so do not change globals it reads between calls.
    table: ``dict name -> 1-D numeric array``, one entry per cell (see
      :func:`product`).  Dtypes are canonicalised as JAX would (float64 ->
      float32 unless x64 is on).
    chunk_size: cells per chunk (bounds device memory).  Capped at the number
      of cells.
    out_dir: optional results folder: finished chunks are written atomically
      (``chunk_000012.npz``) next to a ``manifest.json`` holding the run's
      fingerprint (a hash of the table, ``config``, the output names, shapes
      and dtypes, the compiler options and the ftrl_adam/jax/jaxlib versions
      and platform).  Calling again with the same arguments loads the finished
      chunks and computes the rest, giving the same table as an uninterrupted
      run.  A folder of another run, a chunk file that does not check out, or a
      folder that is not a results folder raise :class:`ResultsFolderError`.
      Only process 0 touches the folder.
    config: JSON-serialisable description of everything ``cell_fn`` depends on
      besides the table (game, horizon, dimension, model, ...).  The
      fingerprint also holds a digest of ``cell_fn``'s code, closure values
      and the module values it reads (:func:`ftrl_adam.lab.identity.code_digest`),
      but not of code it reaches through imported modules or objects it cannot
      read: put the settings that change the results here too.
    progress: print a line per chunk (cells/s, ETA) to stderr, on process 0.
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
      recorded in their chunk files) and ``compile`` (this call's compilation).
    devices: the devices to shard over; default ``jax.devices()`` (every
      device of every process; a subset is for single-process use, e.g. to
      leave devices free or to time one device).  The results do not depend
      on it beyond XLA's choices (see the module docstring).

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
  table = _canonical_table(table)
  n = _n_rows(table)
  if (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer))
      or chunk_size < 1):
    raise ValueError(f"`chunk_size` must be an integer >= 1, got {chunk_size!r}.")
  if not isinstance(overwrite, bool):
    raise ValueError(f"`overwrite` must be True or False, got {overwrite!r}.")
  options = (_compiler_options_default() if compiler_options is None
             else dict(compiler_options))
  lay = _layout(n, chunk_size, group_size, devices)
  gs, chunk, n_chunks, padded, n_dev = (lay.group, lay.chunk, lay.n_chunks,
                                        lay.padded, lay.n_devices)
  sharding = lay.sharding
  prog = _program(cell_fn, table, padded, lay.mesh, sharding, options,
                  group_size)
  outputs = prog.outputs

  out_dir = None if out_dir is None else os.fspath(out_dir)
  manifest = None
  if out_dir is not None:
    parts = {
        "format_version": _grid_io.FORMAT_VERSION,
        "versions": _fingerprint_versions(),
        "config": config if config is not None else {},
        "n_cells": n,
        "columns": [[k, v.dtype.str] for k, v in table.items()],
        "table_digest": _grid_io.table_digest(table),
        "outputs": [[k, list(s), d.str] for k, (s, d) in outputs.items()],
        "compiler_options": options,
        "group_size": group_size,
        # What cell_fn computes with: its code, closure values and the
        # module values it reads (lab.identity), so that changed code never
        # resumes old chunks, even with the same `config`.
        "code": code_digest(cell_fn),
    }
    # Round-trip through JSON so the manifest compares equal to what is read.
    parts = json.loads(_grid_io.canonical_json(parts))
    manifest = {"format": _grid_io.FORMAT, **parts,
                "fingerprint": _grid_io.fingerprint(parts),
                "chunk_size": chunk, "n_chunks": n_chunks,
                "created": datetime.now(timezone.utc).isoformat(),
                "device_count_at_creation": n_dev}
  elif config is not None:
    _grid_io.canonical_json(config)  # same error for a bad config either way
  done, folder = _resume(out_dir, manifest, overwrite, chunk, n, outputs)

  t_compile = time.perf_counter()
  compiled = _compile(prog, options)
  t_compile = time.perf_counter() - t_compile

  results = {k: np.empty((n,) + s, d) for k, (s, d) in outputs.items()}
  seconds = {"compute": 0.0, "compile": t_compile}
  for i, (arrs, secs) in done.items():
    seconds["compute"] += secs
    for k in results:
      results[k][i * chunk:min((i + 1) * chunk, n)] = arrs[k]
  is_writer = jax.process_index() == 0
  bar = _grid_io.Progress(n_cells=n, n_chunks=n_chunks,
                          enabled=bool(progress) and is_writer,
                          label=progress_label, work_per_cell=work_per_cell,
                          work_after=work_after)
  counts = {"chunks": len(done),
            "cells": sum(min((i + 1) * chunk, n) - i * chunk for i in done)}
  bar.start(chunks_done=counts["chunks"], cells_done=counts["cells"],
            n_devices=n_dev, padded=padded * gs, compile_s=t_compile,
            out_dir=out_dir)
  shape = (padded,) if group_size is None else (padded, gs)

  last_done = [0.0]   # when the previous chunk's results reached the host

  def finish(item):
    i, start, stop, out, t0 = item
    host = {k: _to_host(v).reshape((-1,) + outputs[k][0])[:stop - start]
            for k, v in out.items()}
    # Chunks overlap (the next is dispatched before this one is fetched):
    # count each second once.
    now = time.perf_counter()
    secs = now - max(t0, last_done[0])
    last_done[0] = now
    seconds["compute"] += secs
    if out_dir is not None and is_writer:
      folder.save_chunk(i, start, stop, host, secs)
    for k in results:
      results[k][start:stop] = host[k]
    counts["chunks"] += 1
    counts["cells"] += stop - start
    bar.update(chunks_done=counts["chunks"], cells_done=counts["cells"])
    if on_chunk is not None:
      on_chunk(ChunkInfo(i, start, stop, n_chunks, secs))

  pending = None
  token = _ROUND_PROGRESS.push(bar)
  try:
    for i in range(n_chunks):
      if i in done:
        continue
      start, stop = i * chunk, min((i + 1) * chunk, n)
      # Pad by repeating the last group (the last cell without groups).
      rows = np.arange(start, start + padded * gs)
      last = stop - gs + (rows - start) % gs if gs > 1 else stop - 1
      rows = np.where(rows < stop, rows, last)
      inputs = {k: jax.make_array_from_callback(
                    shape, sharding,
                    functools.partial(_slice, v[rows].reshape(shape)))
                for k, v in table.items()}
      bar.chunk_started(stop - start)
      t0 = time.perf_counter()
      item = (i, start, stop, compiled(inputs), t0)
      if pending is not None:
        finish(pending)
      pending = item
    if pending is not None:
      finish(pending)
  finally:
    _ROUND_PROGRESS.pop(token)
    bar.close()
    if folder is not None:
      folder.close()
  if timings is not None:
    timings.update(seconds)
  return {**table, **dict(sorted(results.items()))}


class _ProgressStack:
  """The progress lines of running grids, for :func:`report_rounds`."""

  def __init__(self):
    self._bars: list[Any] = []

  def push(self, bar: Any) -> Any:
    self._bars.append(bar)
    return bar

  def pop(self, bar: Any) -> None:
    if bar in self._bars:
      self._bars.remove(bar)

  def tick(self, t: Any, total: int) -> None:
    if self._bars:
      t = int(np.max(np.asarray(t)))
      self._bars[-1].tick(t / total, f"round {t}/{total}")


_ROUND_PROGRESS = _ProgressStack()


def report_rounds(t: jax.Array, total: int, *, times: int = 50) -> None:
  """Reports round ``t`` of ``total`` to the running grid's progress line.

  Call it inside a cell function's ``lax.scan`` over rounds (``t`` the
  round, not batched over cells): about ``times`` times per chunk the host
  prints how far the chunk has got, so a single long chunk still shows
  progress.  A no-op outside :func:`run_grid`; it changes no result.
  """
  every = max(1, int(total) // max(1, times))
  jax.lax.cond(t % every == 0,
               lambda: jax.debug.callback(_ROUND_PROGRESS.tick, t, int(total)),
               lambda: None)


def _slice(host: np.ndarray, index: Any) -> np.ndarray:
  return host[index]


def _compiler_options_default() -> dict[str, Any]:
  # run_grid's `compiler_options` argument shadows the function of that name.
  return compiler_options()


# ============================================================================
# Output helpers.
# ============================================================================

def _version(dist: str) -> Optional[str]:
  try:
    return metadata.version(dist)
  except metadata.PackageNotFoundError:
    return None


def _package_version() -> Optional[str]:
  try:
    from ftrl_adam import __version__  # pylint: disable=import-outside-toplevel
    return __version__
  except ImportError:
    return _version("ftrl-adam")


def run_info() -> dict[str, Any]:
  """Versions and devices of this process, for a run's JSON.

  Example:
    >>> from ftrl_adam import grid
    >>> info = grid.run_info()
    >>> sorted(info)[:4]
    ['device_count', 'device_kind', 'flax', 'ftrl_adam']
  """
  devices = jax.devices()
  return {
      "python": platform.python_version(),
      "jax": jax.__version__,
      "jaxlib": _version("jaxlib"),
      "optax": _version("optax"),
      "flax": _version("flax"),
      "numpy": np.__version__,
      "ftrl_adam": _package_version(),
      "platform": jax.default_backend(),
      "device_kind": devices[0].device_kind,
      "device_count": len(devices),
      "local_device_count": jax.local_device_count(),
      "process_count": jax.process_count(),
  }


def _format_column(col: np.ndarray) -> list[str]:
  if col.dtype.kind == "f":
    # NumPy prints the shortest string that round-trips in the column's dtype.
    return [str(v) for v in col]
  if col.dtype.kind == "b":
    return ["true" if v else "false" for v in col]
  return [str(v) for v in col.tolist()]


def write_csv(table: Mapping[str, Any], path: str | os.PathLike, *,
              columns: Optional[Sequence[str]] = None) -> list[str]:
  """Writes a tidy CSV: one row per cell, one column per scalar column.

  The column order is the table's (for :func:`run_grid`: the config columns,
  then the results by name); columns with more than one number per cell are
  left out unless named in ``columns`` (which is an error for them).  Floats
  are written with the shortest text that reads back to the same float32 (or
  float64); bools as ``true``/``false``.  The file is written atomically.

  Args:
    table: a tidy table.
    path: the CSV file.
    columns: optional explicit column list (and order).

  Returns:
    The column names written.

  Example:
    >>> import os, tempfile
    >>> from ftrl_adam import grid
    >>> t = grid.product(b1=[0.9], seed=grid.seeds(2))
    >>> path = os.path.join(tempfile.mkdtemp(), "grid.csv")
    >>> grid.write_csv(t, path)
    ['b1', 'seed']
    >>> print(open(path).read().strip())
    b1,seed
    0.9,0
    0.9,1
  """
  n = _n_rows(table)
  if columns is None:
    columns = [k for k, v in table.items() if np.ndim(v) == 1]
  columns = list(columns)
  for k in columns:
    if k not in table:
      raise KeyError(f"Column {k!r} not in the table; it has {list(table)}.")
    if np.ndim(table[k]) != 1:
      raise ValueError(f"Column {k!r} has shape {np.shape(table[k])}: a CSV "
                       f"column holds one number per cell.")
  texts = [_format_column(np.asarray(table[k])) for k in columns]
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(columns)
  writer.writerows(zip(*texts, strict=False) if columns else [[]] * n)
  _store.atomic_write_text(os.fspath(path), buf.getvalue())
  return columns


def write_json(path: str | os.PathLike, *,
               config: Optional[Mapping[str, Any]] = None,
               table: Optional[Mapping[str, Any]] = None,
               extra: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
  """Writes the run's configuration and versions as JSON (atomically).

  Args:
    path: the JSON file.
    config: the run's configuration (JSON-serialisable).
    table: optional tidy table; its number of cells and its columns' dtypes
      and per-cell shapes are recorded.
    extra: more top-level entries (e.g. timings); must not clash.

  Returns:
    The dict written: ``config``, ``versions`` (:func:`run_info`), ``created``
    (UTC, ISO 8601), and with a table ``n_cells`` and ``columns``.

  Example:
    >>> import json, os, tempfile
    >>> from ftrl_adam import grid
    >>> path = os.path.join(tempfile.mkdtemp(), "run.json")
    >>> _ = grid.write_json(path, config={"T": 100})
    >>> json.load(open(path))["config"]
    {'T': 100}
  """
  payload: dict[str, Any] = {
      "config": dict(config) if config is not None else {},
      "versions": run_info(),
      "created": datetime.now(timezone.utc).isoformat(),
  }
  if table is not None:
    payload["n_cells"] = _n_rows(table)
    payload["columns"] = {
        k: {"dtype": np.asarray(v).dtype.name,
            "cell_shape": list(np.shape(v)[1:])} for k, v in table.items()}
  for k, v in (extra or {}).items():
    if k in payload:
      raise ValueError(f"`extra` key {k!r} clashes with a standard entry.")
    payload[k] = v
  text = json.dumps(payload, indent=2, default=_grid_io.json_default)
  _store.atomic_write_text(os.fspath(path), text + "\n")
  return payload

