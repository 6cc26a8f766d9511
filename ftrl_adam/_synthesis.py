"""Post-hoc EMA, after training: the combination weights and the synthesis.

The snapshots come from :func:`ftrl_adam.posthoc_ema_params` (kept during
training, module ``ftrl_adam.posthoc``, whose docstring holds the
mathematics: the exact-integral view of the power EMA, the closed-form inner
products [D], the least squares [P] and the error bound [D]) and are stored
by :class:`ftrl_adam.PosthocSnapshotKeeper`.  Here the weights are solved on
the host in float64 and the EMA of any width is synthesised from them
(Karras et al., EDM2, CVPR 2024, https://arxiv.org/abs/2312.02696).
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ftrl_adam.ema import power_from_sigma_rel
from ftrl_adam.posthoc import check_powers
from ftrl_adam.posthoc import check_sigma_rels
from ftrl_adam.posthoc import check_steps


# ----------------------------------------------------------------------------
# The weights.
# ----------------------------------------------------------------------------


def _inner(t_a, p_a, t_b, p_b) -> np.ndarray:
  """<f_{t_a,p_a}, f_{t_b,p_b}> in float64, broadcasting (``ftrl_adam.posthoc``'s docstring)."""
  t_a, p_a, t_b, p_b = np.broadcast_arrays(
      *(np.asarray(v, np.float64) for v in (t_a, p_a, t_b, p_b)))
  lo, hi = np.minimum(t_a, t_b), np.maximum(t_a, t_b)
  p_hi = np.where(t_a <= t_b, p_b, p_a)   # the exponent of the later profile
  return (p_a + 1.0) * (p_b + 1.0) / ((p_a + p_b + 1.0) * hi) * (lo / hi) ** p_hi


def posthoc_ema_weights(
    steps: Any,
    powers: Any,
    sigma_rel: Any,
    *,
    step: Optional[int] = None,
    max_residual: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
  r"""Combination weights that synthesise the power EMA of ``sigma_rel``.

  Least squares in L2(0, inf) between power-function profiles (Karras et al.
  2024; ``ftrl_adam.posthoc``'s docstring for the derivation): with snapshot profiles
  f_k = f_{t_k, p_k} and the target f_r = f_{t_r, p_r}, p_r from
  :func:`ftrl_adam.power_from_sigma_rel`, solve ``A c = b`` with the closed
  forms [D, the paper's formula derived again]

      A_kl = <f_k, f_l>,  b_k = <f_k, f_r>,
      <f_a, f_b> = (p_a + 1)(p_b + 1) / ((p_a + p_b + 1) t_b) (t_a / t_b)^p_b
                   for t_a <= t_b,

  in float64 (each profile scaled to unit norm, SVD solve), over the
  snapshots with ``t_k <= t_r`` only, then divide c by its sum [P, the
  paper's released code].  The relative residual
  ``rho = ||sum_k c_k f_k - f_r|| / ||f_r||`` bounds the gap to the EMA run
  directly with p_r on the same trajectory [D]:
  ``|synthesised - direct| <= rho (p_r + 1) / sqrt(2 p_r + 1) max_i |x_i - x_ref|``.

  Args:
    steps: the snapshot steps t_k (integers >= 1), one per snapshot.
    powers: the exponent p_k of each snapshot (floats >= 0), same length.
    sigma_rel: the target width, a float in (0, 12 ** -0.5], or a list of
      them.  Concrete: the weights are solved on the host.
    step: the target step t_r, one of ``steps``; default the largest.
    max_residual: the largest relative residual rho accepted (default 0.05;
      ``float("inf")`` accepts any).

  Returns:
    ``(weights, residual)``: float64 arrays of shape ``[len(steps)]`` and
    ``[]`` for a scalar ``sigma_rel``, or ``[S, len(steps)]`` and ``[S]``
    for S widths.  Snapshots after ``step`` get weight 0; each row sums to 1.

  Raises:
    ValueError: a bad ``sigma_rel``, ``steps`` or ``powers``, mismatched
      lengths, a repeated (step, power), ``step`` not a snapshot step, fewer
      than two snapshots at or before ``step``, non-finite weights, or a
      residual above ``max_residual`` (too few snapshots for this target).

  Example:
    >>> import ftrl_adam as fa
    >>> p1, p2 = fa.power_from_sigma_rel(0.05), fa.power_from_sigma_rel(0.10)
    >>> steps = [100 * (k // 2 + 1) for k in range(20)]   # 10 times, 2 EMAs
    >>> powers = [p1, p2] * 10
    >>> w, rho = fa.posthoc_ema_weights(steps, powers, 0.10)
    >>> int(w.argmax()), round(float(w.max()), 6)   # a stored width: itself
    (19, 1.0)
    >>> w, rho = fa.posthoc_ema_weights(steps, powers, 0.07)
    >>> round(float(w.sum()), 12), round(float(rho), 4)
    (1.0, 0.0091)

  References:
    Karras, Aittala, Lehtinen, Hellsten, Aila & Laine, *Analyzing and
    Improving the Training Dynamics of Diffusion Models*, CVPR 2024,
    https://arxiv.org/abs/2312.02696 (post-hoc EMA, its Algorithm 3).
  """
  sig, scalar = check_sigma_rels("sigma_rel", sigma_rel)
  t = check_steps("steps", steps)
  p = check_powers("powers", powers, allow_empty=True)
  if len(t) != len(p):
    raise ValueError(f"`steps` and `powers` must have the same length (one "
                     f"per snapshot), got {len(t)} and {len(p)}.")
  if len(set(zip(t.tolist(), p.tolist(), strict=True))) != len(t):
    raise ValueError("`steps`, `powers`: each (step, power) must appear once; "
                     "a snapshot is repeated.")
  try:
    max_residual = float(max_residual)
  except (TypeError, ValueError) as e:
    raise ValueError(f"`max_residual` must be a float > 0, got "
                     f"{max_residual!r}.") from e
  if not max_residual > 0:
    raise ValueError(f"`max_residual` must be a float > 0, got {max_residual!r}.")
  if step is None:
    if len(t) == 0:
      raise ValueError("Too few snapshots: post-hoc EMA needs at least 2, got "
                       "none.")
    t_r = int(t.max())
  else:
    if isinstance(step, (bool, np.bool_)) or not isinstance(
        step, (int, np.integer)) or int(step) not in set(t.tolist()):
      raise ValueError(
          f"`step` must be one of the snapshot steps {sorted(set(t.tolist()))}"
          f" (the EMA is synthesised where snapshots were taken), got {step!r}.")
    t_r = int(step)
  use = t <= t_r
  if use.sum() < 2:
    raise ValueError(
        f"Too few snapshots: post-hoc EMA needs at least 2 at or before step "
        f"{t_r}, got {int(use.sum())} (keep two or more power EMAs, or store "
        "snapshots more often).")
  tu, pu = t[use], p[use]
  p_r = np.array([power_from_sigma_rel(s) for s in sig])
  gram = _inner(tu[:, None], pu[:, None], tu[None, :], pu[None, :])
  scale = 1.0 / np.sqrt(np.diag(gram))
  cross = _inner(tu[:, None], pu[:, None], t_r, p_r[None, :])   # [K, S]
  sol, *_ = np.linalg.lstsq(gram * scale[:, None] * scale[None, :],
                            cross * scale[:, None], rcond=None)
  coef = sol * scale[:, None]                                     # [K, S]
  total = coef.sum(axis=0)
  if not np.all(np.isfinite(coef)) or np.any(np.abs(total) < 1e-12):
    raise ValueError(
        f"The post-hoc EMA weights for sigma_rel={sig.tolist()} are not "
        "finite or sum to 0: the snapshots cannot represent this width.")
  coef = coef / total
  norm_r = _inner(t_r, p_r, t_r, p_r)                             # [S]
  resid_sq = (np.einsum("ks,kl,ls->s", coef, gram, coef)
              - 2.0 * np.einsum("ks,ks->s", coef, cross) + norm_r)
  residual = np.sqrt(np.maximum(resid_sq, 0.0) / norm_r)
  if np.any(residual > max_residual):
    bad = [f"{s:g} (rho={r:.3g})" for s, r in zip(sig, residual, strict=True)
           if r > max_residual]
    raise ValueError(
        f"Too few snapshots for sigma_rel {', '.join(bad)} at step {t_r}: the "
        f"relative residual of the profile fit exceeds max_residual="
        f"{max_residual:g}.  Store snapshots more often, keep EMAs whose "
        "widths bracket the target, or raise `max_residual`.")
  weights = np.zeros((len(sig), len(t)))
  weights[:, use] = coef.T
  if scalar:
    return weights[0], residual[0]
  return weights, residual


# ----------------------------------------------------------------------------
# The synthesis.
# ----------------------------------------------------------------------------


def posthoc_ema(
    snapshots: Any,
    sigma_rel: Any,
    *,
    step: Optional[int] = None,
    max_residual: float = 0.05,
) -> Any:
  r"""The parameters of the power EMA of width ``sigma_rel``, synthesised post hoc.

  Karras et al. (2024): ``xhat_r = sum_k c_k xhat_k`` over the stored
  snapshots, with the weights c of :func:`posthoc_ema_weights` (least squares
  between the power-function profiles, closed-form inner products; the
  derivation and the error bound are in ``ftrl_adam.posthoc``'s docstring).  The sum runs
  in the snapshots' dtype (float32 at least), at the highest matmul
  precision; snapshots after ``step`` are not read.

  It traces: under ``jax.jit`` pass the snapshots as an argument (their steps
  and powers are static) and ``sigma_rel`` as a constant, e.g.
  ``jax.jit(lambda s: fa.posthoc_ema(s, 0.07))``.  The weights are solved on
  the host in float64 when the function is traced.

  Args:
    snapshots: a :class:`ftrl_adam.PosthocSnapshots`.
    sigma_rel: the target width in (0, 12 ** -0.5], or a list of widths.
    step: the step to synthesise at, one of the snapshot steps; default the
      last.
    max_residual: the largest relative residual of the profile fit accepted
      (see :func:`posthoc_ema_weights`).

  Returns:
    A tree like one snapshot (no leading snapshot axis), or, for a list of
    S widths, leaves with a leading axis of size S.

  Raises:
    ValueError: ``snapshots`` is not a :class:`PosthocSnapshots`, or any
      reason of :func:`posthoc_ema_weights`.

  Example:
    >>> import jax.numpy as jnp, optax, ftrl_adam as fa
    >>> p07 = fa.power_from_sigma_rel(0.07)  # an EMA run directly, to compare
    >>> tx = optax.chain(optax.sgd(0.05), fa.ema_params(power=p07),
    ...                  fa.posthoc_ema_params())   # keeps sigma_rel 0.05, 0.10
    >>> params = {"w": jnp.array([1.0])}
    >>> state = tx.init(params)
    >>> keeper = fa.PosthocSnapshotKeeper(every=10)
    >>> for _ in range(200):            # gradient descent on w**2 / 2
    ...   updates, state = tx.update(params, state, params)
    ...   params = optax.apply_updates(params, updates)
    ...   _ = keeper.update(state)
    >>> snaps = keeper.snapshots()
    >>> len(snaps)                      # 20 steps x 2 EMAs
    40
    >>> w = fa.posthoc_ema(snaps, 0.07)["w"][0]
    >>> direct = fa.ema_params_of(state)["w"][0]
    >>> bool(abs(w - direct) < 1e-3 * (1.0 - float(params["w"][0])))
    True

  References:
    Karras, Aittala, Lehtinen, Hellsten, Aila & Laine, *Analyzing and
    Improving the Training Dynamics of Diffusion Models*, CVPR 2024,
    https://arxiv.org/abs/2312.02696.
  """
  from ftrl_adam.snapshots import PosthocSnapshots  # pylint: disable=import-outside-toplevel
  if not isinstance(snapshots, PosthocSnapshots):
    raise ValueError(
        "`snapshots` must be a PosthocSnapshots (from "
        "PosthocSnapshotKeeper.snapshots(), PosthocSnapshots.load(...) or "
        f"PosthocSnapshots.from_trees(...)), got {type(snapshots).__name__}.")
  weights, _ = posthoc_ema_weights(snapshots.steps, snapshots.powers,
                                   sigma_rel, step=step,
                                   max_residual=max_residual)
  used = int(np.count_nonzero(np.asarray(snapshots.steps) <= (
      max(snapshots.steps) if step is None else step)))
  w = weights[..., :used]

  def combine(leaf):
    leaf = jnp.asarray(leaf)
    ct = jnp.promote_types(leaf.dtype, jnp.float32)
    out = jnp.tensordot(jnp.asarray(w, ct), leaf[:used].astype(ct), axes=1,
                        precision=jax.lax.Precision.HIGHEST)
    return out.astype(leaf.dtype)

  return jax.tree.map(combine, snapshots.params)
