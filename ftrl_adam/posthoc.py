r"""Post-hoc EMA: choose the averaging length after training (Karras et al. 2024).

Karras et al. (EDM2, CVPR 2024, https://arxiv.org/abs/2312.02696) keep two
power-function EMAs of the parameters during training, store both every k
steps, and afterwards *synthesise* the EMA of any relative width
``sigma_rel`` as a linear combination of the stored snapshots.  This module
does that for optax and Flax:

* :func:`posthoc_ema_params` - an optax transform, last in a chain, keeping
  several power EMAs (default ``sigma_rel`` = 0.05 and 0.10, EDM2's pair) in
  one :class:`PosthocEmaState`; :func:`posthoc_emas_of` reads them.
* :class:`PosthocSnapshotKeeper` - a host-side helper the training loop calls
  after each step: every ``every`` steps it copies the EMAs to host memory or
  writes them to a self-verifying folder (module ``ftrl_adam.snapshots``,
  which holds the storage).
* :class:`PosthocSnapshots` - the stored snapshots (their steps, powers and
  stacked parameter trees), from the keeper or ``PosthocSnapshots.load``.
* :func:`posthoc_ema_weights` and :func:`posthoc_ema` - the combination
  weights for a target ``sigma_rel`` and the synthesised parameters
  (module ``ftrl_adam._synthesis``: what happens after training).

The mathematics (tags as in docs/theory.md: [P] the paper's, [D] derived
here and checked numerically by tests/test_posthoc.py).

**Power EMA** [P].  With exponent p >= 0 (EDM2's gamma), at optimizer step n
(n = 1, 2, ...) and the parameters x_n the loop holds after that step,

    xhat_n = g_n xhat_{n-1} + (1 - g_n) x_n,    g_n = (1 - 1/n)^(p + 1),

so g_1 = 0 and no start value matters.  The relative width of the profile is
``sigma_rel**2 = (p + 1) / ((p + 2)**2 (p + 3))``
(:func:`ftrl_adam.power_from_sigma_rel` inverts it).

**The discrete EMA is an exact integral** [D].  The products telescope, so
the weight of x_i in xhat_n is ``(i/n)^(p+1) - ((i-1)/n)^(p+1)``, which is
the integral over (i-1, i] of the paper's continuous profile

    f_{t,p}(s) = (p + 1) s^p / t^(p+1)   for 0 < s <= t,   0 elsewhere,

at t = n.  Hence ``xhat_n = int f_{n,p}(s) x(s) ds`` exactly, for the
piecewise-constant trajectory x(s) = x_i on (i-1, i]: no approximation in
continuous time is involved in what the snapshots hold.

**Inner products** [D; the same closed form as the paper's].  For two
profiles with t_a <= t_b,

    <f_a, f_b> = int_0^{t_a} (p_a+1)(p_b+1) s^(p_a+p_b) / (t_a^(p_a+1) t_b^(p_b+1)) ds
               = (p_a + 1)(p_b + 1) / ((p_a + p_b + 1) t_b) * (t_a / t_b)^(p_b),

written with the ratio t_a / t_b <= 1 so that no power overflows.  In
particular ``||f_{t,p}||**2 = (p + 1)**2 / ((2p + 1) t)``.

**Least squares** [P].  Given snapshots (t_k, p_k) and a target (t_r, p_r),
the weights minimise ``||sum_k c_k f_k - f_r||`` in L2(0, inf): the normal
equations ``A c = b`` with ``A_kl = <f_k, f_l>`` and ``b_k = <f_k, f_r>``.
As in the paper's released code, only snapshots with ``t_k <= t_r`` enter,
t_r must be a snapshot step, and the solution is divided by its sum so that
``sum_k c_k = 1`` (a constant trajectory is reproduced exactly).  Ours: each
profile is scaled to unit norm before an SVD least-squares solve in float64
(the Gram matrix of a few hundred snapshots has a condition number of 1e7
or more, far beyond float32).

**How close the synthesis is to the EMA run directly** [D].  Let
``r = sum_k c_k f_k - f_r`` and ``rho = ||r|| / ||f_r||`` (the relative
residual :func:`posthoc_ema_weights` returns).  By the exact-integral remark,

    synthesised - direct = sum_i e_i x_i,     e_i = int_{i-1}^{i} r(s) ds,

and ``sum_i e_i = sum_k c_k - 1 = 0``, so for any reference point x_ref
(e.g. the last iterate)

    |synthesised - direct| <= ||e||_1 max_{i <= t_r} |x_i - x_ref|
                           <= rho (p_r + 1) / sqrt(2 p_r + 1) max_i |x_i - x_ref|

(Cauchy-Schwarz on (0, t_r): ``||e||_1 <= ||r||_1 <= sqrt(t_r) ||r||``).  The
error is a fraction of how far the trajectory moved, not of the parameters'
size.  Rounding adds about ``(||c||_1 + 1) eps`` times ``max |xhat_k|``
(eps = 6e-8 in float32); ``||c||_1`` is 1 at a stored ``sigma_rel``, about
2 for targets up to 0.25, and grows for narrow ones: about 11 at 0.03 and
20-200 at 0.01-0.02 (measured with 20-100 snapshot times).
Measured by ``python tests/test_posthoc.py`` (FTRL-Adam on a noisy
quadratic, 400 steps, snapshots every 10 steps of the pair 0.05 / 0.10):
``||e||_1`` is below 6e-4 for targets between the pair, 1.6e-3 at 0.04 and
0.15, 6.5e-3 at 0.03 and 4.7e-3 at 0.20, and 3e-11 at the stored widths;
the actual gap is far below the bound in that run (at most 1.5e-4 of the
trajectory's span, since the e_i change sign; on another trajectory 9.5e-4
at sigma_rel 0.20 with snapshots every 100 steps, 1.7e-4 every 50, both
under the bound), and ``||c||_1`` stays below 12.

A bad input (``sigma_rel`` <= 0 or above 12 ** -0.5, fewer than two usable
snapshots, a target step that is no snapshot step, snapshot trees that do
not match, a residual above ``max_residual``) raises a ``ValueError`` that
names the argument.  Non-finite snapshots give non-finite synthesised values
where they reach, as in optax; the weights are checked finite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ftrl_adam import _averaging
from ftrl_adam import _checks
from ftrl_adam import _numerics
from ftrl_adam import _state_search
from ftrl_adam.ema import power_from_sigma_rel

SIGMA_REL_MAX = 12 ** -0.5   # the uniform average, p = 0
SOURCES = _averaging.SOURCES
DEFAULT_SIGMA_RELS = (0.05, 0.10)   # EDM2's pair


# ----------------------------------------------------------------------------
# Validation (concrete Python / NumPy values; nothing here is traced).
# ----------------------------------------------------------------------------


def _is_tracer(x: Any) -> bool:
  return isinstance(x, jax.core.Tracer)


def check_sigma_rels(name: str, value: Any) -> tuple[np.ndarray, bool]:
  """``value`` as a 1-D float64 array of widths in (0, 12**-0.5], and whether
  it was a scalar."""
  if _is_tracer(value) or any(_is_tracer(v) for v in np.ravel(
      np.asarray(value, dtype=object))):
    raise ValueError(
        f"`{name}` must be concrete (a float or a list of floats): the "
        "combination weights are solved on the host in float64.  Under "
        "`jax.jit`, close over it or mark it static; for several widths at "
        "once pass a list.")
  if isinstance(value, (bool, np.bool_)):
    raise ValueError(f"`{name}` must be a float in (0, {SIGMA_REL_MAX:.6f}], "
                     f"got the boolean {value!r}.")
  try:
    kind = np.asarray(value).dtype.kind
  except (TypeError, ValueError):
    kind = "O"
  if kind not in "iuf":      # "0.07" is not a number: nothing is parsed
    raise ValueError(f"`{name}` must be a float or a list of floats in "
                     f"(0, {SIGMA_REL_MAX:.6f}], got {value!r}.")
  try:
    arr = np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f"`{name}` must be a float or a list of floats in "
                     f"(0, {SIGMA_REL_MAX:.6f}], got {value!r}.") from e
  if arr.ndim > 1 or arr.size == 0:
    raise ValueError(f"`{name}` must be a float or a non-empty 1-D list of "
                     f"floats, got shape {arr.shape}.")
  bad = ~np.isfinite(arr) | (arr <= 0.0) | (arr > SIGMA_REL_MAX)
  if np.any(bad):
    raise ValueError(
        f"`{name}` must lie in (0, {SIGMA_REL_MAX:.6f}] (12 ** -0.5, the "
        f"uniform average), got {np.atleast_1d(arr)[np.atleast_1d(bad)].tolist()}.")
  return np.atleast_1d(arr), arr.ndim == 0


def check_powers(name: str, value: Any, allow_empty: bool = False) -> np.ndarray:
  """Power-EMA exponents as a 1-D float64 array of finite values >= 0."""
  if _is_tracer(value):
    raise ValueError(f"`{name}` must be concrete floats, not traced.")
  try:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
  except (TypeError, ValueError) as e:
    raise ValueError(f"`{name}` must be floats >= 0, got {value!r}.") from e
  if arr.ndim != 1 or (arr.size == 0 and not allow_empty):
    raise ValueError(f"`{name}` must be a non-empty 1-D list of floats >= 0, "
                     f"got shape {arr.shape}.")
  bad = ~np.isfinite(arr) | (arr < 0.0)
  if np.any(bad):
    raise ValueError(f"`{name}` must be finite and >= 0, got "
                     f"{arr[bad].tolist()}.")
  return arr


def check_steps(name: str, value: Any) -> np.ndarray:
  """Snapshot steps as a 1-D int64 array of values >= 1."""
  if _is_tracer(value):
    raise ValueError(f"`{name}` must be concrete integers, not traced.")
  arr = np.atleast_1d(np.asarray(value))
  if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
    raise ValueError(f"`{name}` must be a 1-D list of integers >= 1, got "
                     f"{value!r}.")
  arr = arr.astype(np.int64)
  if np.any(arr < 1):
    raise ValueError(f"`{name}` must be integers >= 1 (optimizer steps after "
                     f"the first EMA update), got {arr[arr < 1].tolist()}.")
  return arr


def sigma_rel_of_power(power: Any) -> np.ndarray:
  """``sigma_rel = sqrt((p + 1) / ((p + 2)**2 (p + 3)))`` [P], float64."""
  p = np.asarray(power, dtype=np.float64)
  return np.sqrt((p + 1.0) / ((p + 2.0) ** 2 * (p + 3.0)))


# ----------------------------------------------------------------------------
# The transform.
# ----------------------------------------------------------------------------


class PosthocEmaState(NamedTuple):
  """State of :func:`posthoc_ema_params`.

  Attributes:
    count: number of optimizer steps (= EMA updates) seen, int32, saturating.
    powers: float32[P], the exponent p of each power EMA, as used.
    emas: a tuple of P trees like the params, in ``ema_dtype``: the power EMA
      of exponent ``powers[j]`` after ``count`` steps.
  """

  count: jax.Array
  powers: jax.Array
  emas: tuple

  # The transform returns its updates unchanged: another EMA may follow it in
  # a chain (read by the check of posthoc_emas_of).
  passes_updates_through = True


def posthoc_ema_params(
    sigma_rels: Optional[Sequence[float]] = None,
    *,
    powers: Optional[Sequence[float]] = None,
    source: str = "updated",
    ema_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Keeps several power-function EMAs of the parameters; updates pass through.

  The transform of post-hoc EMA (Karras et al. 2024): put it **last** in an
  ``optax.chain`` (:func:`with_posthoc_ema` does; as for
  :func:`ftrl_adam.ema_params`, a transform after it would change the updates
  it averaged, and :func:`posthoc_emas_of` and the keeper refuse a state that
  comes before a stateful transform) and, during training, store its EMAs every k steps with a
  :class:`PosthocSnapshotKeeper`; after training :func:`posthoc_ema`
  synthesises the EMA of any ``sigma_rel`` from the snapshots.  For each
  exponent p_j (from ``sigma_rels`` by :func:`ftrl_adam.power_from_sigma_rel`,
  or given as ``powers``) [P]:

      xhat_n = g_n xhat_{n-1} + (1 - g_n) x_n,    g_n = (1 - 1/n)^(p_j + 1),

  with n the optimizer step and x_n the parameters after it,
  ``optax.apply_updates(params, updates)`` (``source="updated"``) or the
  ``params`` given to ``update`` (``source="gradient_point"``), as in
  :func:`ftrl_adam.ema_params`.  Each EMA is the one
  ``ema_params(power=p_j)`` keeps.  Ours: ``1 - g_n`` is computed as
  ``-expm1((p + 1) log1p(-1/n))``, accurate to float32 rounding at any n
  (``1 - 1/n`` itself loses the digits of ``1/n`` once n is large), and the
  weights sum to one by construction, so there is no debiasing.

  Args:
    sigma_rels: the relative widths of the EMAs to keep, distinct, each in
      (0, 12 ** -0.5]; default (0.05, 0.10), EDM2's pair.  Targets between
      them are synthesised most accurately.
    powers: the exponents p >= 0 instead of ``sigma_rels`` (not both).
    source: ``"updated"`` (params + updates) or ``"gradient_point"`` (params).
    ema_dtype: dtype of the EMAs; default the param dtype promoted to float32.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose state is a
    :class:`PosthocEmaState`; ``update`` requires ``params``.  ``init`` works
    on ``jax.ShapeDtypeStruct`` params (zero EMAs with their shardings).

  Raises:
    ValueError: both ``sigma_rels`` and ``powers``, a width outside
      (0, 12 ** -0.5], a negative power, repeated values, an unknown
      ``source``, or (in ``update``) ``params`` missing.

  Example:
    >>> import jax.numpy as jnp, optax, ftrl_adam as fa
    >>> tx = optax.chain(optax.sgd(1.0), fa.posthoc_ema_params(powers=(0.0, 1.0)))
    >>> params = {"w": jnp.array([0.0])}
    >>> state = tx.init(params)
    >>> for _ in range(3):       # the params go 1, 2, 3
    ...   u, state = tx.update({"w": jnp.array([-1.0])}, state, params)
    ...   params = optax.apply_updates(params, u)
    >>> mean, linear = fa.posthoc_emas_of(state)
    >>> # p = 0: the plain mean; p = 1: weights (1, 3, 5) / 9 on (1, 2, 3)
    >>> round(float(mean["w"][0]), 5), round(float(linear["w"][0]), 5)
    (2.0, 2.44444)

  References:
    Karras, Aittala, Lehtinen, Hellsten, Aila & Laine, *Analyzing and
    Improving the Training Dynamics of Diffusion Models*, CVPR 2024,
    https://arxiv.org/abs/2312.02696 (power EMA, post-hoc EMA).
  """
  if sigma_rels is not None and powers is not None:
    raise ValueError("Give `sigma_rels` or `powers`, not both; got "
                     f"sigma_rels={sigma_rels!r}, powers={powers!r}.")
  if powers is None:
    sig, _ = check_sigma_rels("sigma_rels", DEFAULT_SIGMA_RELS if sigma_rels is None
                         else sigma_rels)
    if len(np.unique(sig)) != len(sig):
      raise ValueError(f"`sigma_rels` must be distinct, got {sig.tolist()}.")
    pw = np.array([power_from_sigma_rel(s) for s in sig])
  else:
    pw = check_powers("powers", powers)
    if len(np.unique(pw)) != len(pw):
      raise ValueError(f"`powers` must be distinct, got {pw.tolist()}.")
  _checks.check_choice("source", source, SOURCES)
  powers32 = np.asarray(pw, np.float32)

  def init_fn(params):
    return PosthocEmaState(
        count=_numerics.scalar_like(params, 0, jnp.int32),
        powers=_numerics.scalar_like(params, powers32, jnp.float32),
        emas=tuple(_averaging.init_average(params, ema_dtype)
                   for _ in powers32))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    x = _averaging.averaged_point(updates, params, source,
                                  "posthoc_ema_params")
    count = optax.safe_increment(state.count)
    # Each EMA is ema_params(power=p, debias=False)'s: the same power step
    # (w = 1 - gamma_n, exactly 1 at n = 1) and the same blend.
    new_emas = []
    for p, ema in zip(powers32, state.emas, strict=True):
      _, w = _averaging.power_decay(count, p)
      new_emas.append(jax.tree.map(lambda e, xi, w=w: _averaging.blend(e, xi, w),
                                   ema, x, is_leaf=_numerics.is_none))
    return updates, PosthocEmaState(count=count, powers=state.powers,
                                    emas=tuple(new_emas))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def with_posthoc_ema(
    optimizer: optax.GradientTransformation,
    sigma_rels: Optional[Sequence[float]] = None,
    *,
    powers: Optional[Sequence[float]] = None,
    source: str = "updated",
    ema_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""``optimizer`` followed by :func:`posthoc_ema_params`, in its one right place.

  The power EMAs average ``params + updates``, so they must come after every
  transform that changes the updates: ``with_posthoc_ema(optimizer,
  sigma_rels, **kwargs)`` is ``optax.chain(optimizer,
  posthoc_ema_params(sigma_rels, **kwargs))``.  :func:`posthoc_emas_of`
  and :class:`PosthocSnapshotKeeper` read its state; they refuse a
  :class:`PosthocEmaState` that comes before an update-changing transform.

  Args:
    optimizer: any optax ``GradientTransformation``.
    sigma_rels: the widths to keep, as in :func:`posthoc_ema_params`.
    powers: as in :func:`posthoc_ema_params`.
    source: as in :func:`posthoc_ema_params`.
    ema_dtype: as in :func:`posthoc_ema_params`.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose state is the tuple
    ``(optimizer's state, PosthocEmaState)``; ``update`` requires ``params``.

  Raises:
    ValueError: ``optimizer`` is not an optax transform, or any error of
      :func:`posthoc_ema_params`.

  Example:
    >>> import jax.numpy as jnp, optax, ftrl_adam as fa
    >>> tx = fa.with_posthoc_ema(optax.sgd(1.0), powers=(0.0, 1.0))
    >>> params = {"w": jnp.array([0.0])}
    >>> state = tx.init(params)
    >>> for _ in range(3):       # the params go 1, 2, 3
    ...   u, state = tx.update({"w": jnp.array([-1.0])}, state, params)
    ...   params = optax.apply_updates(params, u)
    >>> [round(float(e["w"][0]), 5) for e in fa.posthoc_emas_of(state)]
    [2.0, 2.44444]

  References:
    Karras, Aittala, Lehtinen, Hellsten, Aila & Laine, *Analyzing and
    Improving the Training Dynamics of Diffusion Models*, CVPR 2024,
    https://arxiv.org/abs/2312.02696.
  """
  if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
    raise ValueError(
        "`optimizer` must be an optax GradientTransformation (init, update), "
        f"got {optimizer!r}.")
  return optax.chain(optimizer, posthoc_ema_params(
      sigma_rels, powers=powers, source=source, ema_dtype=ema_dtype))


# ----------------------------------------------------------------------------
# Finding the state by type.
# ----------------------------------------------------------------------------


def posthoc_state_of(opt_state: Any) -> PosthocEmaState:
  """The one :class:`PosthocEmaState` in ``opt_state``, values unwrapped.

  Searched by type with the package's one state search
  (:func:`ftrl_adam._state_search.find_state`, shared with ``ema_params_of``);
  :class:`ftrl_adam.PosthocSnapshotKeeper` reads the count and powers here.

  Example:
    >>> import jax.numpy as jnp, optax, ftrl_adam as fa
    >>> from ftrl_adam import posthoc
    >>> tx = optax.chain(optax.sgd(0.1), fa.posthoc_ema_params(powers=(1.0,)))
    >>> posthoc.posthoc_state_of(tx.init({"w": jnp.zeros(2)})).powers.tolist()
    [1.0]
  """
  state = _state_search.find_state(opt_state, PosthocEmaState, None,
                                    "posthoc_ema_params")
  _averaging.check_last(opt_state, PosthocEmaState, "posthoc_ema_params",
                        "with_posthoc_ema")
  if isinstance(state, Mapping):
    emas = state["emas"]
    if isinstance(emas, Mapping):     # {0: tree, 1: tree} or {"0": ...}
      emas = [emas[k] for k in sorted(emas, key=int)]
    state = PosthocEmaState(state["count"], state["powers"], tuple(emas))
  unwrap = _state_search.unwrap_variables
  return PosthocEmaState(count=unwrap(state.count), powers=unwrap(state.powers),
                         emas=tuple(unwrap(e) for e in state.emas))


def posthoc_emas_of(opt_state: Any) -> tuple:
  """Returns the EMAs kept by :func:`posthoc_ema_params` in ``opt_state``.

  The state is searched by type, so it is found inside ``optax.chain``,
  ``named_chain``, ``masked``, ``MultiSteps``, a Flax ``TrainState``, an
  ``nnx.Optimizer`` (arrays unwrapped from their ``nnx`` Variables) and the
  dict form of the state.

  Args:
    opt_state: any pytree holding exactly one :class:`PosthocEmaState`.

  Returns:
    A tuple of trees like the params, one per power, in the order given to
    :func:`posthoc_ema_params`.

  Raises:
    ValueError: no :class:`PosthocEmaState`, or more than one; or its state
      comes before the state of a transform that changes the updates in its
      ``optax.chain`` (it must be last: :func:`with_posthoc_ema`).

  Example:
    >>> import jax.numpy as jnp, optax, ftrl_adam as fa
    >>> tx = optax.chain(optax.sgd(0.1), fa.posthoc_ema_params())
    >>> state = tx.init({"w": jnp.zeros(2)})
    >>> len(fa.posthoc_emas_of(state))
    2
  """
  return posthoc_state_of(opt_state).emas
