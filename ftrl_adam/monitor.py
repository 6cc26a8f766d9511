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
The monitored coordinates (all, a subset, a sketch) and how they are read
are the private module ``_coords``.

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
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ftrl_adam import _checks
from ftrl_adam import _coords
from ftrl_adam import _d3
from ftrl_adam import _monitor_settings
from ftrl_adam import _numerics
from ftrl_adam import _state_search

_f32 = jnp.float32
_is_none = _numerics.is_none

DOMAINS = _d3.DOMAINS


# The rows of RegretMonitorState.streams and the entries of .sums: the running
# sums (the last three only with the ball's bound), then the settings.
ROWS = ("play", "sum_grads", "v", "e", "sigma")
SUMS = ("loss", "regret", "max_regret", "v", "e", "sigma")
SETTINGS = ("radius", "c", "fraction", "coords_id_high", "coords_id_low")


class RegretMonitorState(NamedTuple):
  """State of :func:`regret_monitor` (read it with :func:`regret_of`).

  The monitored coordinates ("view") are the whole parameter tree by default,
  or a vector of ``coords`` entries (a random subset for the box, held by
  at most ``leaves`` leaves; a count-sketch for the ball).  The streams of
  the monitored coordinates are stacked (``ROWS``), and so are the scalars
  and the settings (``SUMS``, ``SETTINGS``): a step updates each stack in one
  kernel, and a small model's step pays for few buffers (each costs a CPU
  step about 2.5 us to pass, measured with ``ftrl-adam bench step``).

  Attributes:
    count: steps seen, int32, saturating.
    inner: the wrapped transform's state.
    streams: float32, per monitored coordinate: row 0 ``play`` = Delta_{t+1},
      the last update (zeros before the first step: Delta_1 = 0); row 1
      ``sum_grads`` = M_t; with the box bound, rows 2-4 the D3 streams
      ``v`` = V_t, ``e`` = E_t, ``sigma`` = Sigma_t.  An array of shape
      (rows, k) for a subset or a sketch; a tuple of params-like trees
      (one per row) when every coordinate is monitored.
    sums: float32 vector: ``loss`` = r_t, ``regret`` = r_t + D ||M_t|| (the
      norm of ``domain``), ``max_regret`` = its maximum over s <= t, with
      the ball bound its D3 streams V_t, E_t, Sigma_t (scalars), and last
      the settings (``SETTINGS``), read as the properties below.
    recent: the last ``record_every`` monitored gradients (round t in row
      ``(t - 1) % record_every``), or None without ``record_every``.

  Properties (read from ``sums``):
    radius: D, float32.
    c: the constant c of the bound, float32 (NaN when not tracked).
    fraction: monitored entries / parameters, float32 (1 by default): the
      number of times each coordinate is monitored, in expectation over
      the subset's seed.
    coords_id: int32 identifier of the coordinate selection (a recording
      checks it when it is continued).
  """

  count: jax.Array
  inner: optax.OptState
  streams: Any
  sums: jax.Array
  recent: Any = None

  radius = property(lambda self: settings_of(self.sums)["radius"])
  c = property(lambda self: settings_of(self.sums)["c"])
  fraction = property(lambda self: settings_of(self.sums)["fraction"])
  coords_id = property(lambda self: settings_of(self.sums)["coords_id"])


def settings_of(sums: Any) -> dict:
  """radius, c, fraction and coords_id from a monitor state's ``sums``.

  The selection's id (31 bits) is kept as two float32 halves of 16 bits,
  each exact, so that every setting lives in the one float32 vector.
  """
  sums = jnp.asarray(sums)
  out = {name: sums[..., i - len(SETTINGS)]
         for i, name in enumerate(SETTINGS[:3])}
  high, low = (sums[..., i - 2].astype(jnp.int32) for i in range(2))
  out["coords_id"] = high * 65536 + low
  return out


