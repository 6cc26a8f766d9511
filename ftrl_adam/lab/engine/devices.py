"""Devices and compiler options: where and how the engine's programs run.

* :func:`use_cpu_cores` splits the CPU into one XLA device per core (the
  ``ftrl-adam`` program calls it before JAX starts);
* :func:`compiler_options` are the bit-reproducible XLA options (a cell's
  numbers do not depend on how many cells share a device),
  :func:`fast_compiler_options` the fast ones; an option this XLA does not
  know is an error, never silently dropped;
* :func:`agree`, :func:`to_host`, :func:`broadcast`: what every process of a
  multi-process run must agree on (process 0 reads and writes folders).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils

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



@functools.lru_cache(maxsize=None)
def _check_option(name: str, value: Any) -> None:
  """Raises unless this XLA accepts the compiler option ``name=value``."""
  try:
    jax.jit(lambda v: v + 1).lower(np.float32(0)).compile(
        compiler_options={name: value})
  except jax.errors.JaxRuntimeError as e:
    raise RuntimeError(
        f"this XLA (jaxlib {jax.__version__}) does not accept the compiler "
        f"option {name}={value!r} that the engine needs for "
        f"{'bit-reproducible' if name in _CPU_LIBRARY_FUSION_OPTIONS else 'fast'}"
        f" runs ({e}); ftrl_adam needs updating for this jaxlib.") from e


def compiler_options() -> dict[str, Any]:
  """The XLA options :func:`run_grid` compiles with by default, on this backend.

  On CPU: XLA's size-dependent library fusions (YNNPACK, XNNPACK, oneDNN) off,
  so a cell's numbers do not depend on how many cells share a device (module
  doc), and the classic fusion emitters instead of the MLIR ones, whose
  rounding of some element-wise chains depends on the fusion.  Elsewhere:
  none.  Compile a reference with the same options to compare bit for bit:
  ``jax.jit(f, compiler_options=grid.compiler_options())``.

  Raises:
    RuntimeError: this XLA does not know one of the options (a newer jaxlib
      renamed it): the results would silently lose their reproducibility.

  Example:
    >>> from ftrl_adam import grid
    >>> isinstance(grid.compiler_options(), dict)
    True
  """
  if jax.default_backend() != "cpu":
    return {}
  for k, v in _CPU_LIBRARY_FUSION_OPTIONS.items():
    _check_option(k, v)
  return dict(_CPU_LIBRARY_FUSION_OPTIONS)


def is_reproducible(options: Any) -> bool:
  """Whether ``options`` are this backend's bit-reproducible ones (CPU only)."""
  return jax.default_backend() == "cpu" and dict(options) == compiler_options()


def fast_compiler_options() -> dict[str, Any]:
  """XLA's default options, with LLVM at -O2 on CPU: the fast mode's options.

  ``xla_backend_optimization_level`` 2 instead of 3 compiles a beta-grid
  program about 30% faster (1.09 s -> 0.75 s for the default Gaussian part)
  and runs it as fast (0.83 s -> 0.78 s), measured on the 2-core development
  machine.  The bits may differ from level 3's: a digits MLP trained for 400
  steps by :func:`ftrl_adam.studies.single_run` ended at validation loss
  0.0448 with LLVM at -O2 and 0.0769 at -O3 (``XLA_FLAGS``; an early
  last-bit difference that training amplifies).  What the fast mode
  promises is the same bytes for the same arguments on the same devices.
  The experiments' default (``reproducible=False``); elsewhere than CPU:
  ``{}``.

  Example:
    >>> from ftrl_adam import grid
    >>> isinstance(grid.fast_compiler_options(), dict)
    True
  """
  if jax.default_backend() != "cpu":
    return {}
  _check_option("xla_backend_optimization_level", 2)
  return {"xla_backend_optimization_level": 2}



def to_host(x: jax.Array) -> np.ndarray:
  """A global array on this host (gathered from every process if needed)."""
  if x.is_fully_addressable:
    return np.asarray(x)
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def broadcast(tree: Any) -> Any:
  """Process 0's ``tree`` on every process (NumPy leaves)."""
  return jax.tree.map(np.asarray, multihost_utils.broadcast_one_to_all(tree))


def agree(error: Optional[BaseException], what: str) -> None:
  """Raises on every process if process 0 failed (``error`` there).

  Process 0 alone reads and writes folders; the other processes must stop
  with it rather than wait for it forever.  Single-process: raises ``error``.
  """
  if jax.process_count() == 1:
    if error is not None:
      raise error
    return
  if int(broadcast(np.int32(error is not None))):
    raise error if error is not None else RuntimeError(
        f"process 0 failed ({what}); see its error message.")


def available_memory() -> float:
  """Bytes of host memory available to this process (Linux: MemAvailable)."""
  try:
    with open("/proc/meminfo", encoding="ascii") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return float(line.split()[1]) * 1024.0
  except OSError:
    pass
  try:
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
  except (ValueError, OSError, AttributeError):  # pragma: no cover
    return float("inf")


def device_memory() -> float:
  """Bytes of memory of the first device (host memory for a CPU)."""
  dev = jax.devices()[0]
  if dev.platform == "cpu":
    return available_memory()
  try:
    stats = dev.memory_stats() or {}
  except Exception:  # pylint: disable=broad-except
    stats = {}
  return float(stats.get("bytes_limit", float("inf")))
