"""The engine (``ftrl_adam.grid``): a tidy table of cells, one compiled program, every device.

The engine behind the (b1, b2) regret grid and the vectorised training
studies.  A feature supplies a *per-cell function* and a *table*; the engine
does the rest:

Its modules, in the order data flows: ``tables`` (axes, tidy tables),
``devices`` (CPU cores as devices, compiler options, what processes agree
on), ``progress`` (progress lines, passed in), ``program`` (the traced and
compiled unit), ``run`` (:func:`run_grid`: chunks, sharding, resume) and
``files`` (CSV, JSON); the results folder itself is ``_folder``.

1. **Axes and the table.**  :func:`linspace`, :func:`logspace`,
   :func:`logspace_one_minus` (b values log-spaced in ``1 - b``), :func:`seeds`,
   explicit lists, or :func:`parse_axis` for command-line specs; :func:`product`
   makes the Cartesian product as a tidy table: ``dict name -> array``, one
   entry per cell along the first axis.
2. **Execution.**  :func:`run_grid` jits ``jax.vmap(cell_fn)`` once, runs the
   table in chunks of ``chunk_size`` cells (bounding device memory), each
   chunk's cell axis sharded over every device JAX sees
   (``Mesh(jax.devices(), ("cells",))``), padded to a fixed shape so there is
   exactly one compilation (a :class:`Program`), padding dropped after.  On CPU,
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
  a resume must use the same ``chunk_size`` and, unless the options are
  the reproducible ones, the same device count (both in the fingerprint).

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
chunks to the other processes so that all run the same chunks (and its
failure, :func:`ftrl_adam.lab.engine.devices.agree`, so that none waits).  Every process must call :func:`run_grid` with the same arguments.
Tested: one process with 1 and 8 (simulated CPU) devices, a resume on a
different device count, and two processes under ``jax.distributed`` on
127.0.0.1 writing the table of one (tests/test_beta_grid_open.py).  Not
tested: several hosts.
"""

from ftrl_adam.lab.engine._folder import ResultsFolderError
from ftrl_adam.lab.engine.devices import compiler_options
from ftrl_adam.lab.engine.devices import fast_compiler_options
from ftrl_adam.lab.engine.devices import use_cpu_cores
from ftrl_adam.lab.engine.files import run_info
from ftrl_adam.lab.engine.files import write_csv
from ftrl_adam.lab.engine.files import write_json
from ftrl_adam.lab.engine.program import MIN_CELLS_PER_DEVICE
from ftrl_adam.lab.engine.program import Program
from ftrl_adam.lab.engine.progress import Progress
from ftrl_adam.lab.engine.progress import report_rounds
from ftrl_adam.lab.engine.run import ChunkInfo
from ftrl_adam.lab.engine.run import compile_ahead
from ftrl_adam.lab.engine.run import run_grid
from ftrl_adam.lab.engine.tables import key_from_seed
from ftrl_adam.lab.engine.tables import linspace
from ftrl_adam.lab.engine.tables import logspace
from ftrl_adam.lab.engine.tables import logspace_one_minus
from ftrl_adam.lab.engine.tables import parse_axis
from ftrl_adam.lab.engine.tables import pivot
from ftrl_adam.lab.engine.tables import product
from ftrl_adam.lab.engine.tables import seeds
from ftrl_adam.lab.engine.tables import select

__all__ = (
    "ChunkInfo",
    "MIN_CELLS_PER_DEVICE",
    "Program",
    "Progress",
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
    "select",
    "use_cpu_cores",
    "write_csv",
    "write_json",
)
