"""A training run's state as flat per-cell arrays, and back (private to the studies).

Successive halving stops a study after each rung and continues the survivors
in the next rung's program.  Between the two, a run's whole state - its
parameters, the optimizer's state (moments, counts, EMAs) and the running
metrics - travels as table columns of the engine: one float32 vector and one
int32 vector per cell (a column "with an array per cell").  :class:`Layout`
describes the state's pytree once (paths, shapes, dtypes, from
``jax.eval_shape``); :meth:`Layout.pack` flattens a state into the two
vectors and :meth:`Layout.unpack` rebuilds it, bit for bit:

* floating leaves (float32, and bfloat16/float16, which float32 holds
  exactly) go to the float32 vector;
* integer and boolean leaves go to the int32 vector (uint32 by a bit cast).

Anything else (a complex or float64 leaf) is refused with a one-line error.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

#: Table columns of a packed state: (float32 vector, int32 vector).
KINDS = ("f32", "i32")


def _kind(dtype: Any, where: str) -> str:
  dtype = np.dtype(dtype)
  if dtype in (np.dtype(np.float32), np.dtype(jnp.bfloat16),
               np.dtype(np.float16)):
    return "f32"
  if dtype.kind in "biu" and dtype.itemsize <= 4:
    return "i32"
  raise ValueError(
      f"A training state leaf {where} has dtype {dtype}; a study that "
      "continues runs from rung to rung carries float32/bfloat16/float16, "
      "integer and boolean leaves only.")


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where each leaf of a state lives in the two flat vectors.

  Attributes:
    treedef: the state's tree structure.
    leaves: per leaf ``(kind, offset, shape, dtype)``.
    sizes: ``{kind: length}`` of each vector.
  """

  treedef: Any
  leaves: tuple[tuple[str, int, tuple[int, ...], Any], ...]
  sizes: Mapping[str, int]

  @classmethod
  def of(cls, shapes: Any) -> "Layout":
    """The layout of a state given as ``jax.ShapeDtypeStruct`` leaves."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    sizes = {k: 0 for k in KINDS}
    leaves = []
    for path, leaf in flat:
      kind = _kind(leaf.dtype, jax.tree_util.keystr(path))
      shape = tuple(int(n) for n in leaf.shape)
      leaves.append((kind, sizes[kind], shape, leaf.dtype))
      sizes[kind] += math.prod(shape)
    return cls(treedef, tuple(leaves), sizes)

  def pack(self, state: Any) -> dict[str, jax.Array]:
    """``{"f32": vector, "i32": vector}`` holding every leaf of ``state``."""
    parts = {k: [] for k in KINDS}
    for (kind, _, _, dtype), leaf in zip(
        self.leaves, jax.tree.leaves(state), strict=True):
      flat = jnp.ravel(leaf)
      if kind == "f32":
        flat = flat.astype(jnp.float32)
      elif np.dtype(dtype) == np.dtype(np.uint32):
        flat = jax.lax.bitcast_convert_type(flat, jnp.int32)
      else:
        flat = flat.astype(jnp.int32)
      parts[kind].append(flat)
    return {k: (jnp.concatenate(v) if v else
                jnp.zeros((0,), jnp.float32 if k == "f32" else jnp.int32))
            for k, v in parts.items()}

  def unpack(self, vectors: Mapping[str, jax.Array]) -> Any:
    """The state that :meth:`pack` flattened into ``vectors``."""
    leaves = []
    for kind, offset, shape, dtype in self.leaves:
      flat = jax.lax.dynamic_slice_in_dim(vectors[kind], offset,
                                          math.prod(shape)) \
          if math.prod(shape) else vectors[kind][:0]
      if kind == "i32" and np.dtype(dtype) == np.dtype(np.uint32):
        flat = jax.lax.bitcast_convert_type(flat, jnp.uint32)
      leaves.append(flat.astype(dtype).reshape(shape))
    return jax.tree.unflatten(self.treedef, leaves)

  def nbytes(self) -> int:
    """Bytes of one packed state (both vectors)."""
    return 4 * sum(self.sizes.values())
