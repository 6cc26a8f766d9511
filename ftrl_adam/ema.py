"""Exponential moving average (EMA) of the parameters, as an optax transform.

:func:`ema_params` sits last in an optax chain, passes the updates through
unchanged and keeps in its state the EMA of the parameters the training loop
will hold after the step, ``x_n = params + updates`` (docs/theory.md section 5):

    ybar_n = gamma_n ybar_{n-1} + (1 - gamma_n) x_n.

There are exactly two correct starts (docs/theory.md section 5 [D]), and never their
combination, which would scale the first average by 1 / (1 - gamma):

* ``debias=True`` (default): start at zero and divide by the weight sum
  ``S_n = 1 - prod_{i<=n} gamma_i``.  The result is the weighted average
  ``sum_i c_i x_i / sum_i c_i`` with ``c_i = (1 - gamma_i) prod_{j>i} gamma_j``
  of the iterates seen, so a constant parameter sequence is reproduced exactly
  from the first step.  The state keeps the average *already divided*: the
  running form ``ybar_n = ybar_{n-1} + w_n (x_n - ybar_{n-1})`` with
  ``w_n = (1 - gamma_n) / S_n`` and ``S_n = gamma_n S_{n-1} + (1 - gamma_n)``
  (the EMA of the constant 1).  This equals zero start + division to float32
  rounding (tested against the literal formula in NumPy), and the state's
  ``ema`` tree is a usable parameter tree at every step: before the first
  update it holds a copy of the initial parameters with weight S_0 = 0, which
  the first update (w_1 = 1) replaces entirely.
* ``debias=False``: start at a copy of the initial parameters ``x_0`` and never
  divide (``w_n = 1 - gamma_n``).

The decay sequence gamma_n (n counts the EMA updates, 1, 2, ...) is one of:

* constant: ``gamma_n = decay``;
* warm-up (``warmup_power=p``, ``warmup_gamma=g``), the formula of ema-pytorch
  and timm's ``ModelEmaV3``:
  ``gamma_n = clip(1 - (1 + (n - 1) / g) ** -p, 0, decay)``, so gamma_1 = 0;
* Karras power profile (``power=gp``): ``gamma_n = (1 - 1/n) ** (1 + gp)``
  (Karras et al. 2024), gamma_1 = 0, the weights of x_1..x_n are proportional to
  about ``i ** gp`` and sum to one by construction, so debiasing changes
  nothing.

:func:`ema_params_of` finds the EMA inside any nested optimizer state by type.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ftrl_adam import _checks
from ftrl_adam import _numerics
from ftrl_adam import _state_search

_is_none = _numerics.is_none

SOURCES = ("updated", "gradient_point")


class EmaParamsState(NamedTuple):
  """State of :func:`ema_params`.

  Attributes:
    count: number of optimizer steps seen, int32, saturating.
    weight_sum: float32 scalar S_n, the total weight of the averaged iterates
      (``1 - prod gamma`` with ``debias=True``; always 1 with ``debias=False``).
    ema: the EMA of the parameters, already debiased, a tree like the params in
      ``ema_dtype``.
  """

  count: jax.Array
  weight_sum: jax.Array
  ema: optax.Params


def ema_params_of(opt_state: Any, name: Optional[str] = None) -> optax.Params:
  """Returns the EMA parameters kept by :func:`ema_params` in ``opt_state``.

  The state is searched by type (:class:`EmaParamsState`), never by attribute,
  so the EMA is found inside ``optax.chain``, ``optax.named_chain``,
  ``optax.masked``, ``optax.inject_hyperparams``, ``optax.MultiSteps``, a Flax
  Linen ``TrainState`` or an ``nnx.Optimizer`` (or its ``opt_state``, whose
  arrays are unwrapped from their ``nnx.OptVariable``).  The state-dict form
  of the state, a mapping with exactly the fields of :class:`EmaParamsState`
  (what ``nnx.state(optimizer)`` or an Orbax restore without a target give),
  is recognised too.

  Args:
    opt_state: any pytree containing exactly one :class:`EmaParamsState`, or
      several of which one is called ``name``.
    name: the name given by ``ema_params(..., name=...)`` or the key of the EMA
      in an ``optax.named_chain``.

  Returns:
    The (already debiased) EMA, a tree like the params, in ``ema_dtype``.

  Raises:
    ValueError: no EMA state, several and no ``name``, or ``name`` not found.

  Example:
    >>> import jax.numpy as jnp, optax, ftrl_adam as fa
    >>> tx = optax.chain(optax.sgd(1.0), fa.ema_params(0.5))
    >>> params = {"w": jnp.array([0.0])}
    >>> state = tx.init(params)
    >>> for g in (-1.0, -1.0):
    ...   u, state = tx.update({"w": jnp.array([g])}, state, params)
    ...   params = optax.apply_updates(params, u)
    >>> round(float(fa.ema_params_of(state)["w"][0]), 5)  # (0.5 * 1 + 1 * 2) / 1.5
    1.66667
  """
  state = _state_search.find_state(
      opt_state, EmaParamsState, name, "ema_params")
  return _state_search.unwrap_variables(_state_search.field(state, "ema"))


# ----------------------------------------------------------------------------
# The transform.
# ----------------------------------------------------------------------------


def power_from_sigma_rel(sigma_rel: Any) -> float:
  r"""Exponent gamma of Karras' power EMA with relative width ``sigma_rel``.

  Solves ``sigma_rel**2 = (gp + 1) / ((gp + 2)**2 (gp + 3))`` for the largest
  real root (Karras et al. 2024, EDM2, Eq. 3 and its released code), e.g.
  ``sigma_rel = 0.05 -> 16.97`` and ``0.10 -> 6.94``.  Concrete NumPy, not
  traceable.  [P formula, from the paper's released code]

  Args:
    sigma_rel: the relative standard deviation of the averaging profile, in
      (0, 12 ** -0.5] (12 ** -0.5 is the uniform average, gp = 0).

  Returns:
    gp >= 0 as a Python float, for ``ema_params(power=gp)``.

  Example:
    >>> import ftrl_adam as fa
    >>> [round(fa.power_from_sigma_rel(s), 2) for s in (0.05, 0.10)]
    [16.97, 6.94]

  References:
    Karras, Aittala, Lehtinen, Hellsten, Aila & Laine, *Analyzing and Improving
    the Training Dynamics of Diffusion Models*, CVPR 2024,
    https://arxiv.org/abs/2312.02696.
  """
  _checks.check_in_range("sigma_rel", sigma_rel, low=0.0, high=12 ** -0.5,
                         low_closed=False, high_closed=True)
  t = float(sigma_rel) ** -2
  roots = np.roots([1.0, 7.0, 16.0 - t, 12.0 - t])
  return float(max(0.0, roots.real.max()))


def _decay_fn(decay, power, warmup_power, warmup_gamma):
  """n (int32, 1-based EMA update index) -> gamma_n in float32."""
  if power is not None:
    def gamma(n):
      n = n.astype(jnp.float32)
      return (1.0 - 1.0 / n) ** (1.0 + power)
    return gamma
  if warmup_power is not None:
    def gamma(n):
      n = n.astype(jnp.float32)
      warm = 1.0 - (1.0 + (n - 1.0) / warmup_gamma) ** (-warmup_power)
      return jnp.clip(warm, 0.0, decay)
    return gamma
  return lambda n: decay


def _blend(ema, x, w, active):
  """ema + w (x - ema) in float32 at least; exactly x where w = 1."""
  if ema is None:
    return None
  ct = jnp.promote_types(ema.dtype, jnp.float32)
  e = ema.astype(ct)
  xc = jnp.asarray(x).astype(ct)
  new = jnp.where(w >= 1.0, xc, e + w.astype(ct) * (xc - e))
  if active is not None:
    new = jnp.where(active, new, e)
  return new.astype(ema.dtype)


def _canonical_every(every: Any) -> Any:
  """A Python int >= 1, or an int32 array (traced under inject_hyperparams)."""
  if _checks.is_traced(every):
    return jnp.asarray(every, jnp.int32)
  arr = np.asarray(every) if not isinstance(every, (bool, str)) else None
  if arr is None or arr.ndim != 0 or arr.dtype.kind not in "iu" or arr < 1:
    raise ValueError(f"`every` must be an integer >= 1, got {every!r}.")
  return int(arr)


def ema_params(
    decay: Any = None,
    *,
    power: Any = None,
    debias: bool = True,
    warmup_power: Any = None,
    warmup_gamma: Any = 1.0,
    every: int = 1,
    source: str = "updated",
    ema_dtype: Optional[Any] = None,
    name: Optional[str] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Keeps an EMA of the parameters in the optimizer state; updates pass through.

  Place it **last** in an ``optax.chain``: it averages
  ``x_n = optax.apply_updates(params, updates)``, the parameters the loop holds
  after step n, exactly as the loop will round them (``source="updated"``,
  ema-pytorch, timm, Karras), or the ``params`` it is given, i.e. the point at
  which step n's gradient was taken (``source="gradient_point"``; after
  :func:`ftrl_adam.online_to_nonconvex` these are the random points y_n and the
  EMA is Ahn & Cutkosky's output ybar_n exactly, docs/theory.md section 4).

      ybar_n = gamma_n ybar_{n-1} + (1 - gamma_n) x_n

  ``debias=True``: zero start divided by ``1 - prod gamma`` (kept divided, see
  the module docstring) [D]; ``debias=False``: start at a copy of the initial
  params, no division.  Read it with :func:`ema_params_of`.

  The decay profile (n counts EMA updates: 1, 2, ...):

  * ``decay`` alone: constant gamma_n = decay.
  * ``decay`` and ``warmup_power``: ``gamma_n = clip(1 - (1 + (n-1)/warmup_gamma)
    ** -warmup_power, 0, decay)``, the warm-up of ema-pytorch (``power``,
    ``inv_gamma``, with ``update_after_step=0``) and timm ``ModelEmaV3``
    (``warmup_power``, ``warmup_gamma``).  p = 2/3 reaches 0.999 after 31.6k
    updates, p = 3/4 after 10k.  gamma_1 = 0, so both starts coincide.
  * ``power`` instead of ``decay``: Karras' power profile
    ``gamma_n = (1 - 1/n) ** (1 + power)`` [P]; its weights sum to one, so
    ``debias`` has no effect.  :func:`power_from_sigma_rel` converts EDM2's
    ``sigma_rel``.

  ``every=k`` updates the EMA on steps 1, k+1, 2k+1, ... (as ema-pytorch's
  ``update_every``): it is the EMA of that subsequence, and n, the warm-up and
  the power profile count EMA updates, not optimizer steps.

  Args:
    decay: gamma in [0, 1], a float or float32 array (it can be vmapped or
      injected with ``optax.inject_hyperparams``); 1 freezes the EMA at the
      initial parameters.  Exactly one of ``decay`` and ``power`` is given.
    power: Karras' exponent gamma_pow >= 0 (array, can be vmapped).
    debias: zero start with debiasing (True) or copy start without (False).
    warmup_power: p > 0 to warm the decay up, or None.
    warmup_gamma: g > 0 of the warm-up (ema-pytorch's ``inv_gamma``).
    every: update the EMA every k >= 1 optimizer steps (an integer).
    source: ``"updated"`` (params + updates) or ``"gradient_point"`` (params).
    ema_dtype: dtype of the EMA; default: the param dtype promoted to float32
      (a float32 EMA of bfloat16 params).
    name: optional name, to pick this EMA with ``ema_params_of(state, name)``
      when a state holds several; the state is then ``{name: EmaParamsState}``.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose state is an
    :class:`EmaParamsState` (or ``{name: EmaParamsState}``).  Its ``update``
    requires ``params``.

  Raises:
    ValueError: decay outside [0, 1], power < 0, every < 1, an unknown
      ``source``, both or neither of ``decay`` and ``power``, warm-up with the
      power profile, or (in ``update``) ``params`` missing.

  Example:
    >>> import jax.numpy as jnp, optax, ftrl_adam as fa
    >>> tx = optax.chain(optax.sgd(0.1), fa.ema_params(0.9))
    >>> params = {"w": jnp.array([1.0])}
    >>> state = tx.init(params)
    >>> for _ in range(3):
    ...   updates, state = tx.update({"w": jnp.array([1.0])}, state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> round(float(params["w"][0]), 5)
    0.7
    >>> # debiased: (0.81 * 0.9 + 0.9 * 0.8 + 1 * 0.7) / (0.81 + 0.9 + 1)
    >>> round(float(fa.ema_params_of(state)["w"][0]), 5)
    0.79299

  References:
    Karras et al., *Analyzing and Improving the Training Dynamics of Diffusion
    Models*, CVPR 2024, https://arxiv.org/abs/2312.02696 (power EMA).
    Ahn & Cutkosky, *Adam with model exponential moving average is effective
    for nonconvex optimization*, NeurIPS 2024, https://arxiv.org/abs/2405.18199.
    Warm-up: ema-pytorch (``EMA.get_current_decay``) and timm
    (``ModelEmaV3.get_decay``).  docs/theory.md section 5.
  """
  if (decay is None) == (power is None):
    raise ValueError(
        "Give exactly one of `decay` (constant or warmed-up EMA) and `power` "
        f"(Karras power EMA); got decay={decay!r}, power={power!r}.")
  if power is not None and warmup_power is not None:
    raise ValueError(
        "`warmup_power` cannot be combined with `power`: the power profile "
        "already starts at gamma_1 = 0.")
  if decay is not None:
    decay = _checks.as_f32("decay", decay, low=0.0, high=1.0, high_closed=True)
  if power is not None:
    power = _checks.as_f32("power", power, low=0.0)
  if warmup_power is not None:
    warmup_power = _checks.as_f32(
        "warmup_power", warmup_power, low=0.0, low_closed=False)
    warmup_gamma = _checks.as_f32(
        "warmup_gamma", warmup_gamma, low=0.0, low_closed=False)
  every = _canonical_every(every)
  if not isinstance(debias, bool):
    raise ValueError(f"`debias` must be True or False, got {debias!r}.")
  _checks.check_choice("source", source, SOURCES)
  if name is not None and not isinstance(name, str):
    raise ValueError(f"`name` must be a string or None, got {name!r}.")
  gamma_at = _decay_fn(decay, power, warmup_power, warmup_gamma)

  def wrap(state):
    return state if name is None else {name: state}

  def unwrap(state):
    return state if name is None else state[name]

  def init_fn(params):
    def copy(p):
      dt = (jnp.dtype(ema_dtype) if ema_dtype is not None
            else jnp.promote_types(p.dtype, jnp.float32))
      return jnp.array(p, dtype=dt, copy=True)
    ema = jax.tree.map(lambda p: None if p is None else copy(p), params,
                       is_leaf=_is_none)
    weight_sum = jnp.asarray(0.0 if debias else 1.0, jnp.float32)
    return wrap(EmaParamsState(
        count=jnp.zeros([], jnp.int32), weight_sum=weight_sum, ema=ema))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(
          "`ema_params` needs `params` in `update(updates, state, params)`: it "
          "averages the parameters (pass them, as nnx.Optimizer and "
          "TrainState.apply_gradients do).")
    state = unwrap(state)
    count = optax.safe_increment(state.count)
    if source == "updated":
      x = optax.apply_updates(params, updates)
    else:
      x = params
    if isinstance(every, int) and every == 1:
      active = None
      n = count
    else:
      active = (count - 1) % every == 0
      n = (count - 1) // every + 1
    gamma = gamma_at(n)
    one_minus = 1.0 - gamma
    if debias:
      weight_sum = gamma * state.weight_sum + one_minus
      ok = weight_sum > 0
      w = jnp.where(ok, one_minus / jnp.where(ok, weight_sum, 1.0), 0.0)
    else:
      weight_sum = state.weight_sum
      w = one_minus
    if active is not None:
      weight_sum = jnp.where(active, weight_sum, state.weight_sum)
    ema = jax.tree.map(
        lambda e, xi: _blend(e, xi, w, active), state.ema, x,
        is_leaf=_is_none)
    new_state = EmaParamsState(
        count=count, weight_sum=weight_sum.astype(jnp.float32), ema=ema)
    return updates, wrap(new_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
