"""FTRL-update Adam: Adam written as follow-the-regularised-leader on updates.

The learner of Nguyen (ALT 2026, arXiv:2510.03478), Algorithm 1, and of Ahn,
Zhang, Kook & Dai (ICML 2024, arXiv:2402.01567): after seeing the gradient g_n
it updates the (un-corrected) moments

    m_n = b1 m_{n-1} + (1 - b1) g_n,      v_n = b2 v_{n-1} + (1 - b2) |g_n|**2,

and plays the update

    Delta_{n+1} = clip_D( -lr_n * k_n * m_n / (sqrt(v_n + r_n) + e_n) ).

``k_n``, ``e_n`` and ``r_n`` implement the conventions of docs/theory.md section 2
(derived here [D]; verified against optax):

| option | k_n | e_n | r_n |
|---|---|---|---|
| bias-corrected (default) | ``sqrt(1 - b2**n) / (1 - b1**n)`` | ``eps * sqrt(1 - b2**n)`` | ``eps_root * (1 - b2**n)`` |
| uncorrected, Adam eps | ``1`` | ``eps`` | ``eps_root`` |
| FTRL eps | as chosen by ``bias_correction`` | ``eps * sqrt(1 - b2) * b2**(n / 2)`` | ``eps_root * (1 - b2) * b2**n`` |

The first row is ``optax.adam(lr, b1, b2, eps, eps_root)`` exactly: optax's
``m_hat / (sqrt(v_hat + eps_root) + eps)`` with ``m_hat = m / (1 - b1**n)`` and
``v_hat = v / (1 - b2**n)``, multiplied through by ``sqrt(1 - b2**n)`` [D].
The FTRL-eps row is a constant ``eps`` added to sqrt(S_n), and ``eps_root``
added to S_n, in the scaled space of the FTRL form
(``S_n = sum_s b2**-s |g_s|**2 = v_n / ((1 - b2) b2**n)``), i.e. the
exponentially decaying eps of Nguyen's section 3.  Nothing here depends on
b1 <= sqrt(b2): both regimes of Nguyen (beta = b1 / sqrt(b2) <= 1 or >= 1) are
the same code.

``lr_n`` is the learning rate (or schedule) at ``count = n - 1``, optax's
convention.  ``nesterov=True`` replaces ``k_n m_n`` by optax's Nesterov
numerator (see :func:`scale_by_ftrl_adam`); it is not part of the FTRL theory.

Complex parameters follow optax: the second moment uses |g|**2 (per
coordinate, or summed over the tree with ``second_moment="global"``), so it is
real, and ``nu`` is stored in the real dtype.

Non-finite gradients are loud, as in ``optax.adam``: a NaN or inf gradient
makes the update of every coordinate it reaches NaN (all coordinates with
``second_moment="global"`` or the per-coordinate ball, whose solution couples
them), and the moments stay poisoned.  Only an exactly zero denominator (a
coordinate that never saw a non-zero gradient, with eps = 0) gives 0/0 := 0.
``optax.apply_if_finite(ftrl_adam(...), k)`` skips such steps.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from ftrl_adam import _checks
from ftrl_adam import _numerics
from ftrl_adam import clipping

_is_none = _numerics.is_none
_f32 = jnp.float32

EPS_MODES = ("adam", "ftrl")
SECOND_MOMENTS = ("per_coordinate", "global")
DOMAINS = ("box", "ball")

# Safeguarded Newton iterations of the exact l2-ball solver.  Newton on the
# secular equation converges quadratically; 32 steps reach float32 rounding
# even when the per-coordinate rates span ten orders of magnitude (tested).
BALL_SOLVER_ITERATIONS = 32

# The attribute of the returned transform's ``update`` holding its options.
_OPTIONS = "ftrl_adam_options"


class ScaleByFtrlAdamState(NamedTuple):
  """State of :func:`scale_by_ftrl_adam` and :func:`ftrl_adam`.

  The only ``count`` in the state of :func:`ftrl_adam`, so
  ``optax.tree.get(state, "count")`` finds it (the learning rate or schedule
  is applied by the same transform).

  Attributes:
    count: number of gradients seen, int32, saturating at the int32 maximum.
    mu: first moment m_n (no bias correction), a tree like the params.
    nu: second moment v_n (no bias correction), real: a tree like the params
      (float32 for complex64 params), or a float32 scalar when
      ``second_moment="global"``.
  """

  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates


def _state_dtype(dtype: Optional[Any], leaf_dtype: Any, real: bool = False) -> Any:
  """Requested dtype, else the leaf dtype promoted to at least float32.

  ``real=True`` (the second moment) takes the real dtype of a complex one.
  """
  if dtype is not None:
    return jnp.dtype(dtype)
  promoted = jnp.promote_types(leaf_dtype, jnp.float32)
  return _numerics.real_dtype(promoted) if real else promoted


def _zeros_tree(params: Any, dtype: Optional[Any], real: bool = False) -> Any:
  return jax.tree.map(
      lambda p: None if p is None else _numerics.zeros_like(
          p, _state_dtype(dtype, _numerics.leaf_dtype(p), real)),
      params, is_leaf=_is_none)


def _step_constants(b1, b2, eps, eps_root, count, bias_correction, eps_mode,
                    nesterov):
  """(k_n, c_n, e_n, r_n) of the module docstring in float32, n = count.

  The direction is ``(k_n m_n + c_n g_n) / (sqrt(v_n + r_n) + e_n)``; c_n is
  None without Nesterov.  With Nesterov (optax's ``scale_by_adam``):
  ``m_hat = b1 m_n / (1 - b1**(n+1)) + (1 - b1) g_n / (1 - b1**n)``, so
  ``k_n = s_n b1 / (1 - b1**(n+1))`` and ``c_n = s_n (1 - b1) / (1 - b1**n)``
  with ``s_n = sqrt(1 - b2**n)`` (bias-corrected) [D]; uncorrected, b1 and
  1 - b1.
  """
  n = count.astype(_f32)
  if bias_correction:
    one_minus_b2n = 1.0 - b2 ** count
    s = jnp.sqrt(one_minus_b2n)
    if nesterov:
      k = s * b1 / (1.0 - b1 ** optax.safe_increment(count))
      c = s * (1.0 - b1) / (1.0 - b1 ** count)
    else:
      k = s / (1.0 - b1 ** count)
      c = None
  else:
    one_minus_b2n = None
    k = b1 if nesterov else jnp.ones([], _f32)
    c = (1.0 - b1) if nesterov else None
  if eps_mode == "adam":
    e = eps * jnp.sqrt(one_minus_b2n) if bias_correction else eps
    r = eps_root * one_minus_b2n if bias_correction else eps_root
  else:  # "ftrl": eps' sqrt(1 - b2) b2^(n/2), eps_root' (1 - b2) b2^n
    e = eps * jnp.sqrt(1.0 - b2) * b2 ** (n / 2.0)
    r = eps_root * (1.0 - b2) * b2 ** n
  return k, c, e, r


def _ball_sums(a2, hs, lam):
  """sum a_i / (h_i + lam)**2 and sum a_i / (h_i + lam)**3 (0 where h_i + lam = 0)."""
  s2 = jnp.zeros([], jnp.float32)
  s3 = jnp.zeros([], jnp.float32)
  for a, b in zip(a2, hs, strict=True):
    d = b + lam
    inv = jnp.where(d > 0, 1.0 / jnp.where(d > 0, d, 1.0), 0.0)
    s2 = s2 + _numerics.fixed_order_sum(a * inv * inv)
    s3 = s3 + _numerics.fixed_order_sum(a * inv * inv * inv)
  return s2, s3


def _ball_newton_step(_, carry):
  """One safeguarded Newton step of :func:`_weighted_ball_lambda`.

  A module-level function of its carry (the problem rides along unchanged):
  the loop is traced once per shape, so an un-jitted step reuses its compiled
  loop instead of compiling a new one on every call.
  """
  (lam, lo, hi), (a2, hs, safe_r) = carry
  s2, s3 = _ball_sums(a2, hs, lam)
  norm = jnp.sqrt(s2)
  too_long = norm > safe_r
  lo = jnp.where(too_long, lam, lo)
  hi = jnp.where(too_long, hi, lam)
  # phi = 1/norm - 1/r, phi' = s3 / norm**3.
  safe_norm = jnp.where(norm > 0, norm, 1.0)
  step = (1.0 / safe_norm - 1.0 / safe_r) * safe_norm ** 3 / jnp.where(
      s3 > 0, s3, 1.0)
  newton = lam - step
  inside = (newton > lo) & (newton < hi) & jnp.isfinite(newton)
  lam = jnp.where(inside, newton, 0.5 * (lo + hi))
  return (lam, lo, hi), (a2, hs, safe_r)


def _weighted_ball_lambda(xt, h, radius, iterations):
  """Multiplier lam >= 0 of the FTRL argmin over the l2 ball, per-coordinate rates.

  The FTRL objective <H, x> + sum_i x_i**2 / (2 eta_i) over ||x||_2 <= D has the
  unconstrained minimiser xt_i = -eta_i H_i and the KKT solution
  x_i(lam) = xt_i * h_i / (h_i + lam) with curvatures h_i proportional to
  1 / eta_i [D].  We solve ||x(lam)|| = D by Newton's method on the secular
  equation phi(lam) = 1/||x(lam)|| - 1/D (Moré & Sorensen 1983), kept inside a
  bisection bracket [0, max(h) ||xt|| / D]; a fixed number of iterations keeps
  it jit-able.  Returns 0 when xt is already inside the ball, and NaN when xt
  or h is not finite (the constraint couples every coordinate, so a poisoned
  one reaches them all).  Complex coordinates count as two real ones
  (|xt_i|**2 in the norm: the ball of C^n = R^2n).
  """
  leaves = list(zip(jax.tree.leaves(xt), jax.tree.leaves(h), strict=True))
  f32 = jnp.float32
  a2 = [_numerics.abs_sq(a) * jnp.square(b.astype(f32)) for a, b in leaves]
  hs = [b.astype(f32) for _, b in leaves]
  norm_xt = jnp.sqrt(
      _numerics.tree_fixed_order_sum([a for a, _ in leaves], _numerics.abs_sq))
  h_max = jnp.max(jnp.stack([jnp.max(b) for b in hs]))
  outside = norm_xt > radius
  safe_r = jnp.where(radius > 0, radius, 1.0)
  hi0 = h_max * norm_xt / safe_r
  lam0 = jnp.zeros([], f32)
  (lam, _, hi), _ = jax.lax.fori_loop(
      0, iterations, _ball_newton_step, ((lam0, lam0, hi0), (a2, hs, safe_r)))
  # The final answer must be feasible: take the side of the bracket that is.
  s2, _ = _ball_sums(a2, hs, lam)
  lam = jnp.where(jnp.sqrt(s2) > safe_r, hi, lam)
  lam = jnp.where(outside & (radius > 0), lam, 0.0)
  finite = jnp.isfinite(norm_xt) & jnp.isfinite(h_max)
  return jnp.where(finite, lam, jnp.nan)


def _direction(mu, nu, updates, k, c, e, r, is_global):
  """(k m + c g) / (sqrt(v + r) + e) per leaf, 0/0 := 0; and the denominator."""

  def numerator(m, g):
    if m is None:
      return None
    num = k * m
    if c is not None:
      g = jnp.asarray(g)
      num = num + c * g.astype(jnp.promote_types(g.dtype, _f32))
    return num

  num = jax.tree.map(numerator, mu, updates, is_leaf=_is_none)
  if is_global:
    den = jnp.sqrt(nu.astype(_f32) + r) + e
    direction = jax.tree.map(
        lambda n: None if n is None else _numerics.div_or_zero(n, den),
        num, is_leaf=_is_none)
  else:
    den = jax.tree.map(
        lambda v: None if v is None else jnp.sqrt(v + r) + e, nu,
        is_leaf=_is_none)
    direction = jax.tree.map(
        lambda n, d: None if n is None else _numerics.div_or_zero(n, d),
        num, den, is_leaf=_is_none)
  return direction, den


def _ball_argmin(direction, den, lr, radius):
  """The direction of the exact per-coordinate-rate FTRL argmin over the ball:
  x_i = x~_i h_i / (h_i + lam) with x~ = lr * direction (docs/theory.md 2 [D])."""
  xt = jax.tree.map(lambda d: lr * d, direction)
  lam = _weighted_ball_lambda(xt, den, radius, BALL_SOLVER_ITERATIONS)
  return jax.tree.map(lambda d, h: d * _numerics.div_or_zero(h, h + lam),
                      direction, den)


def _scale_by_ftrl_adam(
    b1, b2, eps, eps_root, *, bias_correction, eps_mode, second_moment,
    mu_dtype, nu_dtype, nesterov, schedule=None, ball_radius=None,
) -> optax.GradientTransformationExtraArgs:
  """Shared implementation.

  Without ``schedule`` it returns the direction (:func:`scale_by_ftrl_adam`).
  With ``schedule`` (``count -> lr``, :func:`ftrl_adam`) it returns
  ``-lr_n`` times the direction, lr_n taken at the count before the increment,
  so the chain holds a single ``count``.  ``ball_radius`` adds the exact
  per-coordinate-rate argmin over the l2 ball (needs ``schedule``).
  """
  is_global = second_moment == "global"

  def init_fn(params):
    mu = _zeros_tree(params, mu_dtype)
    if is_global:
      nu = _numerics.scalar_like(
          params, 0.0, _state_dtype(nu_dtype, jnp.float32, real=True))
    else:
      nu = _zeros_tree(params, nu_dtype, real=True)
    count = _numerics.scalar_like(params, 0, jnp.int32)
    return ScaleByFtrlAdamState(count=count, mu=mu, nu=nu)

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    if is_global:
      sq = _numerics.tree_fixed_order_sum(updates, _numerics.abs_sq)
      nu = b2 * state.nu + (1.0 - b2) * sq
    else:
      nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    count = optax.safe_increment(state.count)
    k, c, e, r = _step_constants(b1, b2, eps, eps_root, count,
                                 bias_correction, eps_mode, nesterov)
    direction, den = _direction(mu, nu, updates, k, c, e, r, is_global)
    if schedule is None:
      scale = None
    else:
      lr = schedule(state.count)
      scale = -lr
      if ball_radius is not None:
        direction = _ball_argmin(direction, den, lr, ball_radius)

    def out(d, g):
      if g is None:
        return None
      if scale is not None:
        d = scale * d
      return d.astype(jnp.result_type(g))

    updates = jax.tree.map(out, direction, updates, is_leaf=_is_none)
    mu = optax.tree.cast_like(mu, state.mu)
    nu = optax.tree.cast_like(nu, state.nu)
    return updates, ScaleByFtrlAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _canonical_hparams(b1, b2, eps, eps_root, bias_correction, eps_mode,
                       second_moment, nesterov, nu_dtype, mu_dtype=None):
  """Checks every option and returns (b1, b2, eps, eps_root) as float32."""
  b1 = _checks.as_f32("b1", b1, low=0.0, high=1.0)
  b2 = _checks.as_f32("b2", b2, low=0.0, high=1.0)
  eps = _checks.as_f32("eps", eps, low=0.0)
  eps_root = _checks.as_f32("eps_root", eps_root, low=0.0)
  _checks.check_choice("eps_mode", eps_mode, EPS_MODES)
  _checks.check_choice("second_moment", second_moment, SECOND_MOMENTS)
  for name, flag in (("bias_correction", bias_correction),
                     ("nesterov", nesterov)):
    if not isinstance(flag, bool):
      raise ValueError(f"`{name}` must be True or False, got {flag!r}.")
  if nu_dtype is not None and not jnp.issubdtype(jnp.dtype(nu_dtype),
                                                 jnp.floating):
    raise ValueError(
        "`nu_dtype` must be a real floating dtype (the second moment |g|**2 "
        f"is real, also for complex params) or None, got {nu_dtype!r}.")
  if mu_dtype is not None and not jnp.issubdtype(jnp.dtype(mu_dtype),
                                                 jnp.inexact):
    raise ValueError(
        "`mu_dtype` must be a floating (or complex) dtype or None, got "
        f"{mu_dtype!r}: an integer first moment would round every gradient "
        "away.")
  return b1, b2, eps, eps_root


def scale_by_ftrl_adam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    *,
    bias_correction: bool = True,
    eps_mode: str = "adam",
    second_moment: str = "per_coordinate",
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""Rescales gradients into the FTRL-Adam direction ``k_n m_n / (sqrt(v_n + r_n) + e_n)``.

  The direction of Algorithm 1 of Nguyen (2026), before the learning rate and
  the clip: chain it with ``optax.scale_by_learning_rate`` (or use
  :func:`ftrl_adam`).  With the defaults it equals ``optax.scale_by_adam`` up to
  float32 rounding.  See the module docstring for ``k_n``, ``e_n`` and ``r_n``
  (docs/theory.md section 2, [D]).

  Independent ``b1`` and ``b2`` cover both of Nguyen's regimes,
  ``b1 <= sqrt(b2)`` (the FTRL learning rate is non-increasing) and
  ``b1 >= sqrt(b2)`` (it can grow); docs/theory.md section 2.

  Args:
    b1: first-moment decay, in [0, 1).
    b2: second-moment decay, in [0, 1).
    eps: eps >= 0 (see ``eps_mode``).  With ``eps = eps_root = 0`` a coordinate
      that never saw a non-zero gradient gets a zero update, not NaN.
    eps_root: eps_root >= 0 added to the second moment inside the square root,
      with optax's meaning (``sqrt(v_hat + eps_root)``, bias-corrected); with
      ``eps_mode="ftrl"`` it is added to S_n in the scaled FTRL space.
    bias_correction: divide by the bias corrections of Adam (the default), or
      play the uncorrected Algorithm 1.
    eps_mode: ``"adam"`` (eps added to sqrt(v), as Adam) or ``"ftrl"`` (eps added
      to sqrt(S_n) in the scaled FTRL space; decays like b2**(n/2)).
    second_moment: ``"per_coordinate"`` (Adam) or ``"global"``: one scalar v_n
      built from ``||g_n||_2**2 = sum |g_i|**2`` over the whole tree, as in Ahn &
      Cutkosky (2024).
    mu_dtype: dtype of ``mu``; default: the param dtype promoted to float32.
    nu_dtype: real dtype of ``nu``; default: the param dtype promoted to
      float32, real part (float32 for complex64).  bfloat16 rounds b2 = 0.999
      to 1.0: keep it at least float32.
    nesterov: optax's Nesterov variant of Adam: the numerator is
      ``b1 m_hat_{n+1} + (1 - b1) g_n / (1 - b1**n)`` with
      ``m_hat_{n+1} = m_n / (1 - b1**(n+1))`` (uncorrected: ``b1 m_n +
      (1 - b1) g_n``).  Not covered by the FTRL theory.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose state is a
    :class:`ScaleByFtrlAdamState`.

  Raises:
    ValueError: an option outside its allowed values (named in the message).

  Example:
    >>> import jax.numpy as jnp, optax, ftrl_adam as fa
    >>> tx = fa.scale_by_ftrl_adam(b1=0.9, b2=0.81)
    >>> u, state = tx.update({"w": jnp.array([2.0, 0.0])}, tx.init({"w": jnp.zeros(2)}))
    >>> [round(x, 6) for x in u["w"].tolist()]  # first step: sign(g), bias-corrected
    [1.0, 0.0]

  References:
    Nguyen, *How to Set beta1, beta2 in Adam: An Online Learning Perspective*,
    ALT 2026, https://arxiv.org/abs/2510.03478.
    Ahn, Zhang, Kook & Dai, *Understanding Adam Optimizer via Online Learning of
    Updates: Adam is FTRL in Disguise*, ICML 2024, https://arxiv.org/abs/2402.01567.
    Dozat, *Incorporating Nesterov Momentum into Adam*, ICLR 2016 workshop
    (``nesterov=True``, as implemented by optax).
  """
  b1, b2, eps, eps_root = _canonical_hparams(
      b1, b2, eps, eps_root, bias_correction, eps_mode, second_moment,
      nesterov, nu_dtype, mu_dtype)
  return _scale_by_ftrl_adam(
      b1, b2, eps, eps_root, bias_correction=bias_correction,
      eps_mode=eps_mode, second_moment=second_moment, mu_dtype=mu_dtype,
      nu_dtype=nu_dtype, nesterov=nesterov)


def ftrl_adam(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    *,
    radius: Any = None,
    domain: str = "box",
    second_moment: str = "per_coordinate",
    bias_correction: bool = True,
    eps_mode: str = "adam",
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""FTRL-update Adam with an optional clip of the update to a box or a ball.

  The update is

      Delta_{n+1} = argmin over the domain of the FTRL objective
                  = clip_D( -lr_n k_n m_n / (sqrt(v_n + r_n) + e_n) )   (box, or global v)

  with ``lr_n`` the learning rate (or the schedule at count n - 1, as optax).
  Domains (docs/theory.md section 2, [D]):

  * ``radius=None``: no clip; with the default options this is ``optax.adam``
    (also with ``eps_root`` and ``nesterov``, which mean what they mean there).
  * ``domain="box"``: per-coordinate clip to ``[-radius, radius]``; exact FTRL
    argmin because the objective is separable.  A complex coordinate has its
    real and imaginary parts clipped (the box of C^n = R^2n).
  * ``domain="ball"`` with ``second_moment="global"``: one scalar rate, and the
    argmin is the Euclidean projection on the ball (Ahn & Cutkosky 2024); for
    complex params the ball of C^n = R^2n, ``sum |x_i|**2 <= D**2``.
  * ``domain="ball"`` with per-coordinate rates: the exact argmin
    ``x_i = xt_i h_i / (h_i + lam)`` with ``h_i = sqrt(v_i + r_n) + e_n``, the
    multiplier found by a fixed-iteration safeguarded Newton solve (jit-able,
    float32 accurate).  It is *not* the Euclidean projection of the Adam step.

  A NaN or inf gradient makes the update NaN wherever it reaches (that
  coordinate; every coordinate for the global second moment or the ball), as
  ``optax.adam``; wrap the optimizer in ``optax.apply_if_finite`` to skip such
  steps.

  Args:
    learning_rate: a float >= 0 or an optax schedule ``count -> lr``.
    b1: first-moment decay, in [0, 1).
    b2: second-moment decay, in [0, 1).
    eps: eps >= 0; where it enters is set by ``eps_mode``.
    eps_root: eps_root >= 0 inside the square root, optax's meaning; see
      :func:`scale_by_ftrl_adam`.
    radius: D >= 0 of the domain, or None for no clip.  Theory's choice
      (Nguyen, [R]): ``learning_rate = D sqrt(1 - b2) / (1 - b1)`` (c = D).
    domain: ``"box"`` or ``"ball"``.
    second_moment: ``"per_coordinate"`` (Adam) or ``"global"`` (one scalar
      second moment); see :func:`scale_by_ftrl_adam`.
    bias_correction: Adam's bias corrections (default) or the uncorrected
      Algorithm 1; see :func:`scale_by_ftrl_adam`.
    eps_mode: ``"adam"`` or ``"ftrl"``; see :func:`scale_by_ftrl_adam`.
    mu_dtype: dtype of the first moment; see :func:`scale_by_ftrl_adam`.
    nu_dtype: real dtype of the second moment; see :func:`scale_by_ftrl_adam`.
    nesterov: optax's Nesterov variant; see :func:`scale_by_ftrl_adam`.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; its state is the 2-tuple
    ``(ScaleByFtrlAdamState, clip state)`` whatever the type of
    ``learning_rate`` (the clip state is ``optax.EmptyState()`` without a
    radius), with a single ``count``.  Its options are readable with
    :func:`options_of` (``regret_monitor`` takes them from it).

  Raises:
    ValueError: an option outside its allowed values (named in the message).

  Example:
    >>> import jax, jax.numpy as jnp, optax, ftrl_adam as fa
    >>> params = {"w": jnp.array([1.0, -2.0])}
    >>> tx = fa.ftrl_adam(0.1, b1=0.9, b2=0.99, radius=0.05)
    >>> state = tx.init(params)
    >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
    >>> updates, state = tx.update(grads, state, params)
    >>> optax.apply_updates(params, updates)["w"].tolist()
    [0.949999988079071, -1.9500000476837158]
    >>> int(optax.tree.get(state, "count"))
    1

  References:
    Nguyen, ALT 2026, https://arxiv.org/abs/2510.03478 (Algorithm 1, box domain).
    Ahn & Cutkosky, NeurIPS 2024, https://arxiv.org/abs/2405.18199 (ball domain).
  """
  b1, b2, eps, eps_root = _canonical_hparams(
      b1, b2, eps, eps_root, bias_correction, eps_mode, second_moment,
      nesterov, nu_dtype, mu_dtype)
  _checks.check_choice("domain", domain, DOMAINS)
  schedule = _checks.canonical_schedule("learning_rate", learning_rate)
  common = dict(bias_correction=bias_correction, eps_mode=eps_mode,
                second_moment=second_moment, mu_dtype=mu_dtype,
                nu_dtype=nu_dtype, nesterov=nesterov, schedule=schedule)
  if radius is None:
    scaler = _scale_by_ftrl_adam(b1, b2, eps, eps_root, **common)
    clip = optax.identity()
  else:
    radius = _checks.as_f32("radius", radius, low=0.0)
    weighted_ball = domain == "ball" and second_moment == "per_coordinate"
    scaler = _scale_by_ftrl_adam(
        b1, b2, eps, eps_root, **common,
        ball_radius=radius if weighted_ball else None)
    # For the weighted ball the scaler already solved the exact argmin; the
    # projection that follows only guards ||Delta|| <= D against round-off.
    clip = (clipping.clip_box if domain == "box" else clipping.clip_ball)(radius)
  tx = optax.chain(scaler, clip)
  setattr(tx.update, _OPTIONS, FtrlAdamOptions(
      learning_rate=learning_rate if callable(learning_rate) else schedule(0),
      b1=b1, b2=b2, eps=eps, radius=radius, domain=domain,
      second_moment=second_moment, bias_correction=bias_correction,
      eps_mode=eps_mode))
  return tx


class FtrlAdamOptions(NamedTuple):
  """The options a transform returned by :func:`ftrl_adam` was built with.

  Read by :func:`options_of` (and by :func:`ftrl_adam.regret_monitor`, which
  takes the radius, b1, b2 and the learning rate from the ``ftrl_adam`` it
  wraps).

  Attributes:
    learning_rate: the learning rate as float32, or the schedule given.
    b1: float32.
    b2: float32.
    eps: float32.
    radius: float32, or None without a clip.
    domain: ``"box"`` or ``"ball"`` (meaningful with a radius).
    second_moment: ``"per_coordinate"`` or ``"global"``.
    bias_correction: True or False.
    eps_mode: ``"adam"`` or ``"ftrl"``.
  """

  learning_rate: Any
  b1: Any
  b2: Any
  eps: Any
  radius: Any
  domain: str
  second_moment: str
  bias_correction: bool
  eps_mode: str


def options_of(tx: Any) -> Optional[FtrlAdamOptions]:
  """The options of a transform returned by :func:`ftrl_adam`; None for any other.

  Only the transform :func:`ftrl_adam` returned carries them (on its
  ``update`` function): a chain or wrapper around it does not.

  Args:
    tx: any object.

  Returns:
    A :class:`FtrlAdamOptions`, or None.

  Example:
    >>> import optax, ftrl_adam as fa
    >>> from ftrl_adam import ftrl
    >>> opts = ftrl.options_of(fa.ftrl_adam(0.1, b1=0.8, radius=0.05))
    >>> round(float(opts.b1), 6), round(float(opts.radius), 6), opts.domain
    (0.8, 0.05, 'box')
    >>> ftrl.options_of(optax.adam(0.1)) is None
    True
  """
  options = getattr(getattr(tx, "update", None), _OPTIONS, None)
  return options if isinstance(options, FtrlAdamOptions) else None
