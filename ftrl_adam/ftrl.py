"""FTRL-update Adam: Adam written as follow-the-regularised-leader on updates.

The learner of Nguyen (ALT 2026, arXiv:2510.03478), Algorithm 1, and of Ahn,
Zhang, Kook & Dai (ICML 2024, arXiv:2402.01567): after seeing the gradient g_n
it updates the (un-corrected) moments

    m_n = b1 m_{n-1} + (1 - b1) g_n,      v_n = b2 v_{n-1} + (1 - b2) g_n**2,

and plays the update

    Delta_{n+1} = clip_D( -lr * k_n * m_n / (sqrt(v_n) + e_n) ).

``k_n`` and ``e_n`` implement the conventions of docs/theory.md section 2 (derived
here [D]; verified against optax):

| option | k_n | e_n |
|---|---|---|
| bias-corrected (default) | ``sqrt(1 - b2**n) / (1 - b1**n)`` | ``eps * sqrt(1 - b2**n)`` (= optax.adam) |
| uncorrected, Adam eps | ``1`` | ``eps`` |
| FTRL eps | as chosen by ``bias_correction`` | ``eps * sqrt(1 - b2) * b2**(n / 2)`` |

The FTRL-eps row is a constant ``eps`` added to sqrt(S_n) in the scaled space of
the FTRL form (``S_n = sum_s b2**-s g_s**2``), i.e. the exponentially decaying eps of
Nguyen's section 3.  Nothing here depends on b1 <= sqrt(b2): both regimes of
Nguyen (beta = b1 / sqrt(b2) <= 1 or >= 1) are the same code.
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

EPS_MODES = ("adam", "ftrl")
SECOND_MOMENTS = ("per_coordinate", "global")
DOMAINS = ("box", "ball")

# Safeguarded Newton iterations of the exact l2-ball solver.  Newton on the
# secular equation converges quadratically; 32 steps reach float32 rounding
# even when the per-coordinate rates span ten orders of magnitude (tested).
BALL_SOLVER_ITERATIONS = 32


class ScaleByFtrlAdamState(NamedTuple):
  """State of :func:`scale_by_ftrl_adam`.

  Attributes:
    count: number of gradients seen, int32, saturating at the int32 maximum.
    mu: first moment m_n (no bias correction), a tree like the params.
    nu: second moment v_n (no bias correction): a tree like the params, or a
      float32 scalar when ``second_moment="global"``.
  """

  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates


def _state_dtype(dtype: Optional[Any], leaf_dtype: Any) -> Any:
  """Requested dtype, else the leaf dtype promoted to at least float32."""
  if dtype is not None:
    return jnp.dtype(dtype)
  return jnp.promote_types(leaf_dtype, jnp.float32)


def _zeros_tree(params: Any, dtype: Optional[Any]) -> Any:
  return jax.tree.map(
      lambda p: None if p is None
      else _numerics.zeros_like(p, _state_dtype(dtype, p.dtype)),
      params, is_leaf=_is_none)


def _step_constants(b1, b2, eps, count, bias_correction, eps_mode):
  """(k_n, e_n) of docs/theory.md section 2 in float32, for n = count gradients seen."""
  n = count.astype(jnp.float32)
  if bias_correction:
    one_minus_b2n = 1.0 - b2 ** count
    k = jnp.sqrt(one_minus_b2n) / (1.0 - b1 ** count)
  else:
    one_minus_b2n = None
    k = jnp.ones([], jnp.float32)
  if eps_mode == "adam":
    e = eps * jnp.sqrt(one_minus_b2n) if bias_correction else eps
  else:  # "ftrl": eps' sqrt(1 - b2) b2^(n/2)
    e = eps * jnp.sqrt(1.0 - b2) * b2 ** (n / 2.0)
  return k, e


def _weighted_ball_lambda(xt, h, radius, iterations):
  """Multiplier lam >= 0 of the FTRL argmin over the l2 ball, per-coordinate rates.

  The FTRL objective <H, x> + sum_i x_i**2 / (2 eta_i) over ||x||_2 <= D has the
  unconstrained minimiser xt_i = -eta_i H_i and the KKT solution
  x_i(lam) = xt_i * h_i / (h_i + lam) with curvatures h_i proportional to
  1 / eta_i [D].  We solve ||x(lam)|| = D by Newton's method on the secular
  equation phi(lam) = 1/||x(lam)|| - 1/D (Moré & Sorensen 1983), kept inside a
  bisection bracket [0, max(h) ||xt|| / D]; a fixed number of iterations keeps
  it jit-able.  Returns 0 when xt is already inside the ball.
  """
  leaves = [(a, b) for a, b in zip(jax.tree.leaves(xt), jax.tree.leaves(h), strict=False)]
  f32 = jnp.float32
  a2 = [jnp.square(a.astype(f32) * b.astype(f32)) for a, b in leaves]
  hs = [b.astype(f32) for _, b in leaves]
  norm_xt = jnp.sqrt(_numerics.tree_fixed_order_sum([a for a, _ in leaves], jnp.square))
  h_max = jnp.max(jnp.stack([jnp.max(b) for b in hs]))
  outside = norm_xt > radius
  safe_r = jnp.where(radius > 0, radius, 1.0)

  def sums(lam):
    s2 = jnp.zeros([], f32)
    s3 = jnp.zeros([], f32)
    for a, b in zip(a2, hs, strict=False):
      d = b + lam
      inv = jnp.where(d > 0, 1.0 / jnp.where(d > 0, d, 1.0), 0.0)
      s2 = s2 + _numerics.fixed_order_sum(a * inv * inv)
      s3 = s3 + _numerics.fixed_order_sum(a * inv * inv * inv)
    return s2, s3

  def body(_, carry):
    lam, lo, hi = carry
    s2, s3 = sums(lam)
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
    return lam, lo, hi

  hi0 = h_max * norm_xt / safe_r
  lam0 = jnp.zeros([], f32)
  lam, lo, hi = jax.lax.fori_loop(0, iterations, body, (lam0, lam0, hi0))
  # The final answer must be feasible: take the side of the bracket that is.
  s2, _ = sums(lam)
  lam = jnp.where(jnp.sqrt(s2) > safe_r, hi, lam)
  return jnp.where(outside & (radius > 0), lam, 0.0)


def _scale_by_ftrl_adam(
    b1, b2, eps, *, bias_correction, eps_mode, second_moment, mu_dtype,
    nu_dtype, ball=None,
) -> optax.GradientTransformationExtraArgs:
  """Shared implementation; ``ball=(radius, schedule)`` adds the exact
  per-coordinate-rate projection on the l2 ball (used by :func:`ftrl_adam`)."""
  is_global = second_moment == "global"

  def init_fn(params):
    mu = _zeros_tree(params, mu_dtype)
    if is_global:
      nu = jnp.zeros([], _state_dtype(nu_dtype, jnp.float32))
    else:
      nu = _zeros_tree(params, nu_dtype)
    return ScaleByFtrlAdamState(
        count=jnp.zeros([], jnp.int32), mu=mu, nu=nu)

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    if is_global:
      nu = b2 * state.nu + (1.0 - b2) * _numerics.tree_fixed_order_sum(updates, jnp.square)
    else:
      nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    count = optax.safe_increment(state.count)
    k, e = _step_constants(b1, b2, eps, count, bias_correction, eps_mode)

    if is_global:
      den = jnp.sqrt(nu.astype(jnp.float32)) + e
      direction = jax.tree.map(
          lambda m: None if m is None else _numerics.safe_div(k * m, den),
          mu, is_leaf=_is_none)
    else:
      den = jax.tree.map(
          lambda v: None if v is None else jnp.sqrt(v) + e, nu,
          is_leaf=_is_none)
      direction = jax.tree.map(
          lambda m, d: None if m is None else _numerics.safe_div(k * m, d),
          mu, den, is_leaf=_is_none)

    if ball is not None:
      radius, schedule = ball
      lr = schedule(state.count)
      xt = jax.tree.map(lambda d: lr * d, direction)
      lam = _weighted_ball_lambda(xt, den, radius, BALL_SOLVER_ITERATIONS)
      direction = jax.tree.map(
          lambda d, h: _numerics.safe_div(d * h, h + lam), direction, den)

    updates = jax.tree.map(
        lambda d, g: None if g is None else d.astype(g.dtype),
        direction, updates, is_leaf=_is_none)
    mu = optax.tree.cast_like(mu, state.mu)
    nu = optax.tree.cast_like(nu, state.nu)
    return updates, ScaleByFtrlAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _canonical_hparams(b1, b2, eps, bias_correction, eps_mode, second_moment):
  b1 = _checks.as_f32("b1", b1, low=0.0, high=1.0)
  b2 = _checks.as_f32("b2", b2, low=0.0, high=1.0)
  eps = _checks.as_f32("eps", eps, low=0.0)
  _checks.check_choice("eps_mode", eps_mode, EPS_MODES)
  _checks.check_choice("second_moment", second_moment, SECOND_MOMENTS)
  if not isinstance(bias_correction, bool):
    raise ValueError(
        f"`bias_correction` must be True or False, got {bias_correction!r}.")
  return b1, b2, eps


def scale_by_ftrl_adam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    *,
    bias_correction: bool = True,
    eps_mode: str = "adam",
    second_moment: str = "per_coordinate",
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Rescales gradients into the FTRL-Adam direction ``k_n m_n / (sqrt(v_n) + e_n)``.

  The direction of Algorithm 1 of Nguyen (2026), before the learning rate and
  the clip: chain it with ``optax.scale_by_learning_rate`` (or use
  :func:`ftrl_adam`).  With the defaults it equals ``optax.scale_by_adam`` up to
  float32 rounding.  See the module docstring for ``k_n`` and ``e_n``.

  Independent ``b1`` and ``b2`` cover both of Nguyen's regimes,
  ``b1 <= sqrt(b2)`` (the FTRL learning rate is non-increasing) and
  ``b1 >= sqrt(b2)`` (it can grow); docs/theory.md section 2.

  Args:
    b1: first-moment decay, in [0, 1).
    b2: second-moment decay, in [0, 1).
    eps: eps >= 0 (see ``eps_mode``).  With ``eps = 0`` a coordinate that never
      saw a non-zero gradient gets a zero update, not NaN.
    bias_correction: divide by the bias corrections of Adam (the default), or
      play the uncorrected Algorithm 1.
    eps_mode: ``"adam"`` (eps added to sqrt(v), as Adam) or ``"ftrl"`` (eps added
      to sqrt(S_n) in the scaled FTRL space; decays like b2**(n/2)).
    second_moment: ``"per_coordinate"`` (Adam) or ``"global"``: one scalar v_n
      built from ``||g_n||_2**2`` over the whole tree, as in Ahn & Cutkosky (2024).
    mu_dtype: dtype of ``mu``; default: the param dtype promoted to float32.
    nu_dtype: dtype of ``nu``; default: the param dtype promoted to float32
      (bfloat16 rounds b2 = 0.999 to 1.0: keep it at least float32).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose state is a
    :class:`ScaleByFtrlAdamState`.

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
  """
  b1, b2, eps = _canonical_hparams(
      b1, b2, eps, bias_correction, eps_mode, second_moment)
  return _scale_by_ftrl_adam(
      b1, b2, eps, bias_correction=bias_correction, eps_mode=eps_mode,
      second_moment=second_moment, mu_dtype=mu_dtype, nu_dtype=nu_dtype)


