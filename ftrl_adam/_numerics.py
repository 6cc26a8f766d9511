"""Reductions whose rounding does not depend on batching (private).

XLA chooses the order of the partial sums of a ``reduce`` from the shape it
sees, so ``jnp.sum`` of a row can round differently inside ``jax.vmap`` (a
batch of rows) than alone.  The package promises that a vmapped grid cell is
bit-identical to the scalar run, so every reduction inside a transform uses
:func:`fixed_order_sum`: a pairwise tree of element-wise adds over a
zero-padded power-of-two length.  Element-wise adds are never re-associated by
XLA, so the order, and therefore every bit, is the same whatever the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
  """sum over leaves of fixed_order_sum(fn(leaf)), in float32 at least."""
  total = jnp.zeros([], jnp.float32)
  for leaf in jax.tree.leaves(tree):
    if leaf is None:
      continue
    leaf = leaf.astype(jnp.promote_types(leaf.dtype, jnp.float32))
    total = total + fixed_order_sum(fn(leaf))
  return total


def safe_div(num, den):
  """num / den, and 0 where den <= 0 (value and gradient finite there)."""
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def is_none(x) -> bool:
  """``is_leaf`` for tree maps over trees with ``None`` leaves."""
  return x is None


def zeros_like(p, dtype=None) -> jax.Array:
  """Zeros of ``p``'s shape in ``dtype`` (default ``p.dtype``), on ``p``'s sharding.

  Works for arrays, tracers and ``jax.ShapeDtypeStruct`` (with or without a
  sharding), so optimizer state created by ``init`` is laid out like the
  parameters it belongs to (STYLE.md: sharding types stable).
  """
  dtype = p.dtype if dtype is None else dtype
  if isinstance(p, jax.core.Tracer):
    return jnp.zeros_like(p, dtype=dtype)
  sharding = getattr(p, "sharding", None)
  if sharding is None:
    return jnp.zeros(p.shape, dtype)
  return jnp.zeros(p.shape, dtype, device=sharding)
