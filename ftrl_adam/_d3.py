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

from ftrl_adam import _numerics
from ftrl_adam import ftrl as _ftrl

DOMAINS = _ftrl.DOMAINS

_f32 = jnp.float32


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
