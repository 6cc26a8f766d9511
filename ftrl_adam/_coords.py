r"""Which coordinates the regret monitor follows, and how it reads them (private).

:func:`ftrl_adam.regret_monitor` keeps its streams on a *view* of the
parameters (:class:`View`): the whole tree, a subset of k entries (the box's
regret and D3 are sums over coordinates), or a count-sketch into k buckets
(the ball).  The view is built once per parameter layout, on the host, from
the leaves' shapes and the seed.

The subset [D].  The whole model's box regret is a sum over coordinates,
``R = sum_i R_i``, so any random multiset S of entries in which every
coordinate i appears ``k / n`` times in expectation gives an unbiased estimate
``(n / k) sum_{i in S} R_i`` (Horvitz-Thompson with equal inclusion
probabilities): ``regret / fraction`` in :func:`ftrl_adam.regret_of`.  Drawing
S uniformly from all n coordinates (the previous design) spreads it over every leaf,
and reading k entries from L leaves costs the step about L small kernels.
:func:`draw_subset` keeps the expectation and puts S on at most ``leaves``
leaves:

1. The leaves are laid end to end on [0, n), ordered by size (then by their
   position in the tree), and ``m = min(leaves, k)`` points are placed on it
   systematically, ``u + j n / m`` with u uniform on [0, n / m).  A leaf of
   size n_h receives ``m n_h / n`` points in expectation (systematic
   sampling with probability proportional to size; ordering by size makes
   it implicitly stratified by leaf size: every size class gets its share).
2. The points share the k entries, ``k // m`` each and one more for
   ``k % m`` of them chosen at random, so each point carries ``k / m`` in
   expectation, independently of where it falls.
3. A leaf that receives t entries takes ``t // n_h`` copies of each of its
   coordinates and ``r = t % n_h`` more by circular systematic sampling: the
   positions ``(u_h + j s) mod n_h``, j < r, from a start u_h uniform on
   [0, n_h), with the step s <= n_h / r coprime with the leaf's last axis
   (so the positions are distinct and visit every column).  Each position is
   uniform, so each coordinate is taken r / n_h times in expectation, and in
   all ``t / n_h`` times.

So coordinate i of leaf h is taken ``(m n_h / n)(k / m) / n_h = k / n``
times in expectation, whatever its leaf: the estimate stays unbiased.  A
coordinate appears more than once only in a leaf smaller than the entries
it received (a bias vector hit by a point, or ``k`` close to n).  The price
of few leaves is variance: the whole-model estimate averages over m points
rather than k coordinates (``leaves=k`` gives back a uniform spread).

Reading the entries: :meth:`View.select_update` pushes the gather through
the wrapped transform's traced update (``ftrl_adam._gather``) and reads the
gradient's entries itself, one operand per leaf (``_gather.take``: one
gather of the leaf's positions), so that with at most 8 leaves XLA fuses
each of those reads into one kernel (it fuses a concatenation of at most 8
operands).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ftrl_adam import _gather
from ftrl_adam import _numerics

_f32 = jnp.float32
_is_none = _numerics.is_none

MODES = ("all", "subset", "sketch")


def draw_subset(shapes: Sequence[tuple], k: int, leaves: int,
                seed: int) -> list[np.ndarray]:
  """The subset's entries, per leaf: local flat indices, in reading order.

  See the module docstring for the design: at most ``min(leaves, k)`` leaves
  hold entries, and every coordinate is taken ``k / n`` times in expectation
  over the seed (n the number of parameters).  A leaf's indices are its
  copies (``0 .. n_h - 1`` each), then one or two arithmetic runs.

  Args:
    shapes: the leaves' shapes, in ``jax.tree.leaves`` order.
    k: the number of entries, 1 <= k <= n.
    leaves: the most leaves that hold entries (the points m = min(leaves, k)).
    seed: the seed of ``np.random.default_rng``.

  Returns:
    One int32 array per leaf (empty for a leaf not drawn), k entries in all.
  """
  sizes = [math.prod(s) for s in shapes]
  n = int(sum(sizes))
  m = min(int(leaves), int(k))
  rng = np.random.default_rng(seed)
  order = sorted(range(len(sizes)), key=lambda h: (sizes[h], h))
  ends = np.cumsum([sizes[h] for h in order])
  points = rng.uniform(0.0, n / m) + np.arange(m) * (n / m)
  where = np.minimum(np.searchsorted(ends, points, side="right"), len(order) - 1)
  share = np.full(m, k // m)
  share[rng.permutation(m)[:k % m]] += 1
  total = np.zeros(len(sizes), np.int64)
  np.add.at(total, [order[j] for j in where], share)
  out = []
  for shape, size, t in zip(shapes, sizes, total, strict=True):
    copies, rest = divmod(int(t), size) if size else (0, 0)
    parts = [np.arange(size)] * copies
    if rest:
      step = _coprime_step(size // rest, shape[-1] if len(shape) > 1 else 1)
      parts.append((rng.integers(size) + step * np.arange(rest)) % size)
    out.append(np.concatenate(parts or [np.zeros(0, np.int64)]).astype(np.int32))
  return out


def _coprime_step(most: int, columns: int) -> int:
  """The largest step <= most that is coprime with ``columns`` (1 at worst)."""
  step = max(int(most), 1)
  while math.gcd(step, columns) != 1:
    step -= 1
  return step


def _fmix32(x: jax.Array) -> jax.Array:
  """MurmurHash3's 32-bit finaliser (a bijection of uint32 that mixes bits)."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x85EBCA6B)
  x = x ^ (x >> 13)
  x = x * jnp.uint32(0xC2B2AE35)
  return x ^ (x >> 16)


