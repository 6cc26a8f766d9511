r"""The regret of your own training run, as an optax wrapper (docs/howto/regret_monitor.md).

Adam's step is an online learner playing the updates (docs/theory.md sections
1-2): at step t the training loop holds w_t = w_{t-1} + Delta_t, where the
update Delta_t was computed at step t - 1 (Delta_1 = 0), then sees the gradient
g_t at w_t and pays the linear loss ``<g_t, Delta_t>``.  :func:`regret_monitor`
wraps any optax transform, passes its updates through unchanged, and keeps
the streams of this game on the real gradients, in O(monitored coordinates)
memory (docs/theory.md section 1 [D]):

    r_t = b1 r_{t-1} + <g_t, Delta_t>,     M_t = b1 M_{t-1} + g_t,

so that the b1-discounted regret against a fixed update u,
``R_t(u) = sum_{s<=t} b1^{t-s} <g_s, Delta_s - u> = r_t - <M_t, u>``, has its
supremum over the box of radius D at r_t + D ||M_t||_1 and over the ball at
r_t + D ||M_t||_2.  Given the learner's b2 and its constant c (or learning
rate), it also keeps the online streams of the upper bound D3
(docs/theory.md section 3, a formula of g_t alone; the same recurrence as
:func:`ftrl_adam.regret.d3_bound`, from the private module ``_d3``).
:func:`regret_of` reads all of it, at any step, from any nested state.

The pairing is the game's (:func:`ftrl_adam.regret.play`): the update the
wrapped transform returns at step t is Delta_{t+1}, paid against g_{t+1} at
the next step.  So the monitor of ``regret.theory_learner(b1, b2, D)`` fed a
gradient sequence reports exactly what ``regret.game`` reports for that
sequence given as ``regret.from_array`` (tested).

This module is the optimizer layer: it reads the gradient and the update,
never re-implements a learner, and imports nothing of the lab.  The host-side
:class:`ftrl_adam.RegretRecorder` (module ``ftrl_adam.recording``) writes the
monitored gradients to a folder that :func:`ftrl_adam.regret.replay` plays
back in the beta-grid.

References:
  Nguyen, *How to Set beta1, beta2 in Adam: An Online Learning Perspective*,
  ALT 2026, https://arxiv.org/abs/2510.03478 (the discounted regret, D3 in
  order [R]; the online form and constants are this project's [D]).
  Ahn & Cutkosky, *Adam with model exponential moving average is effective
  for nonconvex optimization*, NeurIPS 2024, https://arxiv.org/abs/2405.18199
  (why this regret controls training: the online-to-nonconvex conversion).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ftrl_adam import _checks
from ftrl_adam import _d3
from ftrl_adam import _gather
from ftrl_adam import _numerics
from ftrl_adam import _state_search

_f32 = jnp.float32
_is_none = _numerics.is_none

DOMAINS = _d3.DOMAINS


class RegretMonitorState(NamedTuple):
  """State of :func:`regret_monitor`.

  The monitored coordinates ("view") are the whole parameter tree by default,
  or a vector of ``coords`` entries (a fixed random subset for the box, a
  count-sketch for the ball).

  Attributes:
    count: steps seen, int32, saturating.
    inner: the wrapped transform's state.
    play: Delta_{t+1}, the last update on the monitored coordinates, float32
      (zeros before the first step: Delta_1 = 0).
    loss: r_t, float32 scalar.
    sum_grads: M_t on the monitored coordinates, float32.
    regret: r_t + D ||M_t|| (the norm of ``domain``), float32 scalar.
    max_regret: max over s <= t of ``regret``.
    v: D3 stream V_t (per coordinate for the box, a scalar for the ball), or
      an empty array when the bound is not tracked (never None: the
      state-dict form of ``nnx.state`` drops None fields).
    e: D3 stream E_t, or an empty array.
    sigma: D3 stream Sigma_t, or an empty array.
    recent: the last ``record_every`` monitored gradients (round t in row
      ``(t - 1) % record_every``), or an empty array.
    radius: D, float32.
    c: the constant c of the bound, float32 (NaN when not tracked).
    fraction: monitored coordinates / parameters, float32 (1 by default).
    coords_id: int32 identifier of the coordinate selection (a recording
      checks it when it is continued).
  """

  count: jax.Array
  inner: optax.OptState
  play: Any
  loss: jax.Array
  sum_grads: Any
  regret: jax.Array
  max_regret: jax.Array
  v: Any
  e: Any
  sigma: Any
  recent: Any
  radius: jax.Array
  c: jax.Array
  fraction: jax.Array
  coords_id: jax.Array


class MonitoredRegret(NamedTuple):
  r"""What :func:`regret_of` reads from a :class:`RegretMonitorState`.

  Attributes:
    step: t, the steps seen (int32).
    regret: sup over the comparator set (box or ball of radius D) of
      ``R_t(u) = sum_{s<=t} b1^{t-s} <g_s, Delta_s - u>`` on the monitored
      coordinates: r_t + D ||M_t||_1 (box) or r_t + D ||M_t||_2 (ball) [D].
    max_regret: its maximum over the steps so far.
    loss: ``r_t = sum_{s<=t} b1^{t-s} <g_s, Delta_s>`` (the regret against u = 0).
    bound: the upper bound D3 for the worst comparator, the sum of
      D^2/(2c) (sqrt(V_t) + E_t) + Sigma_t (NaN when b2 and c were not
      given).  A bound when the wrapped learner is Algorithm 1 (``ftrl_adam``
      with ``bias_correction=False``, ``eps=0``, the clip of radius D and that
      c), docs/theory.md section 3 [D].
    sum_grads: M_t on the monitored coordinates.
    coords: the number of monitored coordinates (a Python int).
    fraction: monitored coordinates / parameters; for a random subset,
      ``regret / fraction`` and ``bound / fraction`` are unbiased estimates of
      the whole model's box regret and D3 (both are sums over coordinates).
  """

  step: jax.Array
  regret: jax.Array
  max_regret: jax.Array
  loss: jax.Array
  bound: jax.Array
  sum_grads: Any
  coords: int
  fraction: jax.Array


# ----------------------------------------------------------------------------
# The monitored coordinates.
# ----------------------------------------------------------------------------


def _fmix32(x: jax.Array) -> jax.Array:
  """MurmurHash3's 32-bit finaliser (a bijection of uint32 that mixes bits)."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x85EBCA6B)
  x = x ^ (x >> 13)
  x = x * jnp.uint32(0xC2B2AE35)
  return x ^ (x >> 16)


