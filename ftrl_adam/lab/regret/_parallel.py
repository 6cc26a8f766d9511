"""Time-parallel helpers of the regret games (private).

Against an oblivious adversary the whole gradient sequence is known in
advance, and everything the game needs is a linear recurrence

    x_t = a x_{t-1} + b_t,    x_0 = 0,

(the learner's moments m_t, v_t; the discounted sums of the regret; the
streams V_t, E_t, Sigma_t of the bound D3).  Pairs (a, b) compose
associatively, ``(a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2)``, so
``jax.lax.associative_scan`` computes all T prefixes in O(log T) depth
(Blelloch 1990, https://www.cs.cmu.edu/~guyb/papers/Ble93.pdf).  The plays are
then obtained by calling the transform's own ``update`` vmapped over t on the
reconstructed states: only the moment recurrence is computed again, never the
update rule.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ftrl_adam import _d3
from ftrl_adam.ftrl import ScaleByFtrlAdamState
from ftrl_adam.lab.regret import bounds
from ftrl_adam.lab.regret import rounds


def linear_recurrence(a: Any, b: jax.Array) -> jax.Array:
  """All x_t, t = 1..T, of x_t = a x_{t-1} + b_t with x_0 = 0 (axis 0 is t).

  ``a`` is a scalar (the same decay every round).  Returns an array shaped like
  ``b``; row t - 1 holds x_t.
  """
  big_a = jnp.broadcast_to(
      jnp.asarray(a, b.dtype), (b.shape[0],) + (1,) * (b.ndim - 1))

  def combine(x, y):
    a1, b1 = x
    a2, b2 = y
    return a1 * a2, a2 * b1 + b2

  return jax.lax.associative_scan(combine, (big_a, b))[1]


def linear_recurrences(a: Any, *bs: jax.Array) -> tuple[jax.Array, ...]:
  """:func:`linear_recurrence` of several sequences sharing the decay ``a``.

  The sequences (axis 0 is t, any trailing shape) are concatenated and go
  through a single associative scan, then split back.
  """
  flat = [b.reshape(b.shape[0], -1) for b in bs]
  sizes = np.cumsum([f.shape[1] for f in flat])[:-1]
  xs = jnp.split(linear_recurrence(a, jnp.concatenate(flat, axis=1)), sizes,
                 axis=1)
  return tuple(x.reshape(b.shape) for x, b in zip(xs, bs, strict=False))


def _is_known(x: Any) -> bool:
  return isinstance(x, (ScaleByFtrlAdamState, optax.ScaleByScheduleState))


def check_learner_state(state: Any) -> None:
  """Raises ValueError unless the state can be rebuilt from (count, m, v).

  Supported: exactly one :class:`ScaleByFtrlAdamState`, any number of
  ``optax.ScaleByScheduleState`` and stateless nodes (no array leaves), i.e.
  the chain of :func:`ftrl_adam.ftrl_adam`.
  """
  n_ftrl = 0
  for leaf in jax.tree.leaves(state, is_leaf=_is_known):
    if isinstance(leaf, ScaleByFtrlAdamState):
      n_ftrl += 1
    elif isinstance(leaf, optax.ScaleByScheduleState):
      pass
    else:
      raise ValueError(
          "method='parallel' rebuilds the learner's state from its moments and "
          "supports the chains of `ftrl_adam` / `scale_by_ftrl_adam` "
          "(ScaleByFtrlAdamState, ScaleByScheduleState and stateless "
          f"transforms); the learner's state has another leaf {leaf!r}. "
          "Use method='sequential'.")
  if n_ftrl != 1:
    raise ValueError(
        "method='parallel' needs a learner with exactly one "
        f"ScaleByFtrlAdamState in its state; found {n_ftrl}. "
        "Use method='sequential'.")


def batched_states(init_state: Any, counts: jax.Array, mus: jax.Array,
                   nus: jax.Array) -> Any:
  """The learner's state before each round, batched over axis 0.

  ``counts[i], mus[i], nus[i]`` are (n, m_n, v_n) with n = i gradients seen;
  the schedule's count is n as well (``scale_by_schedule`` counts updates).
  """

  def build(n, m, v):
    def rep(x):
      if isinstance(x, ScaleByFtrlAdamState):
        return x._replace(count=n.astype(x.count.dtype),
                          mu=m.astype(x.mu.dtype), nu=v.astype(x.nu.dtype))
      if isinstance(x, optax.ScaleByScheduleState):
        return x._replace(count=n.astype(x.count.dtype))
      return x
    return jax.tree.map(rep, init_state, is_leaf=_is_known)

  return jax.vmap(build)(counts, mus, nus)


def parallel_game(learner, adversary, key, discount, radius, u, theory,
                  horizon, T, d, domain, record):
  """A game of an oblivious adversary as associative scans over time.

  The whole stream is drawn first; the learner's moments are rebuilt by
  :func:`linear_recurrences`, and each play is the transform's own update
  from the rebuilt state (:func:`batched_states`), so the results equal the
  sequential game's to float32 rounding.  O(T d) memory.
  """
  w0 = rounds.w0_vec(adversary, d)
  ts = jnp.arange(1, T + 1, dtype=jnp.int32)
  grads = jax.vmap(
      lambda t: adversary.gradient(t, jax.random.fold_in(key, t), d))(ts)
  grads = jnp.asarray(grads, jnp.float32)
  b1, b2, c = theory.b1, theory.b2, theory.c
  shift = lambda x: jnp.concatenate([jnp.zeros_like(x[:1]), x[:-1]])  # noqa: E731
  sq_norm = jnp.sum(jnp.square(grads), axis=1)
  if domain == "box":
    g2, g_abs = jnp.square(grads), jnp.abs(grads)
  else:
    g2, g_abs = sq_norm, jnp.sqrt(sq_norm)

  # Every recurrence sharing a decay goes through one associative scan.
  init_state = learner.init(w0)
  is_ftrl = lambda x: isinstance(x, ScaleByFtrlAdamState)  # noqa: E731
  ftrl_state = [x for x in jax.tree.leaves(init_state, is_leaf=is_ftrl)
                if is_ftrl(x)][0]
  global_nu = jnp.ndim(ftrl_state.nu) == 0     # second_moment="global"
  nus, v = linear_recurrences(
      b2, (1.0 - b2) * (sq_norm if global_nu else jnp.square(grads)), g2)
  e_inc, stab = _d3.increments(shift(v), v, g2, g_abs, b1=b1, c=c,
                               radius=radius)
  mus, e, sigma = linear_recurrences(
      b1, (1.0 - b1) * grads, e_inc, stab)

  # The learner's state before round t + 1 is (t, m_t, v_t), t = 0..T-1, and
  # Delta_{t+1} is the transform's own update of g_t from it.
  states = batched_states(init_state, ts - 1, shift(mus), shift(nus))
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
  plays = shift(jnp.asarray(updates, jnp.float32))
  iterates = w0 + jnp.cumsum(plays, axis=0)

  losses, sums = linear_recurrences(
      discount, jnp.sum(grads * plays, axis=1), grads)
  live = jnp.ones((T,), bool) if horizon is None else ts <= horizon
  last = T - 1 if horizon is None else horizon - 1
  r_box, r_ball = rounds.regrets(losses, sums, radius)
  bad = ~jnp.all(jnp.isfinite(grads), axis=1) & live
  acc = rounds.Acc(
      loss=losses[last], sum_grads=sums[last],
      max_box=jnp.max(jnp.where(live, r_box, -jnp.inf)),
      max_ball=jnp.max(jnp.where(live, r_ball, -jnp.inf)),
      streams=bounds.BoundStreams(v=v[last], e=e[last], sigma=sigma[last]),
      first_bad=jnp.where(jnp.any(bad), jnp.argmax(bad) + 1, 0).astype(
          jnp.int32))
  traj = None
  if record:
    mask = lambda x: jnp.where(live[:, None], x, 0.0)  # noqa: E731
    traj = rounds.Trajectory(plays=mask(plays), grads=mask(grads),
                      iterates=mask(iterates))
  return rounds.finish(acc, u, radius, theory, domain, d, traj)


