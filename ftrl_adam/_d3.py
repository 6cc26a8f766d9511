r"""The online recurrence of the regret bound D3 (private, pure ``jnp``).

One copy of the maths of docs/theory.md section 3, "online form" [D], shared by
the regret lab (:func:`ftrl_adam.regret.bounds.update_streams`,
:func:`ftrl_adam.regret.d3_bound`) and the optimizer layer's regret monitor
(:func:`ftrl_adam.regret_monitor`), which may not import the lab.  With
g2 = g_t**2 and g_abs = |g_t| per coordinate (box), or ||g_t||_2**2 and
||g_t||_2 (ball, one global second moment):

    V_t = b2 V_{t-1} + g2
    E_t = b1 E_{t-1} + max(0, b1 sqrt(V_{t-1}) - sqrt(V_t))
    S_t = b1 S_{t-1} + min(c g2 / (2 b1 sqrt(V_{t-1})), 2 D g_abs)
          (the min is 2 D g_abs while V_{t-1} = 0)

and the bound for a comparator of squared size w (u**2 per coordinate for the
box, ||u||**2 for the ball; D**2 for the worst one) is, summed over the
coordinates,

    w / (2c) sqrt(V_T) + D**2 / (2c) E_T + S_T.

The functions act elementwise on arrays of any (matching) shape; the callers
keep the streams as arrays, trees or the lab's ``BoundStreams``.  The
constants are this project's [D]; Nguyen's Theorem 2.1 is the statement in
order [R].

The regret the bound bounds is here too, once (:func:`sup_regret`): the
supremum over the comparator set of the discounted regret,
``r_t + D ||M_t||_1`` (box) or ``r_t + D ||M_t||_2`` (ball).

References:
  Nguyen, *How to Set beta1, beta2 in Adam: An Online Learning Perspective*,
  ALT 2026, https://arxiv.org/abs/2510.03478.
  Orabona, *A Modern Introduction to Online Learning*, 2023,
  https://arxiv.org/abs/1912.13213 (Lemma 7.1, the FTRL lemma behind D3).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ftrl_adam import _numerics
from ftrl_adam import ftrl as _ftrl

DOMAINS = _ftrl.DOMAINS

_f32 = jnp.float32


def sup_regret(loss: Any, sum_grads: Any, radius: Any, domain: str,
               axis: Any = -1) -> jax.Array:
  r"""The regret against the worst comparator of the box or the ball of radius D.

  With ``r_t = sum_{s<=t} b1^{t-s} <g_s, Delta_s>`` (``loss``) and
  ``M_t = sum_{s<=t} b1^{t-s} g_s`` (``sum_grads``), the discounted regret
  against a fixed u is ``R_t(u) = r_t - <M_t, u>``, so [D]

      sup over ||u||_inf <= D of R_t(u) = r_t + D ||M_t||_1     (box)
      sup over ||u||_2   <= D of R_t(u) = r_t + D ||M_t||_2     (ball).

  It is :func:`comparator_terms` summed over the coordinates, then
  :func:`sup_regret_from_total` (a caller that sums other terms in the same
  pass, like the regret monitor, uses the two pieces).

  Args:
    loss: r_t, any shape broadcasting against the norm.
    sum_grads: M_t: an array, whose norm is taken over ``axis`` (an int, a
      tuple or None for every axis); or a pytree of arrays (a list, a dict,
      ...), whose norm is taken over all their entries (``axis`` unused).
    radius: D >= 0.
    domain: ``"box"`` or ``"ball"``.
    axis: the axis (or axes) of an array ``sum_grads`` that hold coordinates.

  Returns:
    ``loss + radius * ||sum_grads||``.

  Example:
    >>> import jax.numpy as jnp
    >>> from ftrl_adam import _d3
    >>> m = jnp.array([[3.0, -4.0], [1.0, 0.0]])
    >>> _d3.sup_regret(jnp.array([1.0, 0.0]), m, 0.5, "box").tolist()
    [4.5, 0.5]
    >>> float(_d3.sup_regret(1.0, {"a": m[0]}, 0.5, "ball"))
    3.5

  References:
    Nguyen, ALT 2026, https://arxiv.org/abs/2510.03478 (the discounted
    regret; the closed form of its supremum is derived here [D]).
  """
  if isinstance(sum_grads, (jax.Array, np.ndarray)):
    total = jnp.sum(comparator_terms(sum_grads, domain), axis=axis)
  else:
    total = jnp.zeros([], _f32)
    for x in jax.tree.leaves(sum_grads):
      total = total + jnp.sum(comparator_terms(x, domain))
  return sup_regret_from_total(loss, total, radius, domain)


def comparator_terms(sum_grads: Any, domain: str) -> jax.Array:
  """|M_t| (box) or M_t**2 (ball), per coordinate: the norm's terms."""
  return jnp.abs(sum_grads) if domain == "box" else jnp.square(sum_grads)


