"""One round of a game: the one place where a game calls the learner.

Every way of playing (a single game, :func:`ftrl_adam.regret.game`; a group
of learners sharing one oblivious stream,
:func:`~ftrl_adam.lab.regret.shared.shared_stream_games`; the time-parallel
path, :mod:`~ftrl_adam.lab.regret._parallel`) keeps the same running sums
(:class:`Acc`) and finishes with the same :func:`finish`; the sequential ones
play :func:`play_round`, which calls the transform's own ``update``.  An
oblivious stream is drawn a block of rounds at a time (:func:`block_gradients`),
identically for a single game and a shared stream, so that a grid cell equals
its single game bit for bit under the reproducible compiler options.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ftrl_adam import _d3
from ftrl_adam.lab.regret import bounds

# Rounds whose oblivious gradients are drawn in one call.
ROUND_BLOCK = 128

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


class Acc(NamedTuple):
  loss: jax.Array
  sum_grads: jax.Array
  max_box: jax.Array
  max_ball: jax.Array
  streams: bounds.BoundStreams
  first_bad: jax.Array


def regrets(loss, sum_grads, radius, axis=-1):
  """The sup of the regret over the box and over the ball (:func:`_d3.sup_regret`)."""
  return (_d3.sup_regret(loss, sum_grads, radius, "box", axis),
          _d3.sup_regret(loss, sum_grads, radius, "ball", axis))


def finish(acc, u, radius, theory, domain, d, trajectory):
  regret_box, regret_ball = regrets(acc.loss, acc.sum_grads, radius)
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


def w0_vec(adversary, d):
  return jnp.broadcast_to(jnp.asarray(adversary.w0, _f32), (d,))


def initial_carry(learner, w0, d, domain):
  """(learner state, Delta_1 = 0, w_0, zero sums) before round 1."""
  acc0 = Acc(
      loss=jnp.zeros([], _f32), sum_grads=jnp.zeros((d,), _f32),
      max_box=jnp.full([], -jnp.inf, _f32),
      max_ball=jnp.full([], -jnp.inf, _f32),
      streams=bounds.init_streams(d, domain),
      first_bad=jnp.zeros([], jnp.int32))
  return (learner.init(w0), jnp.zeros((d,), _f32), w0, acc0)


def play_round(learner, theory, carry, g, t, discount, radius, domain, horizon,
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
  r_box = (_d3.sup_regret(loss, sum_grads, radius, "box")
           if "box" in track else acc.max_box)
  r_ball = (_d3.sup_regret(loss, sum_grads, radius, "ball")
            if "ball" in track else acc.max_ball)
  if theory is None:
    streams = acc.streams
  else:
    streams = bounds.update_streams(
        acc.streams, g, b1=theory.b1, b2=theory.b2, c=theory.c,
        radius=radius, domain=domain)
  bad = ~jnp.all(jnp.isfinite(g))
  acc = Acc(
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


def oblivious_blocks(ts: jax.Array) -> jax.Array:
  """The rounds 1..T as (T // size, size): blocks whose stream is drawn at once."""
  T = ts.shape[0]
  size = max(b for b in range(1, min(T, ROUND_BLOCK) + 1) if T % b == 0)
  return ts.reshape(T // size, size)


def block_gradients(adversary, key, ts: jax.Array, d: int,
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