def _settings_row(settings, view) -> jax.Array:
  """The SETTINGS entries (radius and c may be traced, e.g. vmapped over)."""
  c = np.nan if settings.c is None else settings.c
  return jnp.stack([jnp.asarray(x, _f32) for x in (
      settings.radius, c, view.k / max(view.n, 1), view.id >> 16,
      view.id & 0xFFFF)])


class MonitoredRegret(NamedTuple):
  r"""What :func:`regret_of` reads from a :class:`RegretMonitorState`.

  Printed, it shows the step, the regret, the bound and their ratio (and
  the monitored share of a subset); the fields hold the rest.

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
    coords: the number of monitored entries (a Python int).
    fraction: monitored entries / parameters; for a subset,
      ``regret / fraction`` and ``bound / fraction`` are unbiased estimates of
      the whole model's box regret and D3 (both are sums over coordinates,
      and each coordinate is monitored ``fraction`` times in expectation).
  """

  step: jax.Array
  regret: jax.Array
  max_regret: jax.Array
  loss: jax.Array
  bound: jax.Array
  sum_grads: Any
  coords: int
  fraction: jax.Array

  @property
  def ratio(self) -> jax.Array:
    """regret / bound (NaN when the bound is not tracked)."""
    return self.regret / self.bound

  def __repr__(self) -> str:
    shown = [f"step={_short(self.step)}", f"regret={_short(self.regret)}",
             f"bound={_short(self.bound)}", f"ratio={_short(self.ratio)}"]
    fraction = _short(self.fraction)
    if fraction != "1":
      shown.append(f"coords={self.coords} (fraction {fraction})")
    return f"MonitoredRegret({', '.join(shown)})"


def _short(x: Any) -> str:
  """A number as 4 significant digits; an array or a tracer by its type."""
  if isinstance(x, jax.core.Tracer):
    return x.aval.str_short()
  a = np.asarray(x)
  if a.size != 1:
    return f"{a.dtype}{list(a.shape)}"
  return f"{a.item():.4g}"


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