class _View:
  """Which coordinates the monitor follows, for one parameter layout.

  ``"all"``: the tree itself (float32 copies); ``"subset"``: the entries at k
  sorted global indices (the leaves ravelled and concatenated in
  ``jax.tree.leaves`` order), drawn without replacement by
  ``np.random.default_rng(seed)``; ``"sketch"``: the count-sketch S x in R^k,
  (S x)_j = sum over i with h(i) = j of s(i) x_i, with the bucket h(i) and
  the sign s(i) from a hash of (i, seed) - a random linear map with
  E[S^T S] = I, never stored.
  """

  def __init__(self, leaves: list, mode: str, k: Optional[int], seed: int):
    self.mode = mode
    self.sizes = [math.prod(np.shape(x)) for x in leaves]
    self.n = int(sum(self.sizes))
    self.k = self.n if mode == "all" else int(k)
    self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
    self.seed = seed
    desc = json.dumps([mode, self.k, seed, [list(np.shape(x)) for x in leaves]])
    self.id = int.from_bytes(hashlib.sha256(desc.encode()).digest()[:4],
                             "little") & 0x7FFFFFFF
    self.local = None
    if mode == "subset":
      idx = np.sort(np.random.default_rng(seed).choice(
          self.n, size=self.k, replace=False))
      self.local = [
          (idx[(idx >= lo) & (idx < hi)] - lo).astype(np.int32)
          for lo, hi in zip(self.offsets[:-1], self.offsets[1:], strict=True)]
    if mode == "sketch":
      self.seed_mix = np.uint32(
          int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:4],
                         "little"))

  def select(self, tree: Any) -> Any:
    """The monitored coordinates of a params-like tree, float32."""
    if self.mode == "all":
      return jax.tree.map(
          lambda x: None if x is None else jnp.asarray(x).astype(_f32), tree,
          is_leaf=_is_none)
    leaves = [x for x in jax.tree.leaves(tree) if x is not None]
    if self.mode == "subset":
      parts = [jnp.ravel(jnp.asarray(x))[loc].astype(_f32)
               for x, loc in zip(leaves, self.local, strict=True) if loc.size]
      return jnp.concatenate(parts)
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
    place, would have to be copied first), and the returned updates are
    made to depend on those reads (bit for bit the same), so that the
    caller's in-place parameter update comes after them.  Reading k entries
    then leaves XLA's fusion of the step intact: no pass over the
    parameters is added and no buffer is copied.  Outside a trace, or for a
    transform with side effects, the entries are read from the update.
    """
    args, in_tree = jax.tree.flatten((updates, inner, params, extra_args))
    play = None
    if (self.mode == "subset"
        and any(isinstance(x, jax.core.Tracer) for x in args)):
      structure = []

      def flat_update(*leaves):
        u, s, p, extra = jax.tree.unflatten(in_tree, leaves)
        new, new_s = tx.update(u, s, p, **extra)
        structure.append(jax.tree.structure(new))
        return jax.tree.leaves(new) + jax.tree.leaves(new_s)

      parts = _gather.gather_outputs(
          flat_update, args, [loc if loc.size else None for loc in self.local])
      if parts is not None and structure[0] == jax.tree.structure(updates):
        play = jnp.concatenate(
            [x.astype(_f32) for x in parts if x is not None])
    new_updates, new_inner = tx.update(updates, inner, params, **extra_args)
    if play is None:
      play = self.select(new_updates)
    else:
      # Order the k-entry reads (of the gradient, the parameters) before the
      # step's in-place writes: the caller's `params + updates` overwrites
      # donated parameters, and XLA copies a buffer that another fusion reads
      # unless the writer depends on that read (it drops an
      # optimization_barrier before that decision on CPU).  `never` is False
      # for every float s, NaN included ((s != s) & (s == s)), and XLA does
      # not fold float self-comparisons, so the updates keep every bit and
      # now depend on the reads.  Measured: adamw on 16M donated parameters
      # 37.2 ms -> 22.2 ms (plain 23.5 ms), three parameter copies -> none.
      s = jnp.sum(play)
      never = (s != s) & (s == s)
      new_updates = jax.tree.map(
          lambda u: jnp.where(never, jnp.zeros_like(u), u), new_updates)
    return new_updates, new_inner, play

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


def _layout_key(tree: Any) -> tuple:
  leaves, treedef = jax.tree.flatten(tree)
  return treedef, tuple(tuple(np.shape(x)) for x in leaves)


def _check_real(tree: Any) -> None:
  for x in jax.tree.leaves(tree):
    dt = _numerics.leaf_dtype(x)
    if not jnp.issubdtype(dt, jnp.floating):
      raise ValueError(
          "`regret_monitor` follows real floating parameters; got a leaf of "
          f"dtype {jnp.dtype(dt)} (complex or integer parameters are not "
          "supported: mask them out with optax.masked).")


# ----------------------------------------------------------------------------
# The transform.
# ----------------------------------------------------------------------------


def _tree_sum(fn, *trees) -> jax.Array:
  """sum over the leaves of jnp.sum(fn(*leaves)), float32."""
  total = jnp.zeros([], _f32)
  for leaves in zip(*(jax.tree.leaves(t) for t in trees), strict=True):
    total = total + jnp.sum(fn(*leaves))
  return total


def _map(fn, *trees):
  return jax.tree.map(fn, *trees, is_leaf=_is_none)


def _sup_regret(loss, sum_grads, radius, domain):
  if domain == "box":
    return loss + radius * _tree_sum(jnp.abs, sum_grads)
  return loss + radius * jnp.sqrt(_tree_sum(jnp.square, sum_grads))


def regret_monitor(
    tx: optax.GradientTransformation,
    *,
    radius: Any,
    b1: Any,
    b2: Any = None,
    c: Any = None,
    lr: Any = None,
    domain: str = "box",
    coords: Optional[int] = None,
    seed: int = 0,
    record_every: Optional[int] = None,
    name: Optional[str] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Wraps an optax transform and keeps its b1-discounted regret on the real gradients.

  Updates pass through unchanged (the wrapped transform's trajectory is
  identical, bit for bit).  At step t, with Delta_t the update the wrapped
  transform returned at step t - 1 (Delta_1 = 0) and g_t the gradient given
  now, on the monitored coordinates [D]:

      r_t = b1 r_{t-1} + <g_t, Delta_t>,      M_t = b1 M_{t-1} + g_t,
      sup over |u| <= D of R_t(u) = r_t + D ||M_t||_1 (box), r_t + D ||M_t||_2 (ball),

  and, with ``b2`` and ``c`` (or ``lr``), the streams of the bound D3
  (docs/theory.md section 3 [D]; Nguyen's Theorem 2.1 in order [R]):

      V_t = b2 V_{t-1} + g_t^2,
      E_t = b1 E_{t-1} + max(0, b1 sqrt(V_{t-1}) - sqrt(V_t)),
      Sigma_t = b1 Sigma_{t-1} + min(c g_t^2 / (2 b1 sqrt(V_{t-1})), 2 D |g_t|),
      D3 = sum over the coordinates of D^2/(2c) (sqrt(V_t) + E_t) + Sigma_t.

  D3 is a bound for
  Algorithm 1: ``ftrl_adam(lr, b1, b2, eps=0, radius=D,
  bias_correction=False)`` (``domain="ball"``: with
  ``second_moment="global"``); for other learners it is a reference curve.

  Memory (float32): by default 5 copies of the parameters (Delta, M, V, E,
  Sigma; 2 without the bound).  With ``coords=k`` it is O(k):

  * ``domain="box"``: a fixed random subset of k coordinates.  The box regret
    and D3 are sums over coordinates, so the subset's are *exactly* the
    regret and the bound of the per-coordinate learners on those coordinates
    (regret <= D3 still holds), and ``/ fraction`` estimates the whole
    model's without bias.  The monitor reads k entries of the gradient and
    of the update per step; under ``jit`` the update's are computed through
    the traced step, so the step's fusion is untouched (overhead measured
    with ``ftrl-adam bench step``: none measurable on 16M parameters; see
    docs/howto/regret_monitor.md).
  * ``domain="ball"``: a count-sketch S (each coordinate added with a random
    sign to one of k buckets; E[S^T S] = I).  Then r_t is estimated without
    bias by the sketched ``<S g_t, S Delta_t>``, ``||M_t||_2`` by ``||S M_t||_2``
    (Johnson-Lindenstrauss), and the D3 streams stay *exact* (the ball's
    need only ``||g_t||_2``).  The estimate can exceed the bound by its
    error.  It costs passes over the parameters per step, no memory.

  Args:
    tx: the optax transform to monitor (any ``GradientTransformation``).
    radius: D > 0, the radius of the comparator set (and of the learner's
      clip, for the bound).
    b1: the discount, in [0, 1): the learner's b1.
    b2: the learner's b2, in (0, 1), to track D3 (with ``c`` or ``lr``).
    c: the constant c > 0 of Algorithm 1, c = lr (1 - b1) / sqrt(1 - b2)
      (the theory's choice is c = D).  Not with ``lr``.
    lr: the learning rate > 0 (a constant) instead of ``c``.
    domain: ``"box"`` (per-coordinate learner; default) or ``"ball"``
      (global second moment).
    coords: None (every coordinate) or k >= 1 monitored coordinates (see
      above); k must not exceed the number of parameters.
    seed: an integer >= 0 choosing the subset or the sketch.
    record_every: None, or B >= 1: also keep the last B monitored gradients in
      the state, for a :class:`RegretRecorder` that writes them every B steps.
    name: optional name, to pick this monitor with ``regret_of(state, name)``
      when a state holds several; the state is then
      ``{name: RegretMonitorState}``.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose state is a
    :class:`RegretMonitorState` holding the wrapped state in ``inner``.
    Extra arguments and ``params`` are passed to ``tx``.

  Raises:
    ValueError: a bad ``radius``, ``b1``, ``b2``, ``c``, ``lr`` (both ``c``
      and ``lr``, a schedule, one without ``b2``), ``domain``, ``coords``,
      ``seed``, ``record_every`` or ``name``; in ``init``, non-real
      parameters or ``coords`` above the number of parameters.

  Example:
    >>> import jax.numpy as jnp, optax, ftrl_adam as fa
    >>> tx = fa.regret_monitor(optax.sgd(0.1), radius=1.0, b1=0.5)
    >>> params = jnp.zeros(2)
    >>> state = tx.init(params)
    >>> for g in ([1.0, -1.0], [1.0, 1.0]):
    ...   updates, state = tx.update(jnp.array(g), state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> rep = fa.regret_of(state)
    >>> # r_2 = 0.5 * 0 + <g_2, Delta_2> = -0.1 + 0.1 = 0; M_2 = (1.5, 0.5)
    >>> round(float(rep.loss), 6), rep.sum_grads.tolist(), float(rep.regret)
    (0.0, [1.5, 0.5], 2.0)

  References:
    Nguyen, ALT 2026, https://arxiv.org/abs/2510.03478.
    Ahn & Cutkosky, NeurIPS 2024, https://arxiv.org/abs/2405.18199.
  """
  if not (hasattr(tx, "init") and hasattr(tx, "update")):
    raise ValueError(
        f"`tx` must be an optax GradientTransformation, got {tx!r}.")
  _checks.check_choice("domain", domain, DOMAINS)
  radius = _checks.as_f32("radius", radius, low=0.0, low_closed=False)
  b1 = _checks.as_f32("b1", b1, low=0.0, high=1.0)
  if c is not None and lr is not None:
    raise ValueError("Give `c` or `lr`, not both: c = lr (1 - b1) / "
                     "sqrt(1 - b2).")
  if callable(lr):
    raise ValueError("`lr` must be a constant learning rate for the bound D3 "
                     f"(its c is constant), got the schedule {lr!r}.")
  if (c is not None or lr is not None) and b2 is None:
    raise ValueError("`c` / `lr` are for the bound D3, which also needs "
                     "`b2` (the learner's second-moment decay).")
  track = b2 is not None
  if track:
    b2 = _checks.as_f32("b2", b2, low=0.0, high=1.0, low_closed=False)
    if c is None and lr is None:
      raise ValueError("The bound D3 needs the learner's constant: give `c` "
                       "(c = D is the theory's choice) or `lr`.")
    if lr is not None:
      lr = _checks.as_f32("lr", lr, low=0.0, low_closed=False)
      c = lr * (1.0 - b1) / jnp.sqrt(1.0 - b2)
    else:
      c = _checks.as_f32("c", c, low=0.0, low_closed=False)
  if coords is not None:
    coords = _checks.check_positive_int("coords", coords)
  mode = "all" if coords is None else (
      "subset" if domain == "box" else "sketch")
  if isinstance(seed, (bool, np.bool_)) or not isinstance(
      seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"`seed` must be an integer >= 0, got {seed!r}.")
  seed = int(seed)
  if record_every is not None:
    record_every = _checks.check_positive_int("record_every", record_every)
  if name is not None and not isinstance(name, str):
    raise ValueError(f"`name` must be a string or None, got {name!r}.")
  tx = optax.with_extra_args_support(tx)

  @functools.lru_cache(maxsize=8)
  def view_for(key):
    treedef, shapes = key
    leaves = [jax.ShapeDtypeStruct(s, _f32) for s in shapes]
    del treedef
    if mode != "all":
      n = sum(math.prod(s) for s in shapes)
      if coords > n:
        raise ValueError(
            f"`coords` = {coords} exceeds the number of parameters ({n}).")
      if mode == "sketch" and n >= 2 ** 32:
        raise ValueError("`coords` with domain='ball' (the sketch) needs fewer "
                         f"than 2**32 parameters, got {n}.")
    return _View(leaves, mode, coords, seed)

  def view_of(tree):
    return view_for(_layout_key(tree))

  def wrap(state):
    return state if name is None else {name: state}

  def unwrap(state):
    return state if name is None else state[name]

  def init_fn(params):
    _check_real(params)
    view = view_of(params)
    scalar = lambda v, dt=_f32: _numerics.scalar_like(params, v, dt)  # noqa: E731
    empty = lambda: scalar(np.zeros((0,)))  # noqa: E731
    if not track:
      v, e, sigma = empty(), empty(), empty()
    elif domain == "box":
      v, e, sigma = (view.zeros(params) for _ in range(3))
    else:
      v, e, sigma = (scalar(0.0) for _ in range(3))
    return wrap(RegretMonitorState(
        count=scalar(0, jnp.int32),
        inner=tx.init(params),
        play=view.zeros(params),
        loss=scalar(0.0),
        sum_grads=view.zeros(params),
        regret=scalar(0.0),
        max_regret=scalar(-np.inf),
        v=v, e=e, sigma=sigma,
        recent=(empty() if record_every is None
                else view.zeros(params, (record_every,))),
        radius=scalar(radius),
        c=scalar(c if track else np.nan),
        fraction=scalar(view.k / max(view.n, 1)),
        coords_id=scalar(view.id, jnp.int32)))

  def update_fn(updates, state, params=None, **extra_args):
    st = unwrap(state)
    view = view_of(updates)
    g = view.select(updates)
    # Round t = count + 1: pay <g_t, Delta_t> with the update of the last step.
    loss = b1 * st.loss + _tree_sum(lambda a, b: a * b, g, st.play)
    sum_grads = _map(lambda m, x: None if m is None else b1 * m + x,
                     st.sum_grads, g)
    regret = _sup_regret(loss, sum_grads, st.radius, domain)
    v, e, sigma = st.v, st.e, st.sigma
    if track:
      if domain == "box":
        vl, treedef = jax.tree.flatten(v, is_leaf=_is_none)
        outs = []
        for vi, ei, si, gi in zip(vl, treedef.flatten_up_to(e),
                                  treedef.flatten_up_to(sigma),
                                  treedef.flatten_up_to(g), strict=True):
          if vi is None:
            outs.append((None, None, None))
            continue
          g2, g_abs = _d3.magnitudes(gi, "box")
          outs.append(_d3.step(vi, ei, si, g2, g_abs, b1=b1, b2=b2, c=st.c,
                               radius=st.radius))
        v, e, sigma = (treedef.unflatten([o[i] for o in outs])
                       for i in range(3))
      else:
        # The ball's streams need only ||g_t||_2: exact over every parameter.
        g2 = _tree_sum(lambda x: jnp.square(jnp.asarray(x).astype(_f32)),
                       [x for x in jax.tree.leaves(updates) if x is not None])
        v, e, sigma = _d3.step(v, e, sigma, g2, jnp.sqrt(g2), b1=b1, b2=b2,
                               c=st.c, radius=st.radius)
    new_updates, inner, play = view.select_update(
        tx, updates, st.inner, params, extra_args)
    count = optax.safe_increment(st.count)
    recent = st.recent
    if record_every is not None:
      row = (count - 1) % record_every
      recent = _map(
          lambda buf, x: None if buf is None
          else jax.lax.dynamic_update_index_in_dim(buf, x, row, 0),
          recent, g)
    return new_updates, wrap(RegretMonitorState(
        count=count, inner=inner, play=play, loss=loss,
        sum_grads=sum_grads, regret=regret,
        max_regret=jnp.maximum(st.max_regret, regret),
        v=v, e=e, sigma=sigma, recent=recent, radius=st.radius, c=st.c,
        fraction=st.fraction, coords_id=st.coords_id))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _monitor_state(opt_state: Any, name: Optional[str]) -> RegretMonitorState:
  state = _state_search.find_state(
      opt_state, RegretMonitorState, name, "regret_monitor")
  fields = {f: _state_search.unwrap_variables(_state_search.field(state, f))
            for f in RegretMonitorState._fields if f != "inner"}
  return RegretMonitorState(inner=None, **fields)


