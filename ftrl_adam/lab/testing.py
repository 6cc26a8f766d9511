r"""Test oracles: float64 references and closed forms for small games.

Independent code paths that the package's tests (and yours) compare the regret
lab against; none of it is used by the lab itself.

The EMA form of Algorithm 1 is the implementation; the FTRL form on the scaled
losses h_t = b1^{-t} g_t (docs/theory.md section 2, Algorithm 2 [D]) is an oracle for
small T only: b1^{-t} overflows float64 near t = 6700 for b1 = 0.9, and these
functions refuse horizons where it would.  They take a recorded trajectory
(:class:`ftrl_adam.regret.Trajectory`) or a gradient sequence as arrays of
shape ``(T, d)``.

References:
  Nguyen, ALT 2026, https://arxiv.org/abs/2510.03478.
  Ahn, Zhang, Kook & Dai, ICML 2024, https://arxiv.org/abs/2402.01567.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ftrl_adam import _checks
from ftrl_adam import ftrl as _ftrl

DOMAINS = _ftrl.DOMAINS

__all__ = ("discounted_regret", "ftrl_plays", "scaled_ftrl_regret",
           "switch_eta", "switch_pre_clip_play")

# b1**-T must stay well inside float64 (max ~ 1.8e308 = e**709.8).
_MAX_LOG_SCALE = 600.0


def _as_2d(name: str, x: Any) -> np.ndarray:
  arr = np.asarray(x, np.float64)
  if arr.ndim != 2:
    raise ValueError(f"`{name}` must have shape (T, d), got {arr.shape}.")
  return arr


def _check_scale(b1: float, T: int) -> None:
  if not 0.0 < b1 < 1.0:
    raise ValueError(f"`b1` must lie in (0, 1), got {b1!r}.")
  if T * -np.log(b1) > _MAX_LOG_SCALE:
    raise ValueError(
        f"b1**-T overflows float64 for T = {T}, b1 = {b1}: the scaled FTRL "
        "form is an oracle for small T only; use the game's streamed regret.")


def _comparator_norm(v: np.ndarray, domain: str) -> float:
  return float(np.sum(np.abs(v)) if domain == "box" else np.linalg.norm(v))


def discounted_regret(
    grads: Any, plays: Any, discount: float, *, u: Optional[Any] = None,
    radius: Optional[float] = None, domain: str = "box",
) -> float:
  r"""R_T(u) = sum_t lam^{T-t} <g_t, Delta_t - u> in float64 (docs/theory.md section 1).

  With ``radius`` instead of ``u``: the supremum over the box (``||.||_1``) or
  ball (``||.||_2``) of radius D, ``sum_t lam^{T-t} <g_t, Delta_t> + D ||M_T||``
  with M_T = sum_t lam^{T-t} g_t [D].

  Args:
    grads: g_t, shape ``(T, d)``.
    plays: Delta_t, shape ``(T, d)``.
    discount: lam in [0, 1].
    u: the comparator (scalar or ``(d,)``), or None.
    radius: D for the best comparator (used when ``u`` is None; default 0).
    domain: ``"box"`` or ``"ball"``.

  Returns:
    A Python float.

  Example:
    >>> from ftrl_adam import testing
    >>> testing.discounted_regret([[1.0], [-1.0]], [[0.0], [0.5]], 0.5,
    ...                          radius=1.0)  # 0.5 * 0 - 0.5 + |0.5 - 1|
    0.0
  """
  _checks.check_choice("domain", domain, DOMAINS)
  g, x = _as_2d("grads", grads), _as_2d("plays", plays)
  if g.shape != x.shape:
    raise ValueError(f"`grads` {g.shape} and `plays` {x.shape} differ.")
  T = g.shape[0]
  w = float(discount) ** (T - np.arange(1, T + 1, dtype=np.float64))[:, None]
  loss = float(np.sum(w * g * x))
  m = np.sum(w * g, axis=0)
  if u is not None:
    return loss - float(np.sum(m * np.broadcast_to(
        np.asarray(u, np.float64), m.shape)))
  return loss + float(radius or 0.0) * _comparator_norm(m, domain)


def scaled_ftrl_regret(
    grads: Any, plays: Any, b1: float, *, u: Optional[Any] = None,
    radius: Optional[float] = None, domain: str = "box",
) -> float:
  r"""FTRL regret on the scaled losses, sum_t <h_t, x_t - u>, h_t = b1^{-t} g_t.

  Identity D2 [D]: ``discounted_regret(g, x, b1, ...) == b1**T *
  scaled_ftrl_regret(g, x, b1, ...)`` for every sequence and comparator
  (with ``radius``: the best comparator, D ||H_T||).  Float64, small T only.

  Args:
    grads: g_t, shape ``(T, d)``.
    plays: x_t, shape ``(T, d)``.
    b1: the discount in (0, 1).
    u: the comparator, or None.
    radius: D for the best comparator (used when ``u`` is None).
    domain: ``"box"`` or ``"ball"``.

  Returns:
    A Python float.

  Raises:
    ValueError: if b1**-T would overflow float64.

  Example:
    >>> from ftrl_adam import testing
    >>> g, x = [[1.0], [-1.0]], [[0.0], [0.5]]
    >>> testing.scaled_ftrl_regret(g, x, 0.5, u=0.25) * 0.5 ** 2
    -0.375
    >>> testing.discounted_regret(g, x, 0.5, u=0.25)
    -0.375
  """
  _checks.check_choice("domain", domain, DOMAINS)
  g, x = _as_2d("grads", grads), _as_2d("plays", plays)
  T = g.shape[0]
  _check_scale(float(b1), T)
  h = g * float(b1) ** -np.arange(1, T + 1, dtype=np.float64)[:, None]
  loss = float(np.sum(h * x))
  big_h = np.sum(h, axis=0)
  if u is not None:
    return loss - float(np.sum(big_h * np.broadcast_to(
        np.asarray(u, np.float64), big_h.shape)))
  return loss + float(radius or 0.0) * _comparator_norm(big_h, domain)


def ftrl_plays(
    grads: Any, b1: float, b2: float, *, c: float, radius: float,
    domain: str = "box",
) -> np.ndarray:
  r"""The plays of Algorithm 2 (FTRL on scaled losses) in float64 [D].

  x_t = argmin_{x in domain} <H_{t-1}, x> + ||x||^2 / (2 eta_t) with
  H_t = sum_{s<=t} b1^{-s} g_s, S_t = sum_{s<=t} b2^{-s} g_s^2 and
  eta_t = c beta^{t-1} / sqrt(S_{t-1}), beta = b1 / sqrt(b2): the clip of
  -eta_t H_{t-1} per coordinate (box), or its projection on the l2 ball with
  S built from ||g||^2 (ball, one global rate).  0 where S_{t-1} = 0.  It
  equals Algorithm 1 (``theory_learner``) exactly: docs/theory.md section 2.

  Args:
    grads: g_t, shape ``(T, d)``.
    b1: in (0, 1).
    b2: as ``b1``.
    c: the constant of Algorithm 1.
    radius: D.
    domain: ``"box"`` or ``"ball"``.

  Returns:
    ``(T, d)`` float64 array of the plays x_1..x_T.

  Example:
    >>> from ftrl_adam import testing
    >>> x = testing.ftrl_plays([[2.0], [2.0], [0.0]], 0.5, 0.25, c=1.0,
    ...                       radius=5.0)
    >>> x[:, 0].round(4).tolist()   # -(0.5 * 2 + 2) / sqrt(0.25 * 4 + 4)
    [0.0, -1.0, -1.3416]
  """
  _checks.check_choice("domain", domain, DOMAINS)
  g = _as_2d("grads", grads)
  T, d = g.shape
  b1, b2 = float(b1), float(b2)
  _check_scale(b1, T)
  _check_scale(float(np.sqrt(b2)), T)
  beta = b1 / np.sqrt(b2)
  s_pow = np.arange(1, T + 1, dtype=np.float64)
  h = g * b1 ** -s_pow[:, None]
  sq = g ** 2 if domain == "box" else np.sum(g ** 2, axis=1, keepdims=True)
  big_h = np.concatenate([np.zeros((1, d)), np.cumsum(h, axis=0)[:-1]])
  big_s = np.concatenate([np.zeros((1, sq.shape[1])),
                          np.cumsum(sq * b2 ** -s_pow[:, None], axis=0)[:-1]])
  t_pow = beta ** (s_pow - 1.0)[:, None]
  ok = big_s > 0
  eta = np.where(ok, c * t_pow / np.sqrt(np.where(ok, big_s, 1.0)), 0.0)
  x = -eta * big_h + 0.0   # (+ 0.0: no negative zeros)
  if domain == "box":
    return np.clip(x, -radius, radius)
  norm = np.linalg.norm(x, axis=1, keepdims=True)
  return x * np.minimum(1.0, radius / np.where(norm > 0, norm, 1.0))


# ---------------------------------------------------------------------------
# Closed forms of the switch sequence D5 (float32, traceable).
# ---------------------------------------------------------------------------

_f32 = jnp.float32


def _a(x: Any) -> jax.Array:
  return jnp.asarray(x, _f32)


def switch_eta(t: Any, *, c: Any, G: Any, b1: Any, b2: Any) -> jax.Array:
  r"""Closed form of the FTRL rate eta_t on the switch sequence [D].

  With n = t - 1 gradients seen, all of magnitude G,
  V_n = G^2 (1 - b2^n) / (1 - b2) and

  .. math:: \eta_t = \frac{c\, b_1^{n} \sqrt{1-b_2}}{G \sqrt{1 - b_2^{n}}}

  (+inf at t = 1).  Holds for any sequence with |g_t| = G, in particular
  D5 and D6.

  Args:
    t: round index (int, array), t >= 1.
    c: the constant of Algorithm 1.
    G: the gradient magnitude.
    b1: the learner's decays.
    b2: as ``b1``.

  Returns:
    float32 array shaped like ``t``.

  Example:
    >>> from ftrl_adam import testing
    >>> round(float(testing.switch_eta(2, c=1.0, G=1.0, b1=0.9, b2=0.99)), 4)
    0.9
  """
  b1, b2, c, G = _a(b1), _a(b2), _a(c), _a(G)
  n = jnp.asarray(t).astype(_f32) - 1.0
  den = G * jnp.sqrt(1.0 - b2 ** n)
  num = c * b1 ** n * jnp.sqrt(1.0 - b2)
  return jnp.where(n > 0, num / jnp.where(n > 0, den, 1.0), jnp.inf)


def switch_pre_clip_play(
    t: Any, *, c: Any, b1: Any, b2: Any, L: Any,
) -> jax.Array:
  r"""Closed form of the unclipped play x~_t = -eta_t H_{t-1} on the switch sequence [D].

  With n = t - 1, for n <= L (the alternating phase g_s = G (-1)^s):

  .. math:: \tilde x_t = -\frac{c\sqrt{1-b_2}}{\sqrt{1-b_2^n}}
            \frac{(-1)^n - b_1^n}{1 + b_1},

  and for n = L + j (j rounds of -G):

  .. math:: \tilde x_t = \frac{c\sqrt{1-b_2}}{\sqrt{1-b_2^n}}\Big[
            \frac{1 - b_1^j}{1 - b_1} - b_1^j\frac{(-1)^L - b_1^L}{1+b_1}\Big].

  It is independent of G; x~_1 = 0.  The played update of Algorithm 1 is
  ``clip(x~_t, -D, D)``.

  Args:
    t: round index (int, array), t >= 1.
    c: the constant of Algorithm 1.
    b1: the learner's decays.
    b2: as ``b1``.
    L: length of the alternating phase (:func:`switch_lengths`).

  Returns:
    float32 array shaped like ``t``.

  Example:
    >>> from ftrl_adam import testing
    >>> round(float(testing.switch_pre_clip_play(2, c=1.0, b1=0.5, b2=0.75, L=4)), 4)
    1.0
  """
  b1, b2, c = _a(b1), _a(b2), _a(c)
  t = jnp.asarray(t)
  n_int = t.astype(jnp.int32) - 1
  n = n_int.astype(_f32)
  big_l = jnp.asarray(L).astype(jnp.int32)
  lf = big_l.astype(_f32)
  safe_n = jnp.where(n > 0, n, 1.0)
  scale = c * jnp.sqrt(1.0 - b2) / jnp.sqrt(1.0 - b2 ** safe_n)
  sign_n = jnp.where(n_int % 2 == 0, 1.0, -1.0)
  sign_l = jnp.where(big_l % 2 == 0, 1.0, -1.0)
  first = -scale * (sign_n - b1 ** n) / (1.0 + b1)
  j = n - lf
  b1j = b1 ** jnp.maximum(j, 0.0)
  second = scale * ((1.0 - b1j) / (1.0 - b1)
                    - b1j * (sign_l - b1 ** lf) / (1.0 + b1))
  out = jnp.where(n_int <= big_l, first, second)
  return jnp.where(n > 0, out, 0.0)