class _Monitor:
  """``init`` and ``update`` of one :func:`regret_monitor`."""

  def __init__(self, tx, settings: _monitor_settings.Settings, coords, leaves, seed,
               record_every, name):
    self.tx = optax.with_extra_args_support(tx)
    self.s = settings
    self.coords, self.leaves, self.seed = coords, leaves, seed
    self.record_every, self.name = record_every, name
    self.mode = "all" if coords is None else (
        "subset" if settings.domain == "box" else "sketch")
    self.box_bound = settings.b2 is not None and settings.domain == "box"
    self.views = {}   # parameter layout -> its _coords.View

  def view(self, tree: Any) -> _coords.View:
    """The view of a layout, built once (it is what the selection depends on)."""
    key = _coords.layout_key(tree)
    if key not in self.views:
      shapes = key[1]
      if self.mode != "all":
        n = sum(math.prod(s) for s in shapes)
        if self.coords > n:
          raise ValueError(f"`coords` = {self.coords} exceeds the number of "
                           f"parameters ({n}).")
        if self.mode == "sketch" and n >= 2 ** 32:
          raise ValueError("`coords` with domain='ball' (the sketch) needs "
                           f"fewer than 2**32 parameters, got {n}.")
      self.views[key] = _coords.View(shapes, self.mode, self.coords,
                                     self.leaves, self.seed)
    return self.views[key]

  def wrap(self, state):
    return state if self.name is None else {self.name: state}

  def init(self, params):
    _coords.check_real(params)
    view, s = self.view(params), self.s
    scalar = lambda v, dt=_f32: _numerics.scalar_like(params, v, dt)  # noqa: E731
    rows = 5 if self.box_bound else 2
    if self.mode == "all":
      streams = tuple(view.zeros(params) for _ in range(rows))
    else:
      streams = view.zeros(params, (rows,))
    sums = [0.0, 0.0, -np.inf] + ([0.0] * 3 if s.b2 is not None
                                  and s.domain == "ball" else [])
    sums = jnp.concatenate([jnp.asarray(sums, _f32), _settings_row(s, view)])
    return self.wrap(RegretMonitorState(
        count=scalar(0, jnp.int32), inner=self.tx.init(params),
        streams=streams, sums=scalar(sums),
        recent=(None if self.record_every is None
                else view.zeros(params, (self.record_every,)))))

  def update(self, updates, state, params=None, **extra_args):
    st = state if self.name is None else state[self.name]
    view = self.view(updates)
    g = view.select(updates)
    new_updates, inner, play = view.select_update(
        self.tx, updates, st.inner, params, extra_args)
    streams, sums = self.step(st.streams, st.sums, g, play, updates)
    count = optax.safe_increment(st.count)
    recent = st.recent
    if self.record_every is not None:
      row = (count - 1) % self.record_every
      recent = _map(
          lambda buf, x: None if buf is None
          else jax.lax.dynamic_update_index_in_dim(buf, x, row, 0),
          recent, g)
    return new_updates, self.wrap(st._replace(
        count=count, inner=inner, streams=streams, sums=sums, recent=recent))

  def step(self, streams, sums, g, play, updates):
    """The streams and sums after round t, given g_t and Delta_{t+1}.

    Round t = count + 1 pays <g_t, Delta_t> with the update of the last
    step (row ``play``), then stores Delta_{t+1}.  Both sums of the round
    (of <g_t, Delta_t> and of the norm's terms of M_t) are one reduction.
    """
    s, b1 = self.s, self.s.b1
    sum_grads = _map(lambda m, x: None if m is None else b1 * m + x,
                     streams[1], g)
    paid, terms = _sums(
        _map(lambda a, b: None if a is None else a * b, g, streams[0]),
        _map(lambda m: None if m is None else _d3.comparator_terms(
            m, s.domain), sum_grads))
    loss = b1 * sums[0] + paid
    regret = _d3.sup_regret_from_total(loss, terms, s.radius, s.domain)
    rows, extra = [play, sum_grads], []
    if s.b2 is not None:
      step = functools.partial(_d3.step, b1=b1, b2=s.b2, c=s.c,
                               radius=s.radius)
      if s.domain == "ball":
        # The ball's streams need only ||g_t||_2: exact over every parameter.
        g2 = _tree_sum(lambda x: jnp.square(jnp.asarray(x).astype(_f32)),
                       [x for x in jax.tree.leaves(updates) if x is not None])
        extra = list(step(sums[3], sums[4], sums[5], g2, jnp.sqrt(g2)))
      else:
        rows += _box_streams(step, streams[2:], g)
    rows = tuple(rows) if self.mode == "all" else jnp.stack(rows)
    return rows, jnp.concatenate([jnp.stack(
        [loss, regret, jnp.maximum(sums[2], regret)] + extra),
                                  sums[-len(SETTINGS):]])


def _add_pairs(p, q):
  # A module-level function: lax.reduce caches its computation by the
  # function's identity (a fresh lambda per call recompiled it every step).
  return p[0] + q[0], p[1] + q[1]


def _sums(a: Any, b: Any) -> tuple[jax.Array, jax.Array]:
  """(sum of a, sum of b) over every entry of two like-shaped trees.

  One variadic reduction per leaf: XLA:CPU fuses it with the element-wise
  work that makes its operands, where a single-operand float sum becomes a
  library kernel whose operand is first written to memory (measured: the
  monitored step's extra kernels 19 -> 9 on a 33-leaf model).
  """
  total = (jnp.zeros([], _f32), jnp.zeros([], _f32))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    sx, sy = jax.lax.reduce((x, y), (_f32(0), _f32(0)), _add_pairs,
                            tuple(range(np.ndim(x))))
    total = (total[0] + sx, total[1] + sy)
  return total