def ftrl_adam(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    *,
    radius: Any = None,
    domain: str = "box",
    second_moment: str = "per_coordinate",
    bias_correction: bool = True,
    eps_mode: str = "adam",
    mu_dtype: Optional[Any] = None,
    nu_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""FTRL-update Adam with an optional clip of the update to a box or a ball.

  ``chain(scale_by_ftrl_adam, scale by -learning_rate, clip)``: the update is

      Delta_{n+1} = argmin over the domain of the FTRL objective
                  = clip_D( -lr_n k_n m_n / (sqrt(v_n) + e_n) )   (box, or global v)

  Domains (docs/theory.md section 2, [D]):

  * ``radius=None``: no clip; with the default options this is ``optax.adam``.
  * ``domain="box"``: per-coordinate clip to ``[-radius, radius]``; exact FTRL
    argmin because the objective is separable.
  * ``domain="ball"`` with ``second_moment="global"``: one scalar rate, and the
    argmin is the Euclidean projection on the ball (Ahn & Cutkosky 2024).
  * ``domain="ball"`` with per-coordinate rates: the exact argmin
    ``x_i = xt_i h_i / (h_i + lam)`` with ``h_i = sqrt(v_i) + e_n``, the multiplier
    found by a fixed-iteration safeguarded Newton solve (jit-able, float32
    accurate).  It is *not* the Euclidean projection of the Adam step.

  Args:
    learning_rate: a float >= 0 or an optax schedule ``count -> lr``.
    b1: first-moment decay, in [0, 1).
    b2: second-moment decay, in [0, 1).
    eps: eps >= 0; where it enters is set by ``eps_mode``.
    radius: D >= 0 of the domain, or None for no clip.  Theory's choice
      (Nguyen, [R]): ``learning_rate = D sqrt(1 - b2) / (1 - b1)`` (c = D).
    domain: ``"box"`` or ``"ball"``.
    second_moment: ``"per_coordinate"`` (Adam) or ``"global"`` (one scalar
      second moment); see :func:`scale_by_ftrl_adam`.
    bias_correction: Adam's bias corrections (default) or the uncorrected
      Algorithm 1; see :func:`scale_by_ftrl_adam`.
    eps_mode: ``"adam"`` or ``"ftrl"``; see :func:`scale_by_ftrl_adam`.
    mu_dtype: dtype of the first moment; see :func:`scale_by_ftrl_adam`.
    nu_dtype: dtype of the second moment; see :func:`scale_by_ftrl_adam`.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; its state is a 3-tuple
    ``(ScaleByFtrlAdamState, ScaleByScheduleState, clip state)`` whatever the
    type of ``learning_rate``.

  Example:
    >>> import jax, jax.numpy as jnp, optax, ftrl_adam as fa
    >>> params = {"w": jnp.array([1.0, -2.0])}
    >>> tx = fa.ftrl_adam(0.1, b1=0.9, b2=0.99, radius=0.05)
    >>> state = tx.init(params)
    >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
    >>> updates, state = tx.update(grads, state, params)
    >>> optax.apply_updates(params, updates)["w"].tolist()
    [0.949999988079071, -1.9500000476837158]

  References:
    Nguyen, ALT 2026, https://arxiv.org/abs/2510.03478 (Algorithm 1, box domain).
    Ahn & Cutkosky, NeurIPS 2024, https://arxiv.org/abs/2405.18199 (ball domain).
  """
  b1, b2, eps = _canonical_hparams(
      b1, b2, eps, bias_correction, eps_mode, second_moment)
  _checks.check_choice("domain", domain, DOMAINS)
  schedule = _checks.canonical_schedule("learning_rate", learning_rate)
  common = dict(bias_correction=bias_correction, eps_mode=eps_mode,
                second_moment=second_moment, mu_dtype=mu_dtype,
                nu_dtype=nu_dtype)
  if radius is None:
    scaler = _scale_by_ftrl_adam(b1, b2, eps, **common)
    clip = optax.identity()
  else:
    radius = _checks.as_f32("radius", radius, low=0.0)
    weighted_ball = domain == "ball" and second_moment == "per_coordinate"
    scaler = _scale_by_ftrl_adam(
        b1, b2, eps, **common,
        ball=(radius, schedule) if weighted_ball else None)
    # For the weighted ball the scaler already solved the exact argmin; the
    # projection that follows only guards ||Delta|| <= D against round-off.
    clip = (clipping.clip_box if domain == "box" else clipping.clip_ball)(radius)
  return optax.chain(
      scaler,
      optax.scale_by_schedule(lambda count: -schedule(count)),
      clip,
  )
