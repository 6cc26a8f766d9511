"""Reductions whose rounding does not depend on batching (private).

XLA chooses the order of the partial sums of a ``reduce`` from the shape it
sees, so ``jnp.sum`` of a row can round differently inside ``jax.vmap`` (a
batch of rows) than alone.  The package promises that a vmapped grid cell is
bit-identical to the scalar run, so every reduction inside a transform uses
:func:`fixed_order_sum`: a pairwise tree of element-wise adds over a
zero-padded power-of-two length.  Element-wise adds are never re-associated by
XLA, so the order, and therefore every bit, is the same whatever the batch.

It also holds the other small numeric helpers the transforms share: the
0/0 := 0 division that lets NaN and inf through (:func:`div_or_zero`), the
squared modulus of complex numbers (:func:`abs_sq`), and state entries placed
like the parameters (:func:`zeros_like`, :func:`scalar_like`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def fixed_order_sum(x: jax.Array) -> jax.Array:
  """Sum of all elements of ``x`` in a batching-independent pairwise order."""
  x = jnp.ravel(x)
  n = x.shape[0]
  if n == 0:
    return jnp.zeros([], x.dtype)
  size = 1 << (n - 1).bit_length()
  if size != n:
    x = jnp.concatenate([x, jnp.zeros(size - n, x.dtype)])
  while x.shape[0] > 1:
    half = x.shape[0] // 2
    x = x[:half] + x[half:]
  return x[0]


def tree_fixed_order_sum(tree, fn=lambda x: x) -> jax.Array:
  """sum over leaves of fixed_order_sum(fn(leaf)), in float32 at least.

  ``fn`` must map a complex leaf to a real array (e.g. :func:`abs_sq`) when
  the total is meant to be real.
  """
  total = jnp.zeros([], jnp.float32)
  for leaf in jax.tree.leaves(tree):
    if leaf is None:
      continue
    leaf = jnp.asarray(leaf)
    leaf = leaf.astype(jnp.promote_types(leaf.dtype, jnp.float32))
    total = total + fixed_order_sum(fn(leaf))
  return total


def abs_sq(x: jax.Array) -> jax.Array:
  """|x|**2, real: x**2 for real x, Re(x)**2 + Im(x)**2 for complex x.

  The squared modulus is what a second moment or an l2 norm needs for
  complex parameters (optax's convention, ``optax.tree.update_moment_per_elem_norm``);
  ``jnp.square`` of a complex number is not it.
  """
  if jnp.iscomplexobj(x):
    return jnp.square(x.real) + jnp.square(x.imag)
  return jnp.square(x)


def real_dtype(dtype: Any) -> Any:
  """The real dtype of the same precision (complex64 -> float32); real unchanged."""
  dtype = jnp.dtype(dtype)
  if jnp.issubdtype(dtype, jnp.complexfloating):
    return jnp.finfo(dtype).dtype
  return dtype


def leaf_dtype(p: Any) -> Any:
  """dtype of a params leaf: an array, a ShapeDtypeStruct or a Python scalar."""
  dtype = getattr(p, "dtype", None)
  return jnp.dtype(dtype) if dtype is not None else jnp.result_type(p)


def div_or_zero(num, den):
  """num / den for den >= 0: 0 where den == 0, NaN where den is NaN or inf.

  The 0/0 := 0 rule of the FTRL direction (docs/theory.md section 2): a
  coordinate whose denominator is exactly zero never saw a non-zero gradient
  (and eps = 0), so its update is 0, with a finite gradient there.  Unlike
  :func:`safe_div`, a poisoned denominator gives NaN: a NaN one (a NaN
  gradient went in) and an infinite one (an inf gradient, or a second moment
  that overflowed), where ``num / inf`` would be a silent 0 for ever.
  Non-finite in, non-finite out.
  """
  zero = den == 0
  ok = jnp.isfinite(den) & ~zero
  quotient = num / jnp.where(ok, den, 1.0)
  return jnp.where(ok, quotient, jnp.where(zero, jnp.zeros_like(quotient),
                                           jnp.nan))


def safe_div(num, den):
  """num / den, and 0 where den <= 0 (value and gradient finite there)."""
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def host_or_jnp(*xs: Any) -> Any:
  """``np`` when every argument is host data (NumPy, Python), else ``jnp``.

  For the small closed forms (orders, the c <-> lr map) that run both inside
  traced code and on the host over a results table: on the host NumPy's
  float32 arithmetic gives the same bits (the operations used are correctly
  rounded: + - * /, sqrt, ceil, min, max) without compiling an XLA kernel
  per operation and table shape (about 0.1 s each).
  """
  return jnp if any(isinstance(x, jax.Array) for x in xs) else np


def is_none(x) -> bool:
  """``is_leaf`` for tree maps over trees with ``None`` leaves."""
  return x is None


def _is_committed(p: Any) -> bool:
  return isinstance(p, jax.Array) and not isinstance(p, jax.core.Tracer) and (
      getattr(p, "committed", False))


def zeros_like(p, dtype=None) -> jax.Array:
  """Zeros of ``p``'s shape in ``dtype`` (default ``p``'s dtype), placed like ``p``.

  Works for arrays, tracers, ``jax.ShapeDtypeStruct`` (with or without a
  sharding) and Python or NumPy scalars, so optimizer state created by
  ``init`` is laid out like the parameters it belongs to (sharding types
  stable across steps).  An uncommitted array gives uncommitted zeros and a committed
  one committed zeros with its sharding: a jitted loop then sees the same
  placement on every call and compiles once.
  """
  dtype = leaf_dtype(p) if dtype is None else dtype
  if isinstance(p, jax.core.Tracer) or not hasattr(p, "shape"):
    return jnp.zeros_like(p, dtype=dtype)
  if isinstance(p, jax.Array):
    if _is_committed(p):
      return jnp.zeros(p.shape, dtype, device=p.sharding)
    return jnp.zeros(p.shape, dtype)
  sharding = getattr(p, "sharding", None)
  if sharding is None:
    return jnp.zeros(p.shape, dtype)
  return jnp.zeros(p.shape, dtype, device=sharding)


def _replicated(sharding: Any) -> Any:
  """A sharding that replicates a scalar on the devices of ``sharding``."""
  mesh = getattr(sharding, "mesh", None)
  if mesh is not None and isinstance(sharding, jax.sharding.NamedSharding):
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  devices = sorted(sharding.device_set, key=lambda d: d.id)
  if len(devices) == 1:
    return jax.sharding.SingleDeviceSharding(devices[0])
  mesh = jax.sharding.Mesh(np.array(devices), ("replica",))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def scalar_like(params: Any, value: Any, dtype: Any) -> jax.Array:
  """A small state entry (a count, a weight, key data) placed like the params.

  ``value`` (a scalar or a small array) is copied into a new array of
  ``dtype``.  When the params hold committed arrays (or sharded
  ``ShapeDtypeStruct`` values) it is committed and replicated on their
  devices; otherwise it is an ordinary uncommitted array.  A state that mixes
  committed moments with an uncommitted count makes a jitted
  ``params, state = step(params, state)`` loop compile twice (the first call's
  outputs are all committed).
  """
  for leaf in jax.tree.leaves(params):
    if isinstance(leaf, jax.core.Tracer):
      break
    if _is_committed(leaf) or (
        isinstance(leaf, jax.ShapeDtypeStruct)
        and getattr(leaf, "sharding", None) is not None):
      return jax.device_put(jnp.array(value, dtype, copy=True),
                            _replicated(leaf.sharding))
  return jnp.array(value, dtype, copy=True)


def as_held(x: Any) -> Any:
  """``x`` (already cast to the params' dtype) rounded to it explicitly.

  Under ``jit`` XLA may keep ``(p + u).astype(bfloat16)`` in float32 when the
  next operation is float32 ("excess precision": the convert pair is
  removed), so the EMA would average the unrounded sum.  ``reduce_precision``
  to the dtype's exponent and mantissa bits is not removed: the EMA sees the
  bits the loop will store.  Float32 and wider, and complex, need nothing.
  """
  if x is None:
    return None
  dtype = jnp.result_type(x)
  if not jnp.issubdtype(dtype, jnp.floating) or jnp.finfo(dtype).bits >= 32:
    return x
  info = jnp.finfo(dtype)
  return jax.lax.reduce_precision(
      x.astype(jnp.float32), exponent_bits=info.nexp, mantissa_bits=info.nmant)