def _box_streams(step, streams, g) -> list:
  """[V_t, E_t, Sigma_t] of the box (arrays or trees), one ``step`` per leaf."""
  vl, treedef = jax.tree.flatten(streams[0], is_leaf=_is_none)
  outs = []
  for vi, ei, si, gi in zip(vl, treedef.flatten_up_to(streams[1]),
                            treedef.flatten_up_to(streams[2]),
                            treedef.flatten_up_to(g), strict=True):
    outs.append((None,) * 3 if vi is None
                else step(vi, ei, si, *_d3.magnitudes(gi, "box")))
  return [treedef.unflatten([o[i] for o in outs]) for i in range(3)]


def regret_monitor(
    tx: optax.GradientTransformation,
    *,
    radius: Any = None,
    b1: Any = None,
    b2: Any = None,
    c: Any = None,
    lr: Any = None,
    domain: Optional[str] = None,
    coords: Optional[int] = None,
    leaves: int = 8,
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

  **Wrapping ``fa.ftrl_adam(...)``** (the transform it returns, not a chain
  around it), the monitor reads ``radius``, ``domain``, ``b1``, ``b2`` and the
  learning rate from it (:func:`ftrl_adam.ftrl.options_of`); ``radius``,
  ``b1``, ``b2``, ``lr`` or ``c`` given as well must agree with the
  learner's (else a ``ValueError`` names the argument and both values), and
  a given ``domain`` is the comparator set asked for.  With a constant learning rate the bound is tracked
  (``c = lr (1 - b1) / sqrt(1 - b2)``); with a schedule it is not, unless
  ``c`` is given.  An unclipped ``ftrl_adam`` has no radius: give one
  (docs/howto/regret_monitor.md, "Choosing the radius").

  Memory (float32): by default 5 copies of the parameters (Delta, M, V, E,
  Sigma; 2 without the bound).  With ``coords=k`` it is O(k):

  * ``domain="box"``: a random subset of k entries held by at most
    ``leaves`` leaves (``ftrl_adam._coords.draw_subset``: the leaves, ordered
    by size, get entries in proportion to their size in expectation).  The
    box regret and D3 are sums over coordinates, so the subset's are
    *exactly* the regret and the bound of the per-coordinate learners on
    those entries (regret <= D3 still holds), and ``/ fraction`` estimates
    the whole model's without bias: every coordinate is monitored
    ``fraction = k / n`` times in expectation over the seed (a coordinate of
    a leaf smaller than its share can appear more than once).  Fewer leaves
    cost the step less and the estimate more variance (``leaves=k``: the
    entries spread over all leaves).  Under ``jit`` the update's entries are
    computed through the traced step, so the step's fusion is untouched (the
    overhead measured with ``ftrl-adam bench step``; see
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
      clip, for the bound); read from a wrapped clipped ``ftrl_adam``.
    b1: the discount, in [0, 1): the learner's b1; read from a wrapped
      ``ftrl_adam``.
    b2: the learner's b2, in (0, 1), to track D3 (with ``c`` or ``lr``).
    c: the constant c > 0 of Algorithm 1, c = lr (1 - b1) / sqrt(1 - b2)
      (the theory's choice is c = D).  Not with ``lr``.
    lr: the learning rate > 0 (a constant) instead of ``c``.
    domain: ``"box"`` (per-coordinate learner; the default) or ``"ball"``
      (global second moment); read from a wrapped clipped ``ftrl_adam``.
    coords: None (every coordinate) or k >= 1 monitored entries (see
      above); k must not exceed the number of parameters.
    leaves: the most leaves that hold the box's subset, an int >= 1
      (default 8).
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
    ValueError: a bad or missing ``radius``, ``b1``, a bad ``b2``, ``c``,
      ``lr`` (both ``c`` and ``lr``, a schedule, one without ``b2``),
      ``domain``, ``coords``, ``leaves``, ``seed``, ``record_every`` or
      ``name``, or one that contradicts the wrapped ``ftrl_adam``; in
      ``init``, non-real parameters or ``coords`` above the number of
      parameters.

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
    >>> # Wrapping ftrl_adam: radius, b1, b2 and lr are the learner's.
    >>> watched = fa.regret_monitor(fa.ftrl_adam(0.01, 0.9, 0.99, radius=0.1))
    >>> state = watched.init(params)
    >>> float(state.radius), bool(jnp.isfinite(state.c))
    (0.10000000149011612, True)

  References:
    Nguyen, ALT 2026, https://arxiv.org/abs/2510.03478.
    Ahn & Cutkosky, NeurIPS 2024, https://arxiv.org/abs/2405.18199.
  """
  if not (hasattr(tx, "init") and hasattr(tx, "update")):
    raise ValueError(
        f"`tx` must be an optax GradientTransformation, got {tx!r}.")
  if domain is not None:
    _checks.check_choice("domain", domain, DOMAINS)
  settings = _monitor_settings.resolve(tx, radius, b1, b2, c, lr, domain)
  if coords is not None:
    coords = _checks.check_positive_int("coords", coords)
  leaves = _checks.check_positive_int("leaves", leaves)
  if isinstance(seed, (bool, np.bool_)) or not isinstance(
      seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"`seed` must be an integer >= 0, got {seed!r}.")
  if record_every is not None:
    record_every = _checks.check_positive_int("record_every", record_every)
  if name is not None and not isinstance(name, str):
    raise ValueError(f"`name` must be a string or None, got {name!r}.")
  monitor = _Monitor(tx, settings, coords, leaves, int(seed), record_every,
                     name)
  return optax.GradientTransformationExtraArgs(monitor.init, monitor.update)


def state_of(opt_state: Any, name: Optional[str] = None) -> RegretMonitorState:
  """The monitor's state found in ``opt_state`` (as :func:`regret_of` finds
  it; NamedTuple or state-dict form), without the wrapped state (``inner``
  is None)."""
  state = _state_search.find_state(
      opt_state, RegretMonitorState, name, "regret_monitor")
  fields = {f: _state_search.unwrap_variables(_state_search.field(state, f))
            for f in RegretMonitorState._fields if f != "inner"}
  if hasattr(fields["streams"], "keys"):   # a tuple, in a state dict
    fields["streams"] = tuple(fields["streams"][i]
                              for i in sorted(fields["streams"]))
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

  Printed, the result is one line (step, regret, bound, ratio).

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
    >>> tx = fa.regret_monitor(learner)    # radius, b1, b2 and lr: the learner's
    >>> params = jnp.zeros(3)
    >>> state = tx.init(params)
    >>> for t in range(20):
    ...   g = jnp.array([1.0, -2.0, 0.5]) * (-1.0) ** t
    ...   updates, state = tx.update(g, state, params)
    ...   params = params + updates
    >>> rep = fa.regret_of(state)
    >>> int(rep.step), bool(rep.regret <= rep.bound)
    (20, True)
    >>> rep
    MonitoredRegret(step=20, regret=6.906, bound=13.81, ratio=0.5003)
  """
  st = state_of(opt_state, name)
  sum_grads, sums = st.streams[1], st.sums
  k = int(sum(math.prod(np.shape(x)) for x in jax.tree.leaves(sum_grads)))
  if np.shape(sums)[-1] == len(SUMS) + len(SETTINGS):   # the ball's D3 streams
    streams = [sums[3], sums[4], sums[5]]
  else:                                     # the box's: rows (none untracked)
    streams = list(st.streams[2:])
  w = jnp.square(st.radius)
  bound = jnp.zeros([], _f32)
  for v, e, s in zip(*(jax.tree.leaves(x) for x in streams), strict=True):
    bound = bound + jnp.sum(_d3.terms(v, e, s, w, c=st.c, radius=st.radius))
  bound = jnp.where(jnp.isnan(st.c), jnp.nan, bound)   # not tracked
  return MonitoredRegret(
      step=st.count, regret=sums[1], max_regret=sums[2], loss=sums[0],
      bound=bound, sum_grads=sum_grads, coords=k, fraction=st.fraction)