def sup_regret_from_total(loss: Any, total: Any, radius: Any,
                          domain: str) -> jax.Array:
  """r_t + D ||M_t|| from the sum of :func:`comparator_terms` over the coordinates."""
  return loss + radius * (total if domain == "box" else jnp.sqrt(total))


def magnitudes(g: jax.Array, domain: str) -> tuple[jax.Array, jax.Array]:
  """(g2, g_abs) of one gradient in float32: per coordinate (box) or global (ball)."""
  g = jnp.asarray(g, _f32)
  if domain == "box":
    return jnp.square(g), jnp.abs(g)
  g2 = jnp.sum(jnp.square(g))
  return g2, jnp.sqrt(g2)


def step(v: jax.Array, e: jax.Array, sigma: jax.Array, g2: jax.Array,
         g_abs: jax.Array, *, b1: Any, b2: Any, c: Any, radius: Any
         ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One round of the D3 streams: (V, E, Sigma) after round t from round t - 1.

  Args:
    v: V_{t-1}.
    e: E_{t-1}.
    sigma: Sigma_{t-1}.
    g2: g_t**2 (or ||g_t||**2).
    g_abs: |g_t| (or ||g_t||).
    b1: the discount (the learner's b1), float32.
    b2: the learner's b2, float32.
    c: the constant c = lr (1 - b1) / sqrt(1 - b2) of Algorithm 1, float32.
    radius: D, float32.

  Returns:
    (V_t, E_t, Sigma_t), float32.
  """
  v_new = b2 * v + g2
  e_inc, stab = increments(v, v_new, g2, g_abs, b1=b1, c=c, radius=radius)
  return v_new, b1 * e + e_inc, b1 * sigma + stab


def increments(v_prev: jax.Array, v: jax.Array, g2: jax.Array,
               g_abs: jax.Array, *, b1: Any, c: Any, radius: Any
               ) -> tuple[jax.Array, jax.Array]:
  """The round-t increments of E and Sigma, given V_{t-1} and V_t.

  max(0, b1 sqrt(V_{t-1}) - sqrt(V_t)) and min(c g2 / (2 b1 sqrt(V_{t-1})),
  2 D g_abs) (2 D g_abs while V_{t-1} = 0).  Elementwise, so the
  time-parallel game applies it to whole sequences at once.
  """
  sqrt_prev = jnp.sqrt(v_prev)
  e_inc = jnp.maximum(0.0, b1 * sqrt_prev - jnp.sqrt(v))
  den = 2.0 * b1 * sqrt_prev
  stab = jnp.where(
      den > 0,
      jnp.minimum(_numerics.safe_div(c * g2, den), 2.0 * radius * g_abs),
      2.0 * radius * g_abs)
  return e_inc, stab


def terms(v: jax.Array, e: jax.Array, sigma: jax.Array, w: jax.Array, *,
          c: Any, radius: Any) -> jax.Array:
  """The D3 bound per coordinate (sum it): w/(2c) sqrt(V) + D^2/(2c) E + Sigma."""
  return (w / (2.0 * c) * jnp.sqrt(v)
          + jnp.square(radius) / (2.0 * c) * e + sigma)
