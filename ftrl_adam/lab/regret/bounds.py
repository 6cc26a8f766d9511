"""Regret bounds, lower-bound orders and the closed forms of docs/theory.md section 3.

Everything here is evaluation code: it reads the gradient sequence (or its
online sums) and never re-implements the learner.  Tags follow docs/theory.md:

* **[D]** derived in this project (exact for Algorithm 1 as defined there) and
  checked numerically by the tests;
* **[R]** the order of a statement of the papers, with our constants;
* **[P]** stated in the papers' prose.

The upper bound D3 is *ours* [D]; Nguyen's Theorem 2.1 / Corollary 2.2 are
matched in order only [R].  The recurrence of its streams and its sum live
in the private module ``ftrl_adam._d3``, shared with the optimizer layer's
:func:`ftrl_adam.regret_monitor` (one copy of the maths); the functions here
wrap it in :class:`BoundStreams`.  All functions are jit- and vmap-friendly and
compute in float32 (like the learner): hyperparameters may be traced arrays.

References:
  Nguyen, *How to Set beta1, beta2 in Adam: An Online Learning Perspective*,
  ALT 2026, https://arxiv.org/abs/2510.03478.
  Ahn, Zhang, Kook & Dai, *Understanding Adam Optimizer via Online Learning of
  Updates: Adam is FTRL in Disguise*, ICML 2024, https://arxiv.org/abs/2402.01567.
  Orabona, *A Modern Introduction to Online Learning*, 2023,
  https://arxiv.org/abs/1912.13213 (Lemma 7.1, the FTRL lemma behind D3).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ftrl_adam import _checks
from ftrl_adam import _d3
from ftrl_adam import _numerics
from ftrl_adam import ftrl as _ftrl

DOMAINS = _ftrl.DOMAINS

_f32 = jnp.float32


def _a(x: Any) -> jax.Array:
  return jnp.asarray(x, _f32)


def _h(x: Any, xp: Any) -> Any:
  """float32 in the namespace ``xp`` (``_numerics.host_or_jnp``)."""
  return xp.asarray(x, xp.float32)


class BoundStreams(NamedTuple):
  r"""Online sums of the upper bound D3 (docs/theory.md section 3) [D].

  For the ``"box"`` domain every field has the shape of the play, ``(d,)``
  (one bound per coordinate, summed at the end); for the ``"ball"`` domain
  (learner with one global second moment) they are scalars built from
  ``||g||_2``.

  Attributes:
    v: V_t = b2 V_{t-1} + g_t**2, the un-normalised second moment
      (= v_t / (1 - b2) of the learner).
    e: E_t = b1 E_{t-1} + max(0, b1 sqrt(V_{t-1}) - sqrt(V_t)), the
      regulariser-change term; identically 0 when b1 <= sqrt(b2).
    sigma: S_t = b1 S_{t-1} + min(c g_t**2 / (2 b1 sqrt(V_{t-1})), 2 D |g_t|),
      the stability term (the min is 2 D |g_t| while V_{t-1} = 0).
  """

  v: jax.Array
  e: jax.Array
  sigma: jax.Array


def init_streams(d: int, domain: str = "box") -> BoundStreams:
  """Zero :class:`BoundStreams` for a game in ``d`` dimensions.

  Args:
    d: dimension of the play.
    domain: ``"box"`` (per-coordinate streams of shape ``(d,)``) or ``"ball"``
      (scalar streams).

  Returns:
    A :class:`BoundStreams` of float32 zeros.

  Example:
    >>> from ftrl_adam import regret
    >>> from ftrl_adam.regret import bounds
    >>> bounds.init_streams(3).v.shape, bounds.init_streams(3, "ball").v.shape
    ((3,), ())
  """
  _checks.check_choice("domain", domain, DOMAINS)
  shape = (d,) if domain == "box" else ()
  z = jnp.zeros(shape, _f32)
  return BoundStreams(v=z, e=z, sigma=z)


def update_streams(
    streams: BoundStreams, g: jax.Array, *, b1: Any, b2: Any, c: Any,
    radius: Any, domain: str = "box",
) -> BoundStreams:
  r"""One round of the online form of D3 (docs/theory.md section 3) [D].

  .. math::

     V_t = b_2 V_{t-1} + g_t^2, \quad
     E_t = b_1 E_{t-1} + \max(0, b_1\sqrt{V_{t-1}} - \sqrt{V_t}), \quad
     \Sigma_t = b_1 \Sigma_{t-1}
       + \min\Big(\frac{c g_t^2}{2 b_1 \sqrt{V_{t-1}}}, 2D|g_t|\Big).

  For ``domain="ball"``, ``g_t^2`` is ``||g_t||_2^2`` and ``|g_t|`` is
  ``||g_t||_2`` (the same FTRL-lemma argument with one global rate [D]).

  Args:
    streams: the sums after round t - 1.
    g: the gradient g_t, shape ``(d,)``.
    b1: the learner's decays (the bound's discount is b1).
    b2: as ``b1``.
    c: the constant c = lr (1 - b1) / sqrt(1 - b2) of Algorithm 1.
    radius: D, the radius of the learner's domain.
    domain: ``"box"`` or ``"ball"``.

  Returns:
    The sums after round t.

  Example:
    >>> import jax.numpy as jnp
    >>> from ftrl_adam import regret
    >>> from ftrl_adam.regret import bounds
    >>> s = bounds.update_streams(bounds.init_streams(1), jnp.array([2.0]),
    ...                           b1=0.9, b2=0.99, c=1.0, radius=1.0)
    >>> s.v.tolist(), s.sigma.tolist()  # first round: the min is 2 D |g|
    ([4.0], [4.0])
  """
  b1, b2, c, radius = _a(b1), _a(b2), _a(c), _a(radius)
  g2, g_abs = _d3.magnitudes(g, domain)
  v, e, sigma = _d3.step(streams.v, streams.e, streams.sigma, g2, g_abs,
                         b1=b1, b2=b2, c=c, radius=radius)
  return BoundStreams(v=v, e=e, sigma=sigma)


def _u_weight(u, radius, shape, domain):
  """u**2 per coordinate (box) or ||u||**2 (ball); D**2 for the worst u."""
  if u is None:
    return jnp.broadcast_to(jnp.square(radius), shape)
  u = jnp.asarray(u, _f32)
  if domain == "box":
    return jnp.broadcast_to(jnp.square(u), shape)
  return jnp.sum(jnp.square(u))


def d3_bound(
    streams: BoundStreams, *, c: Any, radius: Any, u: Optional[Any] = None,
    domain: str = "box",
) -> jax.Array:
  r"""Upper bound D3 on the b1-discounted regret of Algorithm 1 [D].

  For all b1, b2 in (0, 1) (both of Nguyen's regimes), every gradient
  sequence and every comparator |u| <= D (per coordinate; summed over the
  coordinates for the box):

  .. math::

     R_T(u) \le \frac{u^2}{2c}\sqrt{V_T} + \frac{D^2}{2c} E_T + \Sigma_T,

  with the streams of :func:`update_streams`.  Without ``u`` this is the bound
  for the worst comparator in the domain, ``D^2/(2c) (sqrt(V_T) + E_T) +
  Sigma_T``.  Proof: the FTRL lemma (Orabona 2023, Lemma 7.1) on the scaled
  losses h_t = b1**-t g_t with psi_t = x**2 / (2 eta_t), times b1**T
  (identity D2).  The constants are this project's [D]; Nguyen's Theorem 2.1
  is the same statement in order [R].

  Args:
    streams: :class:`BoundStreams` after round T.
    c: the constant of Algorithm 1, c = lr (1 - b1) / sqrt(1 - b2) (theory: D).
    radius: D.
    u: a comparator with |u| <= D (shape ``(d,)`` or scalar), or None for the
      worst one.
    domain: ``"box"`` or ``"ball"`` (must match the streams).

  Returns:
    A float32 scalar.

  Example:
    >>> import jax.numpy as jnp
    >>> from ftrl_adam import regret
    >>> from ftrl_adam.regret import bounds
    >>> s = bounds.init_streams(1)
    >>> for g in [1.0, -1.0, 1.0]:
    ...   s = bounds.update_streams(s, jnp.array([g]), b1=0.5, b2=0.25, c=1.0,
    ...                             radius=1.0)
    >>> round(float(regret.d3_bound(s, c=1.0, radius=1.0)), 4)
    2.4672
  """
  _checks.check_choice("domain", domain, DOMAINS)
  c, radius = _a(c), _a(radius)
  w = _u_weight(u, radius, jnp.shape(streams.v), domain)
  return jnp.sum(_d3.terms(streams.v, streams.e, streams.sigma, w, c=c,
                           radius=radius))


def d4_bound(
    v: jax.Array, *, b1: Any, b2: Any, c: Any, radius: Any,
    u: Optional[Any] = None, domain: str = "box",
) -> jax.Array:
  r"""Corollary D4 of D3, valid when b1 <= sqrt(b2) [D].

  .. math::

     R_T(u) \le \Big(\frac{u^2}{2c} + 2\sqrt2\,\max\big(\frac{c}{2\beta}, 2D\big)
     \Big) \sqrt{V_T}, \qquad \beta = b_1/\sqrt{b_2},

  per coordinate (summed for the box; ``||u||^2`` and the global V_T for the
  ball).  With c = D and |g| <= G it is O(DG / sqrt(1 - b2)) per coordinate:
  Nguyen's Corollary 2.2 in order [R]; the constant 2 sqrt(2) is ours [D].
  The value is returned for any (b1, b2); it is only a bound when
  b1 <= sqrt(b2).

  Args:
    v: V_T (``BoundStreams.v``).
    b1: the learner's decays.
    b2: as ``b1``.
    c: the constant of Algorithm 1.
    radius: D.
    u: the comparator, or None for the worst one (|u| = D).
    domain: ``"box"`` or ``"ball"``.

  Returns:
    A float32 scalar.

  Example:
    >>> import jax.numpy as jnp
    >>> from ftrl_adam import regret
    >>> from ftrl_adam.regret import bounds
    >>> b = regret.d4_bound(jnp.array([4.0]), b1=0.5, b2=0.25, c=1.0, radius=1.0)
    >>> round(float(b), 4)  # (1/2 + 2 sqrt(2) * 2) * 2
    12.3137
  """
  _checks.check_choice("domain", domain, DOMAINS)
  b1, b2, c, radius = _a(b1), _a(b2), _a(c), _a(radius)
  v = jnp.asarray(v, _f32)
  beta = b1 / jnp.sqrt(b2)
  k = jnp.maximum(_numerics.safe_div(c, 2.0 * beta) + jnp.where(beta > 0, 0.0, jnp.inf),
                  2.0 * radius)
  w = _u_weight(u, radius, jnp.shape(v), domain)
  return jnp.sum((w / (2.0 * c) + 2.0 * jnp.sqrt(2.0) * k) * jnp.sqrt(v))


def minimax_order(radius: Any, G: Any, b1: Any) -> jax.Array:
  r"""Minimax order ``D G / sqrt(1 - b1**2)`` of b1-discounted OLO [R].

  The lower bound Omega(DG / sqrt(1 - b1^2)) per coordinate of b1-discounted
  online linear optimisation on [-D, D] (random signs +-G), and the value of
  D4 at b2 = b1**2 (Nguyen, Section 2 [R]).  Multiply by d for the box in d
  dimensions.

  Args:
    radius: D.
    G: the bound on |g_t|.
    b1: the discount.

  Returns:
    A float32 array (broadcast of the inputs): NumPy when every input is
    host data (NumPy or Python numbers; the same bits), else a JAX array.

  Example:
    >>> from ftrl_adam import regret
    >>> from ftrl_adam.regret import bounds
    >>> round(float(regret.minimax_order(1.0, 1.0, 0.6)), 4)
    1.25
  """
  xp = _numerics.host_or_jnp(radius, G, b1)
  radius, G, b1 = (_h(x, xp) for x in (radius, G, b1))
  return radius * G / xp.sqrt(1.0 - xp.square(b1))


def switch_order(radius: Any, G: Any, b1: Any, b2: Any) -> jax.Array:
  r"""Order ``D G min(1/sqrt(1 - b2), 1/(1 - b1))`` reached by the switch sequence.

  The regret of Algorithm 1 (c = D, comparator u = +D) on the sequence of
  :func:`ftrl_adam.regret.switch`: Nguyen's Theorem 2.5 type lower bound,
  the order is the paper's [R], the construction and the measured constant
  (ratio in [0.37, 1.5]) are ours [D].

  Args:
    radius: D.
    G: the gradient magnitude.
    b1: the learner's decays.
    b2: as ``b1``.

  Returns:
    A float32 array (NumPy for host inputs, see :func:`minimax_order`).

  Example:
    >>> from ftrl_adam import regret
    >>> from ftrl_adam.regret import bounds
    >>> round(float(regret.switch_order(1.0, 1.0, 0.9, 0.99)), 4)
    10.0
  """
  xp = _numerics.host_or_jnp(radius, G, b1, b2)
  radius, G, b1, b2 = (_h(x, xp) for x in (radius, G, b1, b2))
  return radius * G * xp.minimum(1.0 / xp.sqrt(1.0 - b2), 1.0 / (1.0 - b1))


def alternating_order(radius: Any, G: Any, b1: Any, b2: Any) -> jax.Array:
  r"""Order ``D G sqrt(1 - b2) / (1 - b1**2)`` of the alternating sequence D6 [D].

  The regret of Algorithm 1 (c = D) on g_t = G (-1)**t; it exceeds the minimax
  order exactly when b2 < b1**2 (docs/theory.md D6, measured ratio 1.01-2.0).

  Args:
    radius: D.
    G: the gradient magnitude.
    b1: the learner's decays.
    b2: as ``b1``.

  Returns:
    A float32 array (NumPy for host inputs, see :func:`minimax_order`).

  Example:
    >>> from ftrl_adam import regret
    >>> from ftrl_adam.regret import bounds
    >>> round(float(regret.alternating_order(1.0, 1.0, 0.6, 0.36)), 4)
    1.25
  """
  xp = _numerics.host_or_jnp(radius, G, b1, b2)
  radius, G, b1, b2 = (_h(x, xp) for x in (radius, G, b1, b2))
  return radius * G * xp.sqrt(1.0 - b2) / (1.0 - xp.square(b1))


def oblivious_order(radius: Any, G: Any, b1: Any, b2: Any) -> jax.Array:
  r"""Worst case over oblivious sequences, ``max(switch, alternating)`` orders.

  sup over oblivious sequences of the regret of Algorithm 1 (c = D) is
  DG max{min(1/sqrt(1-b2), 1/(1-b1)), sqrt(1-b2)/(1-b1^2)} up to constants
  (docs/theory.md D5 + D6 [D]); both branches meet the minimax order at b2 = b1**2,
  the sense in which b1 = sqrt(b2) is optimal against an oblivious adversary
  (Nguyen [P]).

  Args:
    radius: D.
    G: the gradient magnitude.
    b1: the learner's decays.
    b2: as ``b1``.

  Returns:
    A float32 array (NumPy for host inputs, see :func:`minimax_order`).

  Example:
    >>> from ftrl_adam import regret
    >>> from ftrl_adam.regret import bounds
    >>> round(float(regret.oblivious_order(1.0, 1.0, 0.6, 0.36)), 4)  # = minimax
    1.25
  """
  xp = _numerics.host_or_jnp(radius, G, b1, b2)
  return xp.maximum(switch_order(radius, G, b1, b2),
                    alternating_order(radius, G, b1, b2))


def switch_lengths(b1: Any, b2: Any, kappa: Any = 1.0) -> tuple[jax.Array, jax.Array]:
  r"""Phase lengths ``(L, k)`` of the switch sequence D5 [D].

  L = ceil(8 / (1 - b2)) alternating rounds, then
  k = ceil(kappa min(1/sqrt(1 - b2), 1/(1 - b1))) rounds of -G.  Computed
  from the float32 b1, b2 that the learner uses (so b2 = 0.999 gives
  L = 8001, since float32(1 - 0.999) < 0.001); traceable.

  Args:
    b1: the learner's decays, in [0, 1).
    b2: as ``b1``.
    kappa: length factor of the second phase, in [1/2, 2] in docs/theory.md.

  Returns:
    ``(L, k)`` as int32 arrays (NumPy for host inputs, see
    :func:`minimax_order`).

  Example:
    >>> from ftrl_adam import regret
    >>> from ftrl_adam.regret import bounds
    >>> [int(x) for x in regret.switch_lengths(0.9, 0.75)]
    [32, 2]
  """
  xp = _numerics.host_or_jnp(b1, b2, kappa)
  b1, b2, kappa = (_h(x, xp) for x in (b1, b2, kappa))
  big_l = xp.ceil(8.0 / (1.0 - b2))
  k = xp.ceil(kappa * xp.minimum(1.0 / xp.sqrt(1.0 - b2), 1.0 / (1.0 - b1)))
  return big_l.astype(xp.int32), k.astype(xp.int32)
