"""Zero-safe clipping of updates to a box or an l2 ball of radius D.

These are the two FTRL domains of Nguyen (ALT 2026, arXiv:2510.03478) and of
Ahn & Cutkosky (NeurIPS 2024, arXiv:2405.18199): clip_D(x) is the Euclidean
projection of the update on ``[-D, D]^d`` (box) or on ``{x : ||x||_2 <= D}``
(ball).  See docs/theory.md section 1.  Both are exact projections; "zero-safe" means
that ``D = 0`` or a zero update gives a zero update, and that the gradient of the
clipped update with respect to its input is finite there too.

Complex updates are projections in C^n = R^2n: the box clips the real and the
imaginary part of each coordinate to [-D, D], the ball bounds
``sum |u_i|**2 <= D**2``.  Non-finite in, non-finite out: a NaN or inf
coordinate is NaN after the box (the projection of an infinite step is not a
step of size D), and a non-finite norm makes the whole ball projection NaN.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ftrl_adam import _checks
from ftrl_adam import _numerics

_is_none = _numerics.is_none


class ClipBoxState(NamedTuple):
  """State of :func:`clip_box` (stateless: no fields)."""


class ClipBallState(NamedTuple):
  """State of :func:`clip_ball` (stateless: no fields)."""


def safe_norm(tree: Any) -> jax.Array:
  """Global l2 norm of a pytree (|u_i| for complex), float32 at least, gradient 0 at 0.

  ``sqrt`` has an infinite derivative at 0; the double ``where`` keeps both the
  value and the gradient finite for an all-zero tree.  A NaN anywhere gives a
  NaN norm, an inf an inf norm.
  """
  sq = _numerics.tree_fixed_order_sum(tree, _numerics.abs_sq)
  positive = sq > 0
  # Not positive: 0 (all zero) or NaN, returned as they are.
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), sq)


def ball_scale(norm: jax.Array, radius: jax.Array) -> jax.Array:
  """min(1, radius / norm): 1 when norm = 0, NaN when norm is NaN or inf."""
  outside = norm > radius
  scale = jnp.where(outside, radius / jnp.where(outside, norm, 1.0), 1.0)
  return jnp.where(jnp.isfinite(norm), scale, jnp.nan)


def _clip_real(u: jax.Array, radius: jax.Array) -> jax.Array:
  """clip(u, -D, D), NaN where u is not finite."""
  return jnp.where(jnp.isfinite(u), jnp.clip(u, -radius, radius), jnp.nan)


def _clip_coordinates(u: jax.Array, radius: jax.Array) -> jax.Array:
  """The projection on the box; real and imaginary parts for complex ``u``."""
  if jnp.iscomplexobj(u):
    clipped = jax.lax.complex(_clip_real(u.real, radius),
                              _clip_real(u.imag, radius))
  else:
    clipped = _clip_real(u, radius)
  return clipped.astype(u.dtype)


def clip_box(radius: Any) -> optax.GradientTransformationExtraArgs:
  """Clips every coordinate of the update to ``[-radius, radius]``.

  This is the Euclidean projection on the box ``[-D, D]^d``, the per-coordinate
  FTRL domain of Nguyen (2026), docs/theory.md section 1.  A complex
  coordinate has its real and imaginary parts clipped: the box of
  C^d = R^2d, which is also the exact FTRL argmin there, since a complex
  coordinate's two real parts share one rate.  A NaN or inf coordinate gives
  NaN.

  Args:
    radius: D >= 0, a float or a float32 array (it can be vmapped).

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example:
    >>> import jax.numpy as jnp, ftrl_adam as fa
    >>> tx = fa.clip_box(0.5)
    >>> u, _ = tx.update({"w": jnp.array([-2.0, 0.1, 3.0])}, tx.init(None))
    >>> u["w"].tolist()
    [-0.5, 0.10000000149011612, 0.5]
  """
  radius = _checks.as_f32("radius", radius, low=0.0)

  def init_fn(params):
    del params
    return ClipBoxState()

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    updates = jax.tree.map(
        lambda u: None if u is None else _clip_coordinates(u, radius),
        updates, is_leaf=_is_none)
    return updates, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def clip_ball(radius: Any) -> optax.GradientTransformationExtraArgs:
  """Scales the whole update tree into the l2 ball of radius ``radius``.

  ``u -> u * min(1, D / ||u||_2)`` with the norm taken over every leaf: the
  Euclidean projection on the ball, the FTRL domain of Ahn & Cutkosky (2024).
  For complex leaves ``||u||_2**2 = sum |u_i|**2``: the ball of C^d = R^2d.
  A NaN or inf anywhere makes every coordinate NaN.

  Args:
    radius: D >= 0, a float or a float32 array (it can be vmapped).

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example:
    >>> import jax.numpy as jnp, ftrl_adam as fa
    >>> tx = fa.clip_ball(1.0)
    >>> u, _ = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init(None))
    >>> [round(x, 6) for x in u["w"].tolist()]
    [0.6, 0.8]
  """
  radius = _checks.as_f32("radius", radius, low=0.0)

  def init_fn(params):
    del params
    return ClipBallState()

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    scale = ball_scale(safe_norm(updates), radius)
    updates = jax.tree.map(
        lambda u: None if u is None else (u * scale).astype(u.dtype),
        updates, is_leaf=_is_none)
    return updates, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
