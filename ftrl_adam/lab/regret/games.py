r"""Online linear optimisation games: any optax transform against an adversary.

A game of T rounds in d dimensions (docs/theory.md sections 1 and 3):

* round t = 1..T: the learner has its play Delta_t (Delta_1 = 0, the play
  before any update) and iterate w_t = w_0 + sum_{s<=t} Delta_s;
* the adversary produces g_t (oblivious: from t and a key; adaptive: from
  Delta_t, w_t, a user objective F, ...);
* the learner pays the linear loss <g_t, Delta_t>;
* ``updates, state = learner.update(g_t, state, w_t)`` gives Delta_{t+1}.

All of it is one ``jax.lax.scan`` body that calls the transform's own
``update``: there is no second copy of the update rule.  The game keeps
streaming sums (O(d) memory, docs/theory.md section 1 and section 3 online forms):

    r_t = lam r_{t-1} + <g_t, Delta_t>,     M_t = lam M_{t-1} + g_t,

so that the lam-discounted regret R_T(u) = sum_t lam^{T-t} <g_t, Delta_t - u>
equals r_T - <M_T, u>, and its supremum over the box / ball of radius D is
r_T + D ||M_T||_1 / r_T + D ||M_T||_2 [D].  With the constants of Algorithm 1
(:class:`Theory`) it also accumulates the streams of the upper bound D3
(:func:`ftrl_adam.regret.update_streams`), computed from g_t alone.

Games are pure functions of arrays and a PRNG key: a jitted function of
(b1, b2, key) can be ``jax.vmap``-ped over a grid and gives, cell by cell, the
same numbers as a single game (bit for bit in the tested configurations; the
hyperparameters pass an ``optimization_barrier`` so that constants and
arguments compile alike).  One caveat, from XLA rather than from this code:
the CPU backend contracts ``a * b + c`` into a fused multiply-add depending on
its fusion decisions, which can differ between a batched and an unbatched
program; a 1-ulp difference then appears (observed: the "|w|" adversary at
d = 1, an adversary that switches with ``lax.switch``), and an adaptive
game can amplify it.  Compare such games with a tolerance.

References:
  Nguyen, *How to Set beta1, beta2 in Adam: An Online Learning Perspective*,
  ALT 2026, https://arxiv.org/abs/2510.03478.
  Ahn, Zhang, Kook & Dai, ICML 2024, https://arxiv.org/abs/2402.01567.
  Ahn & Cutkosky, NeurIPS 2024, https://arxiv.org/abs/2405.18199.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ftrl_adam import _checks
from ftrl_adam import _d3
from ftrl_adam import _theory
from ftrl_adam import ftrl as _ftrl
from ftrl_adam.lab import engine as grid_progress
from ftrl_adam.lab.regret import _parallel
from ftrl_adam.lab.regret import bounds
from ftrl_adam.lab.regret.adversaries import Adversary

METHODS = ("sequential", "parallel")

# Rounds whose shared gradients are drawn in one call (shared_stream_games).
_ROUND_BLOCK = 128
DOMAINS = bounds.DOMAINS

_f32 = jnp.float32


class Theory(NamedTuple):
  """Constants of Algorithm 1 (docs/theory.md section 2) that a learner runs with.

  Used by :func:`play` for the bound fields (D3, D4) and, with
  ``method="parallel"``, for the moment recurrences of the learner.

  Attributes:
    b1: first-moment decay (also the bound's discount).
    b2: second-moment decay.
    c: c = lr (1 - b1) / sqrt(1 - b2); the theory's choice is c = D [R].
  """

  b1: jax.Array
  b2: jax.Array
  c: jax.Array


class Trajectory(NamedTuple):
  """A recorded game, rows t = 1..T (rows past ``horizon`` are zero).

  Attributes:
    plays: Delta_t, shape ``(T, d)``.
    grads: g_t, shape ``(T, d)``.
    iterates: w_t = w_0 + sum_{s<=t} Delta_s, shape ``(T, d)``.
  """

  plays: jax.Array
  grads: jax.Array
  iterates: jax.Array


class GameResult(NamedTuple):
  r"""Outcome of a game (all float32 unless stated; scalars unless stated).

  With lam the discount and D the radius:

  Attributes:
    regret_box: sup over ||u||_inf <= D of R_T(u) = r_T + D ||M_T||_1 [D].
    regret_ball: sup over ||u||_2 <= D of R_T(u) = r_T + D ||M_T||_2 [D].
    regret_u: R_T(u) for the given comparator (u = 0 by default, when it is
      the learner's discounted loss).
    max_regret_box: max over t <= T of the box regret R_t.
    max_regret_ball: max over t <= T of the ball regret R_t.
    loss: r_T = sum_t lam^{T-t} <g_t, Delta_t>.
    sum_grads: M_T = sum_t lam^{T-t} g_t, shape ``(d,)``.
    streams: :class:`ftrl_adam.regret.BoundStreams` after round T (NaN
      without a :class:`Theory`).
    bound: D3 for the worst comparator of ``domain`` (NaN without a theory).
    bound_u: D3 for the given u.
    bound_d4: D4 for the worst comparator (a bound only when b1 <= sqrt(b2)).
    first_nonfinite_round: int32, the first round whose gradient had a NaN or
      inf, 0 if none.
    trajectory: a :class:`Trajectory` when ``record=True``, else None.
  """

  regret_box: jax.Array
  regret_ball: jax.Array
  regret_u: jax.Array
  max_regret_box: jax.Array
  max_regret_ball: jax.Array
  loss: jax.Array
  sum_grads: jax.Array
  streams: bounds.BoundStreams
  bound: jax.Array
  bound_u: jax.Array
  bound_d4: jax.Array
  first_nonfinite_round: jax.Array
  trajectory: Optional[Trajectory] = None


# ---------------------------------------------------------------- the learner


def theory_constants(b1: Any, b2: Any, radius: Any,
                     c: Optional[Any] = None) -> Theory:
  """:class:`Theory` of Algorithm 1 with c = D by default (float32, checked).

  Args:
    b1: in (0, 1).
    b2: in (0, 1).
    radius: D > 0.
    c: c > 0, default D (the theory's choice [R]).

  Returns:
    A :class:`Theory`.

  Example:
    >>> from ftrl_adam import regret
    >>> regret.theory_constants(0.9, 0.99, 2.0).c.tolist()
    2.0
  """
  b1 = _checks.as_f32("b1", b1, low=0.0, high=1.0, low_closed=False)
  b2 = _checks.as_f32("b2", b2, low=0.0, high=1.0, low_closed=False)
  radius = _checks.as_f32("radius", radius, low=0.0, low_closed=False)
  c = radius if c is None else _checks.as_f32("c", c, low=0.0, low_closed=False)
  return Theory(b1=b1, b2=b2, c=c)


def theory_learner(b1: Any, b2: Any, radius: Any, *, c: Optional[Any] = None,
                   domain: str = "box") -> optax.GradientTransformationExtraArgs:
  r"""Algorithm 1 of Nguyen (2026): the learner the bounds D3, D4 are about.

  ``ftrl_adam(lr, b1, b2, eps=0, radius=D, bias_correction=False)`` with
  ``lr = c sqrt(1 - b2) / (1 - b1)``, so that c = lr (1 - b1)/sqrt(1 - b2) and
  its FTRL rate is eta_t = c b1^{t-1} / sqrt(V_{t-1}) (docs/theory.md section 2, [D]).
  The theory's choice is c = D [R].  For ``domain="ball"`` the second moment
  is global (one scalar from ||g||^2, Ahn & Cutkosky 2024), for which the
  argmin is the Euclidean projection of -eta H.

  Args:
    b1: in (0, 1) (may be traced).
    b2: in (0, 1) (may be traced).
    radius: D > 0.
    c: c > 0, default D.
    domain: ``"box"`` or ``"ball"``.

  Returns:
    The ``optax`` transform (the chain of :func:`ftrl_adam.ftrl_adam`).

  Example:
    >>> import jax.numpy as jnp
    >>> from ftrl_adam import regret
    >>> tx = regret.theory_learner(0.9, 0.99, radius=1.0)
    >>> state = tx.init(jnp.zeros(2))
    >>> d, state = tx.update(jnp.array([2.0, -0.5]), state)
    >>> d.tolist()  # -c * g / |g| after one gradient
    [-1.0, 1.0]

  References:
    Nguyen, ALT 2026, https://arxiv.org/abs/2510.03478 (Algorithm 1).
  """
  _checks.check_choice("domain", domain, DOMAINS)
  theory = theory_constants(b1, b2, radius, c)
  lr = _theory.lr_from_c(theory.c, theory.b1, theory.b2)
  return _ftrl.ftrl_adam(
      lr, theory.b1, theory.b2, 0.0, radius=radius, domain=domain,
      bias_correction=False,
      second_moment="per_coordinate" if domain == "box" else "global")


# ---------------------------------------------------------------- validation


def _spec(x):
  return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))


def _check_adversary(adversary: Any, T: int, d: int, key: Any) -> None:
  if not isinstance(adversary, Adversary):
    raise ValueError(
        "`adversary` must be a regret.Adversary (e.g. regret.gaussian(), "
        f"regret.oppose(), regret.gradient_of(F)), got {adversary!r}.")
  _checks.check_choice("adversary.kind", adversary.kind, ("oblivious",
                                                          "adaptive"))
  if adversary.length is not None and adversary.length != T:
    raise ValueError(
        f"`adversary` ({adversary.name}) has {adversary.length} rounds but "
        f"T = {T}.")
  w0_shape = jnp.shape(adversary.w0)
  if w0_shape not in ((), (d,)):
    raise ValueError(
        f"`adversary.w0` must be a scalar or have shape ({d},), got shape "
        f"{w0_shape}.")
  vec = jax.ShapeDtypeStruct((d,), _f32)
  t_spec = jax.ShapeDtypeStruct((), jnp.int32)
  try:
    out = jax.eval_shape(
        lambda adv, t, k, x, w: adv.gradient(t, k, d, x, w),
        jax.tree.map(_spec, adversary), t_spec, _spec(key), vec, vec)
  except Exception as e:  # noqa: BLE001 - re-raised with context
    raise ValueError(
        f"`adversary` ({adversary.name}) failed to produce a gradient of "
        f"shape ({d},): {type(e).__name__}: {e}") from e
  if not isinstance(out, jax.ShapeDtypeStruct):
    raise ValueError(
        f"`adversary` ({adversary.name}) must return one float32 array of "
        f"shape ({d},), got {out!r}.")
  if out.shape != (d,) or out.dtype != _f32:
    raise ValueError(
        f"`adversary` ({adversary.name}) must return a float32 array of shape "
        f"({d},), got {out.dtype}{list(out.shape)}.")


def _check_u(u: Any, d: int) -> jax.Array:
  if u is None:
    return jnp.zeros((d,), _f32)
  if jnp.shape(u) not in ((), (d,)):
    raise ValueError(
        f"`u` must be a scalar or have shape ({d},), got shape {jnp.shape(u)}.")
  u = _checks.as_f32("u", u)
  if not _checks.is_traced(u) and not np.all(np.isfinite(np.asarray(u))):
    raise ValueError(f"`u` must be finite, got {u!r}.")
  return jnp.broadcast_to(u, (d,))


def _check_horizon(horizon: Any, T: int) -> Optional[jax.Array]:
  if horizon is None:
    return None
  if jnp.shape(horizon) != ():
    raise ValueError(f"`horizon` must be a scalar, got shape {jnp.shape(horizon)}.")
  if not _checks.is_traced(horizon):
    h = np.asarray(horizon)
    if h.dtype.kind not in "iu" or not 1 <= int(h) <= T:
      raise ValueError(
          f"`horizon` must be an integer in [1, T = {T}], got {horizon!r}.")
  elif not jnp.issubdtype(horizon.dtype, jnp.integer):
    raise ValueError(f"`horizon` must be an integer, got dtype {horizon.dtype}.")
  return jnp.asarray(horizon, jnp.int32)


def _canonical_theory(theory: Any) -> Optional[Theory]:
  if theory is None:
    return None
  if not isinstance(theory, Theory):
    raise ValueError(
        f"`theory` must be a regret.Theory(b1, b2, c) or None, got {theory!r}.")
  return Theory(
      b1=_checks.as_f32("theory.b1", theory.b1, low=0.0, high=1.0,
                        low_closed=False),
      b2=_checks.as_f32("theory.b2", theory.b2, low=0.0, high=1.0,
                        low_closed=False),
      c=_checks.as_f32("theory.c", theory.c, low=0.0, low_closed=False))


def _common_checks(adversary, T, d, key, domain, record, method):
  T = _checks.check_positive_int("T", T)
  d = _checks.check_positive_int("d", d)
  _checks.check_choice("domain", domain, DOMAINS)
  _checks.check_choice("method", method, METHODS)
  if not isinstance(record, bool):
    raise ValueError(f"`record` must be True or False, got {record!r}.")
  _checks.check_key(key)
  _check_adversary(adversary, T, d, key)
  if method == "parallel" and adversary.kind != "oblivious":
    raise ValueError(
        "method='parallel' needs an oblivious adversary (the whole sequence is "
        f"generated in advance); `adversary` ({adversary.name}) is adaptive. "
        "Use method='sequential'.")
  return T, d


def raise_if_nonfinite(result: GameResult, name: str = "the adversary") -> None:
  """Raises ValueError if a concrete game saw a non-finite gradient.

  :func:`play` and :func:`game` call it themselves when their result is
  concrete; inside ``jit``/``vmap`` read ``result.first_nonfinite_round``
  instead (0 means none).

  Args:
    result: a :class:`GameResult` (unbatched or batched).
    name: how to call the adversary in the message.

  Raises:
    ValueError: naming the first round with a non-finite gradient.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from ftrl_adam import regret
    >>> F = lambda w: jnp.sum(jnp.sqrt(w))   # NaN gradient once w < 0
    >>> adv = regret.gradient_of(F, w0=1.0)
    >>> try:
    ...   regret.game(0.9, 0.99, radius=0.3, T=10, d=1, adversary=adv,
    ...               key=jax.random.key(0))
    ... except ValueError as e:
    ...   print(e)  # doctest: +ELLIPSIS
    the adversary gradient_of(<lambda>) returned ... at round t = 5; ...
  """
  first = result.first_nonfinite_round
  if _checks.is_traced(first):
    return
  first = np.asarray(first)
  if np.any(first > 0):
    rounds = first[first > 0]
    where = "" if first.ndim == 0 else f" (in {rounds.size} of {first.size} games)"
    raise ValueError(
        f"{name} returned a non-finite gradient (NaN or inf) first at "
        f"round t = {int(rounds.min())}{where}; "
        "result.first_nonfinite_round holds the round of each game.")


# ---------------------------------------------------------------- the games


class _Acc(NamedTuple):
  loss: jax.Array
  sum_grads: jax.Array
  max_box: jax.Array
  max_ball: jax.Array
  streams: bounds.BoundStreams
  first_bad: jax.Array


def _regrets(loss, sum_grads, radius, axis=-1):
  box = loss + radius * jnp.sum(jnp.abs(sum_grads), axis=axis)
  ball = loss + radius * jnp.sqrt(jnp.sum(jnp.square(sum_grads), axis=axis))
  return box, ball


def _finish(acc, u, radius, theory, domain, d, trajectory):
  regret_box, regret_ball = _regrets(acc.loss, acc.sum_grads, radius)
  regret_u = acc.loss - jnp.sum(acc.sum_grads * u)
  if theory is None:
    nan = jnp.full([], jnp.nan, _f32)
    streams = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), acc.streams)
    bound = bound_u = bound_d4 = nan
  else:
    streams = acc.streams
    bound = bounds.d3_bound(streams, c=theory.c, radius=radius, domain=domain)
    bound_u = bounds.d3_bound(streams, c=theory.c, radius=radius, u=u,
                              domain=domain)
    bound_d4 = bounds.d4_bound(streams.v, b1=theory.b1, b2=theory.b2,
                               c=theory.c, radius=radius, domain=domain)
  return GameResult(
      regret_box=regret_box, regret_ball=regret_ball, regret_u=regret_u,
      max_regret_box=acc.max_box, max_regret_ball=acc.max_ball,
      loss=acc.loss, sum_grads=acc.sum_grads, streams=streams, bound=bound,
      bound_u=bound_u, bound_d4=bound_d4,
      first_nonfinite_round=acc.first_bad, trajectory=trajectory)


def _w0_vec(adversary, d):
  return jnp.broadcast_to(jnp.asarray(adversary.w0, _f32), (d,))


def _initial_carry(learner, w0, d, domain):
  """(learner state, Delta_1 = 0, w_0, zero sums) before round 1."""
  acc0 = _Acc(
      loss=jnp.zeros([], _f32), sum_grads=jnp.zeros((d,), _f32),
      max_box=jnp.full([], -jnp.inf, _f32),
      max_ball=jnp.full([], -jnp.inf, _f32),
      streams=bounds.init_streams(d, domain),
      first_bad=jnp.zeros([], jnp.int32))
  return (learner.init(w0), jnp.zeros((d,), _f32), w0, acc0)


def _round(learner, theory, carry, g, t, discount, radius, domain, horizon,
           record, track=("box", "ball")):
  """One round of a game, given g_t: pay, update the sums, the learner's step.

  The one place where a game calls the learner: every path (a single game, a
  vmapped grid, a group of learners sharing one gradient stream) runs this.
  """
  state, delta, w, acc = carry
  g = jnp.asarray(g, _f32)
  loss = discount * acc.loss + jnp.sum(g * delta)
  sum_grads = discount * acc.sum_grads + g
  # The running maxima of the regret (track: which comparator sets; a grid
  # reads only its domain's, and each costs a reduction per round).
  r_box = (loss + radius * jnp.sum(jnp.abs(sum_grads))
           if "box" in track else acc.max_box)
  r_ball = (loss + radius * jnp.sqrt(jnp.sum(jnp.square(sum_grads)))
            if "ball" in track else acc.max_ball)
  if theory is None:
    streams = acc.streams
  else:
    streams = bounds.update_streams(
        acc.streams, g, b1=theory.b1, b2=theory.b2, c=theory.c,
        radius=radius, domain=domain)
  bad = ~jnp.all(jnp.isfinite(g))
  acc = _Acc(
      loss=loss, sum_grads=sum_grads,
      max_box=jnp.maximum(acc.max_box, r_box),
      max_ball=jnp.maximum(acc.max_ball, r_ball), streams=streams,
      first_bad=jnp.where((acc.first_bad == 0) & bad, t, acc.first_bad))
  # The learner's own update: Delta_{t+1} from g_t (params = the iterate).
  updates, state = learner.update(g, state, w)
  next_delta = jnp.asarray(updates, _f32)
  new = (state, next_delta, w + next_delta, acc)
  ys = Trajectory(plays=delta, grads=g, iterates=w) if record else None
  if horizon is not None:
    live = t <= horizon
    new = jax.tree.map(lambda a, b: jnp.where(live, a, b), new, carry)
    if record:
      ys = jax.tree.map(lambda a: jnp.where(live, a, 0.0), ys)
  return new, ys


def _sequential(learner, adversary, key, discount, radius, u, theory, horizon,
                T, d, domain, record, tick=False):
  carry0 = _initial_carry(learner, _w0_vec(adversary, d), d, domain)
  ts = jnp.arange(1, T + 1, dtype=jnp.int32)

  if adversary.kind == "oblivious":
    # The stream drawn a block of rounds at a time, exactly as the β-grid's
    # shared streams draw it (_oblivious_blocks): the same arithmetic, so a
    # grid cell equals its single game bit for bit (reproducible options).
    def play_block(carry, tb):
      if tick:
        grid_progress.report_rounds(tb[-1], T, times=T // tb.shape[0])
      gb = _block_gradients(adversary, key, tb, d)
      return jax.lax.scan(
          lambda c, tg: _round(learner, theory, c, tg[1], tg[0], discount,
                               radius, domain, horizon, record), carry, (tb, gb))

    (_, _, _, acc), traj = jax.lax.scan(play_block, carry0,
                                        _oblivious_blocks(ts))
    if record:
      traj = jax.tree.map(lambda x: x.reshape((T,) + x.shape[2:]), traj)
    return _finish(acc, u, radius, theory, domain, d, traj)

  def body(carry, t):
    if tick:
      grid_progress.report_rounds(t, T)
    _, delta, w, _ = carry
    g = adversary.gradient(t, jax.random.fold_in(key, t), d, delta, w)
    return _round(learner, theory, carry, g, t, discount, radius, domain,
                  horizon, record)

  (_, _, _, acc), traj = jax.lax.scan(body, carry0, ts)
  return _finish(acc, u, radius, theory, domain, d, traj)


def _oblivious_blocks(ts: jax.Array) -> jax.Array:
  """The rounds 1..T as (T // size, size): blocks whose stream is drawn at once."""
  T = ts.shape[0]
  size = max(b for b in range(1, min(T, _ROUND_BLOCK) + 1) if T % b == 0)
  return ts.reshape(T // size, size)


def _block_gradients(adversary, key, ts: jax.Array, d: int,
                     per_cell: bool = False) -> jax.Array:
  """g_t of the rounds ``ts`` of an oblivious stream, drawn in one call.

  ``(size, d)``, or ``(size, K, d)`` for a batch of K per-cell adversaries.
  """
  def at(t):
    k = jax.random.fold_in(key, t)
    if per_cell:
      return jax.vmap(lambda a: a.gradient(t, k, d))(adversary)
    return adversary.gradient(t, k, d)
  return jax.vmap(at)(ts)


def shared_stream_games(b1, b2, radius, c, adversary, key, horizon=None, *,
                        T: int, d: int, domain: str = "box",
                        per_cell_adversary: bool = False,
                        tick: bool = False) -> GameResult:
  """K games of Algorithm 1 against one oblivious gradient stream.

  The stream of an oblivious adversary does not depend on the learner, so
  g_t is drawn once per round and every learner cell plays it: one
  ``lax.scan`` over rounds with the learners vmapped inside.  Each cell equals
  :func:`game` with the same (b1, b2, radius, c, adversary, key) to float32
  rounding (bit for bit under :func:`ftrl_adam.grid.compiler_options`), since
  both run :func:`_round`, the transform's own ``update``.

  Args:
    b1: ``(K,)`` first-moment decays (and the games' discount).
    b2: ``(K,)`` second-moment decays.
    radius: ``(K,)`` radii D.
    c: ``(K,)`` constants c of Algorithm 1.
    adversary: an oblivious :class:`~ftrl_adam.regret.Adversary`; with
      ``per_cell_adversary`` a batch of K adversaries (leaves with a leading
      axis K: e.g. the switch sequence of each cell's own (b1, b2)), whose
      gradients are computed per cell.
    key: the stream's PRNG key (round t uses ``fold_in(key, t)``).
    horizon: optional ``(K,)`` int32 rounds per cell (see :func:`play`).
    T: rounds.
    d: dimension.
    domain: ``"box"`` or ``"ball"``.
    per_cell_adversary: see ``adversary``.
    tick: report the rounds to the running grid's progress line.

  Returns:
    A :class:`GameResult` whose fields have a leading axis K; of
    ``max_regret_box`` and ``max_regret_ball`` only the ``domain``'s is
    tracked (the other is NaN).
  """
  b1, b2, radius, c = jax.lax.optimization_barrier((b1, b2, radius, c))
  w0 = _w0_vec(adversary, d) if not per_cell_adversary else jax.vmap(
      lambda a: _w0_vec(a, d))(adversary)

  def learner_of(b1, b2, r, c):
    return theory_learner(b1, b2, r, c=c, domain=domain), Theory(b1, b2, c)

  carry0 = jax.vmap(
      lambda b1, b2, r, c, w0: _initial_carry(learner_of(b1, b2, r, c)[0], w0,
                                              d, domain),
      in_axes=(0, 0, 0, 0, 0 if per_cell_adversary else None))(
          b1, b2, radius, c, w0)

  def one(carry, g, t, b1, b2, r, c, h):
    learner, theory = learner_of(b1, b2, r, c)
    return _round(learner, theory, carry, g, t, b1, r, domain, h, False,
                  track=(domain,))[0]

  h_axis = None if horizon is None else 0

  def body(carry, tg):
    t, g = tg
    carry = jax.vmap(one, in_axes=(0, 0 if per_cell_adversary else None, None,
                                   0, 0, 0, 0, h_axis))(
                                       carry, g, t, b1, b2, radius, c, horizon)
    return carry, None

  def block(carry, ts):
    if tick:   # once per block: ts[-1] is a multiple of the block size
      grid_progress.report_rounds(ts[-1], T, times=T // ts.shape[0])
    return jax.lax.scan(
        body, carry,
        (ts, _block_gradients(adversary, key, ts, d, per_cell_adversary)))

  # Blocks of rounds: each block's gradients are drawn in one vectorised call
  # (O(block x d) memory), then the learners play them one round at a time.
  ts = _oblivious_blocks(jnp.arange(1, T + 1, dtype=jnp.int32))
  (_, _, _, acc), _ = jax.lax.scan(block, carry0, ts)
  zero_u = jnp.zeros((d,), _f32)
  res = jax.vmap(
      lambda acc, r, b1, b2, c: _finish(acc, zero_u, r, Theory(b1, b2, c),
                                        domain, d, None))(acc, radius, b1, b2, c)
  # Only the domain's running maximum was tracked.
  nan = jnp.full_like(res.max_regret_box, jnp.nan)
  return res._replace(**{f"max_regret_{'ball' if domain == 'box' else 'box'}":
                         nan})


def _parallel_game(learner, adversary, key, discount, radius, u, theory,
                   horizon, T, d, domain, record):
  w0 = _w0_vec(adversary, d)
  ts = jnp.arange(1, T + 1, dtype=jnp.int32)
  grads = jax.vmap(
      lambda t: adversary.gradient(t, jax.random.fold_in(key, t), d))(ts)
  grads = jnp.asarray(grads, _f32)
  b1, b2, c = theory.b1, theory.b2, theory.c
  shift = lambda x: jnp.concatenate([jnp.zeros_like(x[:1]), x[:-1]])  # noqa: E731
  sq_norm = jnp.sum(jnp.square(grads), axis=1)
  if domain == "box":
    g2, g_abs = jnp.square(grads), jnp.abs(grads)
  else:
    g2, g_abs = sq_norm, jnp.sqrt(sq_norm)

  # Every recurrence sharing a decay goes through one associative scan.
  init_state = learner.init(w0)
  is_ftrl = lambda x: isinstance(x, _ftrl.ScaleByFtrlAdamState)  # noqa: E731
  ftrl_state = [x for x in jax.tree.leaves(init_state, is_leaf=is_ftrl)
                if is_ftrl(x)][0]
  global_nu = jnp.ndim(ftrl_state.nu) == 0     # second_moment="global"
  nus, v = _parallel.linear_recurrences(
      b2, (1.0 - b2) * (sq_norm if global_nu else jnp.square(grads)), g2)
  e_inc, stab = _d3.increments(shift(v), v, g2, g_abs, b1=b1, c=c,
                               radius=radius)
  mus, e, sigma = _parallel.linear_recurrences(
      b1, (1.0 - b1) * grads, e_inc, stab)

  # The learner's state before round t + 1 is (t, m_t, v_t), t = 0..T-1, and
  # Delta_{t+1} is the transform's own update of g_t from it.
  states = _parallel.batched_states(init_state, ts - 1, shift(mus), shift(nus))
  updates = jax.vmap(lambda s, g: learner.update(g, s, None)[0])(states, grads)
  # One learner, structurally: the moments rebuilt from `theory` must be the
  # ones the transform's own update computes.  Two of its steps, compared with
  # the rebuilt state after them; a mismatch (a theory whose b1, b2 are not
  # the learner's) poisons every result (NaN) and `play` raises.
  own = init_state
  for i in range(min(T, 2)):
    own = learner.update(grads[i], own, None)[1]
  n_own = min(T, 2)
  rebuilt = (mus[n_own - 1], nus[n_own - 1])
  own_ftrl = [x for x in jax.tree.leaves(own, is_leaf=is_ftrl) if is_ftrl(x)][0]
  same = jnp.all(jnp.stack([
      jnp.all(jnp.abs(a - b) <= 1e-5 * jnp.abs(b) + 1e-30)
      for a, b in zip((own_ftrl.mu, own_ftrl.nu), rebuilt, strict=True)]))
  updates = jnp.where(same, updates, jnp.nan)
  plays = shift(jnp.asarray(updates, _f32))
  iterates = w0 + jnp.cumsum(plays, axis=0)

  losses, sums = _parallel.linear_recurrences(
      discount, jnp.sum(grads * plays, axis=1), grads)
  live = jnp.ones((T,), bool) if horizon is None else ts <= horizon
  last = T - 1 if horizon is None else horizon - 1
  r_box, r_ball = _regrets(losses, sums, radius)
  bad = ~jnp.all(jnp.isfinite(grads), axis=1) & live
  acc = _Acc(
      loss=losses[last], sum_grads=sums[last],
      max_box=jnp.max(jnp.where(live, r_box, -jnp.inf)),
      max_ball=jnp.max(jnp.where(live, r_ball, -jnp.inf)),
      streams=bounds.BoundStreams(v=v[last], e=e[last], sigma=sigma[last]),
      first_bad=jnp.where(jnp.any(bad), jnp.argmax(bad) + 1, 0).astype(
          jnp.int32))
  traj = None
  if record:
    mask = lambda x: jnp.where(live[:, None], x, 0.0)  # noqa: E731
    traj = Trajectory(plays=mask(plays), grads=mask(grads),
                      iterates=mask(iterates))
  return _finish(acc, u, radius, theory, domain, d, traj)


def _play_impl(learner, adversary, key, discount, radius, u, theory, horizon,
               *, T, d, domain, record, method, tick=False):
  adversary, discount, radius, u, theory, horizon = (
      jax.lax.optimization_barrier(
          (adversary, discount, radius, u, theory, horizon)))
  if method == "sequential":
    return _sequential(learner, adversary, key, discount, radius, u, theory,
                       horizon, T, d, domain, record, tick)
  return _parallel_game(learner, adversary, key, discount, radius, u, theory,
                        horizon, T, d, domain, record)


_play_jit = jax.jit(
    _play_impl,
    static_argnames=("learner", "T", "d", "domain", "record", "method"))


def play(
    learner: optax.GradientTransformation,
    adversary: Adversary,
    *,
    T: int,
    d: int,
    key: jax.Array,
    radius: Any,
    discount: Optional[Any] = None,
    u: Optional[Any] = None,
    theory: Optional[Theory] = None,
    domain: str = "box",
    horizon: Optional[Any] = None,
    record: bool = False,
    method: str = "sequential",
) -> GameResult:
  r"""Plays any optax transform as an online learner against an adversary.

  T rounds in d dimensions under one ``jax.lax.scan`` (see the module
  docstring for the round semantics); returns the lam-discounted regret

  .. math:: R_T(u) = \sum_{t=1}^T \lambda^{T-t} \langle g_t, \Delta_t - u\rangle

  against the best comparator of the box and of the ball of radius D, against
  ``u``, and, given the learner's :class:`Theory`, the bounds D3 and D4
  (docs/theory.md section 3 [D]).  Identity D2: for Algorithm 1 (lam = b1) this is
  b1^T times the FTRL regret on the scaled losses b1^{-t} g_t [D].

  ``method="parallel"`` (oblivious adversaries, ``ftrl_adam`` chains): the
  moments, the discounted sums and the bound streams are computed with
  ``jax.lax.associative_scan`` (O(log T) depth), and every play with the
  transform's own ``update`` vmapped over t; equal to the sequential path to
  float32 rounding.  It needs ``theory`` for the learner's b1, b2.

  Args:
    learner: any ``optax.GradientTransformation`` acting on a float32 ``(d,)``
      vector (its ``update`` receives the iterate w_t as ``params``).
    adversary: an :class:`ftrl_adam.regret.Adversary`.
    T: number of rounds, an int >= 1.
    d: dimension, an int >= 1.
    key: a PRNG key; round t uses ``jax.random.fold_in(key, t)``.
    radius: D >= 0 of the comparator set (and of the learner, for the bound).
    discount: lam in [0, 1]; default ``theory.b1`` (required without theory).
    u: comparator, scalar or ``(d,)``; default 0.
    theory: :class:`Theory` of the learner, or None (bound fields are NaN).
    domain: ``"box"`` or ``"ball"``: the learner's domain, for the bound.
    horizon: optional int32 scalar in [1, T] (may be traced): rounds after it
      are skipped (state and sums frozen), so a vmapped grid can give each
      cell its own number of rounds under one static T.
    record: also return the :class:`Trajectory` (O(T d) memory).
    method: ``"sequential"`` or ``"parallel"``.

  Returns:
    A :class:`GameResult`.

  Raises:
    ValueError: bad T, d, key, adversary (shape, dtype, length), radius,
      discount, u, horizon or method; or, when the result is concrete, a
      non-finite gradient (the message names the round).

  Example:
    >>> import jax, optax
    >>> from ftrl_adam import regret
    >>> res = regret.play(optax.sgd(0.1), regret.rademacher(1.0), T=100, d=3,
    ...                   key=jax.random.key(0), radius=1.0, discount=0.9)
    >>> bool(res.regret_box >= res.regret_u)  # u = 0 lies in the box
    True
  """
  T, d = _common_checks(adversary, T, d, key, domain, record, method)
  if not (hasattr(learner, "init") and hasattr(learner, "update")):
    raise ValueError(
        f"`learner` must be an optax GradientTransformation, got {learner!r}.")
  theory = _canonical_theory(theory)
  radius = _checks.as_f32("radius", radius, low=0.0)
  if discount is None:
    if theory is None:
      raise ValueError(
          "`discount` is required when no `theory` is given (the game's "
          "discount defaults to the learner's b1 = theory.b1).")
    discount = theory.b1
  discount = _checks.as_f32("discount", discount, low=0.0, high=1.0,
                            high_closed=True)
  if method == "parallel":
    if theory is None:
      raise ValueError(
          "method='parallel' needs `theory=regret.Theory(b1, b2, c)` with the "
          "learner's decays, to rebuild its moments.")
    _parallel.check_learner_state(
        jax.eval_shape(learner.init, jax.ShapeDtypeStruct((d,), _f32)))
  u = _check_u(u, d)
  horizon = _check_horizon(horizon, T)
  result = _play_jit(
      adversary=adversary, key=key, discount=discount, radius=radius, u=u,
      theory=theory, horizon=horizon, learner=learner, T=T, d=d,
      domain=domain, record=record, method=method)
  raise_if_nonfinite(result, f"the adversary {adversary.name}")
  if (method == "parallel" and not _checks.is_traced(result.loss)
      and np.isnan(np.asarray(result.loss)).any()):
    raise ValueError(
        "method='parallel': `theory` (b1, b2) does not match the learner's "
        "own moments (its first two steps differ from the moments rebuilt "
        "from theory.b1, theory.b2); pass the learner's decays in `theory`, "
        "or use method='sequential'.")
  return result


def _game_impl(b1, b2, radius, c, adversary, key, discount, u, horizon, *, T,
               d, domain, record, method, tick=False):
  # Constants (Python floats in a user's jit) and arguments (an eager call, a
  # vmapped grid) must execute the same arithmetic: the barrier stops XLA from
  # folding the hyperparameters into the program, so that every way of
  # calling a game gives bit-identical numbers.
  b1, b2, radius, c = jax.lax.optimization_barrier((b1, b2, radius, c))
  theory = Theory(b1=b1, b2=b2, c=c)
  learner = theory_learner(b1, b2, radius, c=c, domain=domain)
  return _play_impl(learner, adversary, key, discount, radius, u, theory,
                    horizon, T=T, d=d, domain=domain, record=record,
                    method=method, tick=tick)


def grid_cell_game(b1, b2, radius, c, adversary, key, horizon=None, *,
                   T: int, d: int, domain: str = "box",
                   method: str = "sequential") -> GameResult:
  """:func:`game` as a grid cell (unchecked, traced arguments) with progress.

  The same computation as :func:`game` with discount b1 and u = 0; it also
  reports its rounds to the running grid's progress line
  (:func:`ftrl_adam.grid.report_rounds`).  For the lab's runners.
  """
  return _game_impl(b1, b2, radius, c, adversary, key, b1,
                    jnp.zeros((d,), _f32), horizon, T=T, d=d, domain=domain,
                    record=False, method=method,
                    tick=method == "sequential")


_game_jit = jax.jit(
    _game_impl, static_argnames=("T", "d", "domain", "record", "method"))


def game(
    b1: Any,
    b2: Any,
    *,
    radius: Any,
    T: int,
    d: int,
    adversary: Adversary,
    key: jax.Array,
    c: Optional[Any] = None,
    domain: str = "box",
    discount: Optional[Any] = None,
    u: Optional[Any] = None,
    horizon: Optional[Any] = None,
    record: bool = False,
    method: str = "sequential",
) -> GameResult:
  r"""A game of the theory's learner, Algorithm 1, against an adversary.

  :func:`play` with ``learner = theory_learner(b1, b2, radius, c=c,
  domain=domain)`` (uncorrected, eps = 0, clipped; c = D by default), its
  :class:`Theory` for the bounds, and discount b1.  b1, b2, radius, c, u and
  horizon may be traced: ``jax.vmap`` of a jitted function of (b1, b2, key)
  runs a grid whose cells equal single games.  Compiled once per (adversary,
  T, d, domain, record, method).

  The D3 bound it reports is this project's [D]; Nguyen's Theorem 2.1 is the
  same statement in order [R].

  Args:
    b1: in (0, 1).
    b2: in (0, 1).
    radius: D > 0.
    T: number of rounds.
    d: dimension.
    adversary: an :class:`ftrl_adam.regret.Adversary`.
    key: a PRNG key.
    c: the constant of Algorithm 1, default D.
    domain: ``"box"`` or ``"ball"`` (ball: global second moment).
    discount: default b1 (the theory's).
    u: comparator for ``regret_u`` / ``bound_u``, default 0.
    horizon: optional number of live rounds <= T (see :func:`play`).
    record: also return the trajectory.
    method: ``"sequential"`` or ``"parallel"`` (oblivious adversaries).

  Returns:
    A :class:`GameResult`.

  Example:
    >>> import jax
    >>> from ftrl_adam import regret
    >>> res = regret.game(0.9, 0.99, radius=1.0, T=200, d=4,
    ...                   adversary=regret.gaussian(1.0), key=jax.random.key(0))
    >>> bool(res.regret_box <= res.bound)   # D3
    True

  References:
    Nguyen, ALT 2026, https://arxiv.org/abs/2510.03478.
  """
  T, d = _common_checks(adversary, T, d, key, domain, record, method)
  theory = theory_constants(b1, b2, radius, c)
  radius = _checks.as_f32("radius", radius, low=0.0, low_closed=False)
  discount = theory.b1 if discount is None else _checks.as_f32(
      "discount", discount, low=0.0, high=1.0, high_closed=True)
  u = _check_u(u, d)
  horizon = _check_horizon(horizon, T)
  result = _game_jit(theory.b1, theory.b2, radius, theory.c, adversary, key,
                     discount, u, horizon, T=T, d=d, domain=domain,
                     record=record, method=method)
  raise_if_nonfinite(result, f"the adversary {adversary.name}")
  return result