def _digest32(text: str) -> int:
  return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def layout_key(tree: Any) -> tuple:
  """(treedef, shapes) of a params-like tree: what a view depends on."""
  leaves, treedef = jax.tree.flatten(tree)
  return treedef, tuple(tuple(np.shape(x)) for x in leaves)


def check_real(tree: Any) -> None:
  """ValueError unless every leaf is real floating (the monitor's domain)."""
  for x in jax.tree.leaves(tree):
    dt = _numerics.leaf_dtype(x)
    if not jnp.issubdtype(dt, jnp.floating):
      raise ValueError(
          "`regret_monitor` follows real floating parameters; got a leaf of "
          f"dtype {jnp.dtype(dt)} (complex or integer parameters are not "
          "supported: mask them out with optax.masked).")


class View:
  """Which coordinates the monitor follows, for one parameter layout.

  ``"all"``: the tree itself (float32 copies); ``"subset"``: k entries drawn
  by :func:`draw_subset` (concatenated in ``jax.tree.leaves`` order, each
  leaf's in its reading order); ``"sketch"``: the count-sketch S x in R^k,
  (S x)_j = sum over i with h(i) = j of s(i) x_i, with the bucket h(i) and
  the sign s(i) from a hash of (i, seed) - a random linear map with
  E[S^T S] = I, never stored.

  Attributes:
    mode: the mode.
    n: the number of parameters.
    k: the monitored entries (n for ``"all"``).
    id: an int32 identifier of the selection (layout, mode, k, leaves, seed).
    local: for ``"subset"``, the per-leaf indices of :func:`draw_subset`.
  """

  def __init__(self, shapes: Sequence[tuple], mode: str, k: Optional[int],
               leaves: int, seed: int):
    self.mode = mode
    self.sizes = [math.prod(s) for s in shapes]
    self.n = int(sum(self.sizes))
    self.k = self.n if mode == "all" else int(k)
    self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
    spread = leaves if mode == "subset" else None
    self.id = _digest32(json.dumps(
        [mode, self.k, seed, [list(s) for s in shapes]]
        + ([] if spread is None else [spread]))) & 0x7FFFFFFF
    self.local = None
    if mode == "subset":
      self.local = draw_subset(shapes, self.k, leaves, seed)
    if mode == "sketch":
      self.seed_mix = np.uint32(_digest32(str(seed)))

  def select(self, tree: Any) -> Any:
    """The monitored coordinates of a params-like tree, float32."""
    if self.mode == "all":
      return jax.tree.map(
          lambda x: None if x is None else jnp.asarray(x).astype(_f32), tree,
          is_leaf=_is_none)
    leaves = [x for x in jax.tree.leaves(tree) if x is not None]
    if self.mode == "subset":
      return jnp.concatenate(
          [_gather.take(x, loc).astype(_f32)
           for x, loc in zip(leaves, self.local, strict=True) if loc.size])
    out = jnp.zeros((self.k,), _f32)
    for x, lo, size in zip(leaves, self.offsets[:-1], self.sizes, strict=True):
      if not size:
        continue
      i = jnp.arange(size, dtype=jnp.uint32) + jnp.uint32(lo)
      h = _fmix32(i ^ self.seed_mix)
      bucket = (h % jnp.uint32(self.k)).astype(jnp.int32)
      sign = jnp.where((h >> 31) == 1, -1.0, 1.0).astype(_f32)
      out = out + jax.ops.segment_sum(
          jnp.ravel(jnp.asarray(x)).astype(_f32) * sign, bucket,
          num_segments=self.k)
    return out

  def select_update(self, tx, updates, inner, params, extra_args):
    """``tx.update(...)`` and the monitored coordinates of its update.

    Under a trace, the subset's entries are computed by pushing the gather
    through the traced update (``_gather``) to the gradient, the parameters
    and the *new* state (the old state, which a donated step overwrites in
    place, would have to be copied first).  Reading k entries then leaves
    XLA's fusion of the step intact: no pass over the parameters is added
    and no buffer is copied.  Where the push read entries of the parameters
    (weight decay), the returned updates of those leaves are made to depend
    on the reads (bit for bit the same), so that the caller's in-place
    parameter update comes after them.  Outside a trace, or for a transform
    with side effects, the entries are read from the update.
    """
    pushed = None
    if self.mode == "subset":
      pushed = self._pushed(tx, updates, inner, params, extra_args)
    new_updates, new_inner = tx.update(updates, inner, params, **extra_args)
    if pushed is None:
      return new_updates, new_inner, self.select(new_updates)
    play, params_read = pushed
    return _after_reads(new_updates, play, params_read), new_inner, play

  def _pushed(self, tx, updates, inner, params, extra_args):
    """(play, leaves of params read) by the pushed gather, or None."""
    args, in_tree = jax.tree.flatten((updates, inner, params, extra_args))
    if not any(isinstance(x, jax.core.Tracer) for x in args):
      return None
    structure = []

    def flat_update(*leaves):
      u, s, p, extra = jax.tree.unflatten(in_tree, leaves)
      new, new_s = tx.update(u, s, p, **extra)
      structure.append(jax.tree.structure(new))
      return jax.tree.leaves(new) + jax.tree.leaves(new_s)

    read = set()
    parts = _gather.gather_outputs(
        flat_update, args, [loc if loc.size else None for loc in self.local],
        inputs_read=read)
    if parts is None or structure[0] != jax.tree.structure(updates):
      return None
    first = len(jax.tree.leaves(updates)) + len(jax.tree.leaves(inner))
    n_params = len(jax.tree.leaves(params))
    params_read = {i - first for i in read if first <= i < first + n_params}
    if params_read and (params is None or jax.tree.structure(params)
                        != jax.tree.structure(updates)):
      params_read = set(range(len(parts)))   # order every leaf
    play = jnp.concatenate([x.astype(_f32) for x in parts if x is not None])
    return play, params_read

  def zeros(self, params: Any, lead: tuple = ()) -> Any:
    """Zeros of the monitored shape (with leading axes ``lead``), placed like the params."""
    if self.mode == "all":
      def z(p):
        if p is None:
          return None
        if lead:
          return jnp.zeros(lead + tuple(np.shape(p)), _f32)
        return _numerics.zeros_like(p, _f32)
      return jax.tree.map(z, params, is_leaf=_is_none)
    return _numerics.scalar_like(params, np.zeros(lead + (self.k,)), _f32)


def _after_reads(updates: Any, play: jax.Array, leaves_read: set) -> Any:
  """The updates, those of ``leaves_read`` made to depend on ``play`` (same bits).

  The caller's ``params + updates`` overwrites donated parameters in place,
  and XLA copies a buffer that another kernel reads unless the writer
  depends on that read (it drops an optimization_barrier before that
  decision on CPU).  ``never`` is False for every float s, NaN included
  ((s != s) & (s == s)), and XLA does not fold float self-comparisons, so
  the updates keep every bit and their writes come after the reads.
  Measured: adamw on 16M donated parameters 37.2 ms -> 22.2 ms (plain
  23.5 ms), three parameter copies -> none.  Leaves whose parameters were
  not read keep no such dependency (``ftrl_adam``, ``optax.adam``: none).
  """
  if not leaves_read:
    return updates
  s = jnp.sum(play)
  never = (s != s) & (s == s)
  leaves, treedef = jax.tree.flatten(updates)
  return treedef.unflatten([
      jnp.where(never, jnp.zeros_like(u), u) if i in leaves_read else u
      for i, u in enumerate(leaves)])