def regret_of(opt_state: Any, name: Optional[str] = None) -> MonitoredRegret:
  r"""The regret, its bound D3 and the streams kept by :func:`regret_monitor`.

  Found by type (:class:`RegretMonitorState`) in any nested state, like
  :func:`ftrl_adam.ema_params_of`: inside ``optax.chain``, ``named_chain``,
  ``inject_hyperparams``, ``MultiSteps``, a Flax ``TrainState`` or an
  ``nnx.Optimizer``.  Pure ``jnp``: it can be called inside ``jit`` at every
  step, or on the host whenever wanted:

      regret = r_t + D ||M_t||   (l1 for the box, l2 for the ball) [D],
      bound  = sum of D^2/(2c) (sqrt(V_t) + E_t) + Sigma_t        (D3 [D]).

  Args:
    opt_state: any pytree holding exactly one :class:`RegretMonitorState`,
      or several of which one is called ``name``.
    name: the ``name`` given to ``regret_monitor``, or its key in an
      ``optax.named_chain``.

  Returns:
    A :class:`MonitoredRegret`.

  Raises:
    ValueError: no monitor in the state, several and no ``name``, or
      ``name`` not found.

  Example:
    >>> import jax.numpy as jnp, ftrl_adam as fa
    >>> D, b1, b2 = 1.0, 0.9, 0.99
    >>> learner = fa.ftrl_adam(D * (1 - b2) ** 0.5 / (1 - b1), b1, b2, eps=0.0,
    ...                        radius=D, bias_correction=False)  # Algorithm 1, c = D
    >>> tx = fa.regret_monitor(learner, radius=D, b1=b1, b2=b2, c=D)
    >>> params = jnp.zeros(3)
    >>> state = tx.init(params)
    >>> for t in range(20):
    ...   g = jnp.array([1.0, -2.0, 0.5]) * (-1.0) ** t
    ...   updates, state = tx.update(g, state, params)
    ...   params = params + updates
    >>> rep = fa.regret_of(state)
    >>> int(rep.step), bool(rep.regret <= rep.bound)
    (20, True)
  """
  st = _monitor_state(opt_state, name)
  k = int(sum(math.prod(np.shape(x)) for x in jax.tree.leaves(st.sum_grads)))
  w = jnp.square(st.radius)
  bound = jnp.zeros([], _f32)
  for v, e, s in zip(jax.tree.leaves(st.v), jax.tree.leaves(st.e),
                     jax.tree.leaves(st.sigma), strict=True):
    bound = bound + jnp.sum(_d3.terms(v, e, s, w, c=st.c, radius=st.radius))
  bound = jnp.where(jnp.isnan(st.c), jnp.nan, bound)   # not tracked
  return MonitoredRegret(
      step=st.count, regret=st.regret, max_regret=st.max_regret,
      loss=st.loss, bound=bound, sum_grads=st.sum_grads, coords=k,
      fraction=st.fraction)
