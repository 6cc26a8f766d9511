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

from ftrl_adam.ftrl import ScaleByFtrlAdamState


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
