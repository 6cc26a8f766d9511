"""A grid's program: ``vmap(cell_fn)`` for one padded chunk, sharded, traced once.

:class:`Program` is the engine's compiled unit.  It is built explicitly and
passed on (the runner traces every part first, compiles them in threads while
the first runs, and hands each :func:`ftrl_adam.grid.run_grid` its program);
nothing is cached in a module global.  Tracing and compiling are timed, so
progress lines report what they really cost.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ftrl_adam.lab.engine import devices as _devices
from ftrl_adam.lab.engine.progress import Progress
from ftrl_adam.lab.engine.progress import reporting_to
from ftrl_adam.lab.engine.tables import Table
from ftrl_adam.lab.engine.tables import canonical_table
from ftrl_adam.lab.engine.tables import n_rows

CellFn = Callable[[dict[str, jax.Array]], Mapping[str, jax.Array]]

# Never run a per-device batch of one cell: XLA drops a size-1 batch dimension,
# which sends a batched dot back to the unbatched kernels (module doc of
# ftrl_adam.grid).
MIN_CELLS_PER_DEVICE = 2

_ALLOWED_OUT_KINDS = "biufc"


class Layout(NamedTuple):
  """How a table of ``n`` rows is cut into chunks and laid over the devices.

  Attributes:
    group: rows per group (1 without groups); chunks hold whole groups.
    chunk: rows per chunk.
    n_chunks: chunks in all.
    padded: cells (or groups) per compiled chunk, a multiple of the devices.
    n_devices: devices the chunk's cell axis is sharded over.
    mesh: the one-axis mesh ``("cells",)``.
    sharding: the cell axis' sharding.
  """

  group: int
  chunk: int
  n_chunks: int
  padded: int
  n_devices: int
  mesh: Mesh
  sharding: NamedSharding

  def rows(self, index: int, n: int) -> tuple[int, int]:
    """The rows ``start, stop`` of chunk ``index`` of a table of ``n`` rows."""
    return index * self.chunk, min((index + 1) * self.chunk, n)


def layout(n: int, chunk_size: Any, group_size: Any = None,
           devices: Optional[Sequence[Any]] = None) -> Layout:
  """Chunks (whole groups), padding and the mesh of a run of ``n`` rows."""
  if (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer))
      or chunk_size < 1):
    raise ValueError(f"`chunk_size` must be an integer >= 1, got {chunk_size!r}.")
  gs = 1 if group_size is None else group_size
  if isinstance(gs, bool) or not isinstance(gs, (int, np.integer)) or gs < 1:
    raise ValueError(f"`group_size` must be None or an integer >= 1, got "
                     f"{group_size!r}.")
  if n % gs:
    raise ValueError(f"`group_size` {gs} must divide the number of rows {n}.")
  gs = int(gs)
  chunk = min(max(gs, int(chunk_size) // gs * gs), n)
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError("`devices` must hold at least one device.")
  n_dev = len(devices)
  min_per_device = MIN_CELLS_PER_DEVICE if group_size is None else 1
  padded = n_dev * max(min_per_device, -(-(chunk // gs) // n_dev))
  mesh = Mesh(np.asarray(devices), ("cells",))
  return Layout(gs, chunk, -(-n // chunk), padded, n_dev, mesh,
                NamedSharding(mesh, P("cells")))


def _output_shapes(info: Any, table: Table, lead: int, group_size
                   ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """Checks the traced outputs; ``name -> (per-cell shape, dtype)``."""
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
    outputs[name] = (tuple(int(s) for s in sds.shape[lead:]), dtype)
  return outputs


class Program:
  """``vmap(cell_fn)`` over one padded chunk of a table, sharded, traced now.

  Args:
    cell_fn: the cell (or group) function, as for :func:`ftrl_adam.grid.run_grid`.
    table: the table (only its columns' dtypes and per-cell shapes matter).
    chunk_size: rows per chunk.
    group_size: None, or rows per group sharing one input stream.
    compiler_options: XLA options; default the reproducible ones
      (:func:`ftrl_adam.grid.compiler_options`).
    devices: devices to shard over; default every device.
    progress: the :class:`~ftrl_adam.grid.Progress` that
      :func:`~ftrl_adam.grid.report_rounds` inside ``cell_fn`` reports to
      (None: no host callback in the program).

  Attributes:
    outputs: ``name -> (per-cell shape, dtype)`` of ``cell_fn``'s results.
    trace_seconds: how long tracing took; ``compile_seconds`` likewise once
      compiled (None before).
  """

  def __init__(self, cell_fn: CellFn, table: Mapping[str, Any], *,
               chunk_size: int, group_size: Optional[int] = None,
               compiler_options: Optional[Mapping[str, Any]] = None,
               devices: Optional[Sequence[Any]] = None,
               progress: Optional[Progress] = None):
    table = canonical_table(table)
    self.cell_fn = cell_fn
    self.group_size = group_size
    self.progress = progress
    self.columns = tuple((k, v.dtype.str, v.shape[1:]) for k, v in table.items())
    self.layout = layout(n_rows(table), chunk_size, group_size, devices)
    self.options = (_devices.compiler_options() if compiler_options is None
                    else dict(compiler_options))
    lay = self.layout
    # check_vma=False: a cell_fn must not need to know it runs under
    # shard_map (a lax.scan whose carry starts from constants would fail).
    if lay.mesh.devices.size == 1:   # nothing to shard: the plain vmap
      body = jax.vmap(cell_fn)
    else:
      body = jax.shard_map(jax.vmap(cell_fn), mesh=lay.mesh,
                           in_specs=P("cells"), out_specs=P("cells"),
                           check_vma=False)
    self.shape = ((lay.padded,) if group_size is None
                  else (lay.padded, group_size))
    specs = {k: jax.ShapeDtypeStruct(self.shape + v.shape[1:], v.dtype,
                                     sharding=lay.sharding)
             for k, v in table.items()}
    t0 = time.perf_counter()
    with reporting_to(progress):
      self._traced = jax.jit(body).trace(specs)
    self.trace_seconds = time.perf_counter() - t0
    self.outputs = _output_shapes(self._traced.out_info, table,
                                  len(self.shape), group_size)
    self.compile_seconds: Optional[float] = None
    self._compiled = None
    self._lock = threading.Lock()

  def compile(self) -> Any:
    """Compiles the program (once; thread-safe: XLA compiles without the GIL)."""
    with self._lock:
      if self._compiled is None:
        t0 = time.perf_counter()
        self._compiled = self._traced.lower().compile(
            compiler_options=dict(self.options) or None)
        self.compile_seconds = time.perf_counter() - t0
      return self._compiled

  def check_table(self, table: Table) -> None:
    """Raises unless ``table`` has the columns this program was traced for."""
    cols = tuple((k, v.dtype.str, v.shape[1:]) for k, v in table.items())
    if cols != self.columns:
      raise ValueError(f"`program` was traced for the columns {self.columns}, "
                       f"not {cols}.")
