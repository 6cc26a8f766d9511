"""Exponential moving average (EMA) of the parameters, as an optax transform.

:func:`ema_params` sits last in an optax chain (:func:`with_ema` puts it there;
:func:`ema_params_of` refuses an EMA placed before a stateful transform),
passes the updates through unchanged and keeps in its state the EMA of the
parameters the training loop will hold after the step,
``x_n = params + updates`` (docs/theory.md section 5):

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

The decay sequence gamma_n is one of (n counts optimizer steps, 1, 2, ...; the
EMA is updated at step n when ``(n - 1) % every == 0``, and m counts those
updates, 1, 2, ...):

* constant: ``gamma_n = decay``;
* warm-up (``warmup_power=p``, ``warmup_gamma=g``), the formula of ema-pytorch
  (``EMA.get_current_decay``) and timm (``ModelEmaV3.get_decay``), in optimizer
  steps as they count them, with ``a = update_after_step`` (0 if None):
  ``gamma_n = 0`` for ``n <= a + 1``, else
  ``clip(1 - (1 + (n - a - 1) / g) ** -p, min_decay, decay)``, so gamma_1 = 0;
* constant with ``update_after_step=a``: ``gamma_n = 0`` for ``n <= a + 1``, then
  ``decay`` (timm's ``ModelEmaV3`` given ``step``): the EMA copies the params
  until then;
* Karras power profile (``power=gp``): ``gamma = (1 - 1/m) ** (1 + gp)``
  (Karras et al. 2024), counted in EMA updates m, gamma = 0 at m = 1; the
  weights of the averaged iterates are proportional to about ``i ** gp`` and sum
  to one by construction, so debiasing changes nothing.

With gamma = 0 both starts give a copy of x_n, and the weight sum restarts at 1.

:func:`ema_params_of` finds the EMA inside any nested optimizer state by type.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ftrl_adam import _averaging
from ftrl_adam import _checks
from ftrl_adam import _numerics
from ftrl_adam import _state_search

SOURCES = _averaging.SOURCES


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

  # The transform returns its updates unchanged: another EMA may follow it in
  # a chain (read by the check of ema_params_of).
  passes_updates_through = True


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
    ValueError: no EMA state, several and no ``name``, or ``name`` not found;
      or the EMA's state comes before the state of a transform that changes
      the updates in its ``optax.chain`` (e.g. ``optax.chain(ema_params(0.9),
      ftrl_adam(0.1))``, which averaged params + gradient): the EMA must be
      last (:func:`with_ema` builds that order).

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
  _averaging.check_last(opt_state, EmaParamsState, "ema_params", "with_ema")
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


def _decay_fn(decay, power, warmup_power, warmup_gamma, min_decay,
              update_after_step):
  """(n, m) -> (gamma, 1 - gamma) in float32: n the optimizer step (1-based,
  int32), m the EMA update (1-based, int32); see the module docstring."""
  if power is not None:
    return lambda n, m: _averaging.power_decay(m, power)
  after = 0 if update_after_step is None else update_after_step
  if warmup_power is not None:
    def gamma(n, m):
      del m
      epoch = (n - after - 1).astype(jnp.float32)
      warm = 1.0 - (1.0 + jnp.maximum(epoch, 0.0) / warmup_gamma) ** (
          -warmup_power)
      g = jnp.where(epoch > 0, jnp.clip(warm, min_decay, decay), 0.0)
      return g, 1.0 - g
    return gamma
  if update_after_step is None:
    return lambda n, m: (decay, 1.0 - decay)

  def gamma(n, m):
    del m
    g = jnp.where(n - after - 1 > 0, decay, 0.0)
    return g, 1.0 - g
  return gamma


def _canonical_int(name: str, x: Any, low: int) -> Any:
  """A Python int >= low, or an int32 array (traced under inject_hyperparams)."""
  if _checks.is_traced(x):
    return jnp.asarray(x, jnp.int32)
  arr = np.asarray(x) if not isinstance(x, (bool, str)) else None
  if arr is None or arr.ndim != 0 or arr.dtype.kind not in "iu" or arr < low:
    raise ValueError(f"`{name}` must be an integer >= {low}, got {x!r}.")
  return int(arr)


def _canonical_every(every: Any) -> Any:
  """A Python int >= 1, or an int32 array (traced under inject_hyperparams)."""
  return _canonical_int("every", every, 1)


def ema_params(
    decay: Any = None,
    *,
    power: Any = None,
    debias: bool = True,
    warmup_power: Any = None,
    warmup_gamma: Any = 1.0,
    min_decay: Any = 0.0,
    update_after_step: Any = None,
    every: int = 1,
    source: str = "updated",
    ema_dtype: Optional[Any] = None,
    name: Optional[str] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Keeps an EMA of the parameters in the optimizer state; updates pass through.

  Place it **last** in an ``optax.chain`` - or let :func:`with_ema` do it:
  ``fa.with_ema(optimizer, decay, **kwargs)`` is ``optax.chain(optimizer,
  fa.ema_params(decay, **kwargs))``.  It averages
  ``x_n = optax.apply_updates(params, updates)``, the parameters the loop holds
  after step n, rounded to the params' dtype explicitly, also under ``jit``
  (``source="updated"``, ema-pytorch, timm, Karras), or the ``params`` it is
  given, i.e. the point at which step n's gradient was taken
  (``source="gradient_point"``; after :func:`ftrl_adam.online_to_nonconvex`
  these are the random points y_n and the EMA is Ahn & Cutkosky's output
  ybar_n exactly, docs/theory.md section 4).

  **Why last.**  A transform placed after it changes the updates the EMA has
  already averaged: ``optax.chain(fa.ema_params(0.9), fa.ftrl_adam(0.1))``
  averages params + *gradient*.  optax cannot tell a transform its place,
  so :func:`ema_params_of` checks the state instead: it raises a
  ``ValueError`` when the EMA's state comes before the state of a stateful
  transform in the same chain (FTRL-Adam's moments, optax's ``adam``, ...);
  other EMAs may follow.  A stateless transform after it (``optax.scale``)
  leaves no trace in the state and cannot be caught: keep it last.

      ybar_n = gamma_n ybar_{n-1} + (1 - gamma_n) x_n

  ``debias=True``: zero start divided by ``1 - prod gamma`` (kept divided, see
  the module docstring) [D]; ``debias=False``: start at a copy of the initial
  params, no division.  Read it with :func:`ema_params_of`.

  The decay profile (n counts optimizer steps: 1, 2, ...):

  * ``decay`` alone: constant gamma_n = decay.
  * ``decay`` and ``warmup_power``: ``gamma_n = clip(1 - (1 + (n - a - 1) /
    warmup_gamma) ** -warmup_power, min_decay, decay)`` for ``n > a + 1`` and
    0 before, with ``a = update_after_step`` (0 if None).  p = 2/3 reaches
    0.999 after 31.6k steps, p = 3/4 after 10k.
  * ``decay`` and ``update_after_step=a`` (no warm-up): 0 (a copy of the
    params) for ``n <= a + 1``, then ``decay``.
  * ``power`` instead of ``decay``: Karras' power profile
    ``gamma = (1 - 1/m) ** (1 + power)``, m counting EMA updates [P]; its
    weights sum to one, so ``debias`` has no effect.
    :func:`power_from_sigma_rel` converts EDM2's ``sigma_rel``.

  ``every=k`` updates the EMA on steps 1, k+1, 2k+1, ... (ema-pytorch's
  ``update_every``): the EMA of that subsequence.  The warm-up and
  ``update_after_step`` count optimizer steps, as those libraries do; the
  power profile counts EMA updates.

  One to one with the reference libraries (tested against values they
  produced, ``tests/data/ema_reference.json``), the EMA read after each
  optimizer step n:

  * ema-pytorch ``EMA(beta=b, update_after_step=a, update_every=k,
    inv_gamma=g, power=p, min_value=c)`` with ``ema.update()`` after every step
    is ``ema_params(b, warmup_power=p, warmup_gamma=g, min_decay=c,
    update_after_step=a, every=k)``.  Its defaults (a = 100, k = 10, p = 2/3)
    are not ours: pass them.
  * timm ``ModelEmaV3(decay=b, min_decay=c, update_after_step=a,
    use_warmup=True, warmup_gamma=g, warmup_power=p)`` with
    ``ema.update(model, step=n)`` is the same ``ema_params(b, warmup_power=p,
    warmup_gamma=g, min_decay=c, update_after_step=a)``; with
    ``use_warmup=False`` it is ``ema_params(b, update_after_step=a)``; called
    without ``step`` it is ``ema_params(b, debias=False)``.

  Args:
    decay: gamma in [0, 1], a float or float32 array (it can be vmapped or
      injected with ``optax.inject_hyperparams``); 1 freezes the EMA at the
      initial parameters.  Exactly one of ``decay`` and ``power`` is given.
    power: Karras' exponent gamma_pow >= 0 (array, can be vmapped).
    debias: zero start with debiasing (True) or copy start without (False).
    warmup_power: p > 0 to warm the decay up, or None.
    warmup_gamma: g > 0 of the warm-up (ema-pytorch's ``inv_gamma``).
    min_decay: lower bound of the warmed-up decay, in [0, decay]
      (ema-pytorch's ``min_value``, timm's ``min_decay``); only with
      ``warmup_power``.
    update_after_step: None, or an integer a >= 0: the EMA is a copy of the
      params up to step a + 1 and the warm-up starts after it (ema-pytorch's
      and timm's ``update_after_step``).  Not with ``power``.
    every: update the EMA every k >= 1 optimizer steps (an integer).
    source: ``"updated"`` (params + updates) or ``"gradient_point"`` (params).
    ema_dtype: dtype of the EMA; default: the param dtype promoted to float32
      (a float32 EMA of bfloat16 params).
    name: optional name, to pick this EMA with ``ema_params_of(state, name)``
      when a state holds several; the state is then ``{name: EmaParamsState}``.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose state is an
    :class:`EmaParamsState` (or ``{name: EmaParamsState}``).  Its ``update``
    requires ``params``.  ``init`` on ``jax.ShapeDtypeStruct`` params gives
    the state's shapes, dtypes and shardings, with a zero EMA.

  Raises:
    ValueError: decay outside [0, 1], power < 0, every < 1, an unknown
      ``source``, both or neither of ``decay`` and ``power``, warm-up or
      ``update_after_step`` with the power profile, ``min_decay`` without
      warm-up or above ``decay``, or (in ``update``) ``params`` missing.

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
    Warm-up: ema-pytorch (``EMA.get_current_decay``, version 0.8.3) and timm
    (``ModelEmaV3.get_decay``, version 1.0.31).  docs/theory.md section 5.
  """
  if (decay is None) == (power is None):
    raise ValueError(
        "Give exactly one of `decay` (constant or warmed-up EMA) and `power` "
        f"(Karras power EMA); got decay={decay!r}, power={power!r}.")
  if power is not None and warmup_power is not None:
    raise ValueError(
        "`warmup_power` cannot be combined with `power`: the power profile "
        "already starts at gamma_1 = 0.")
  if power is not None and update_after_step is not None:
    raise ValueError(
        "`update_after_step` cannot be combined with `power`: the power "
        "profile already starts at gamma_1 = 0 (use `decay` with "
        "`warmup_power` for ema-pytorch / timm behaviour).")
  if decay is not None:
    decay = _checks.as_f32("decay", decay, low=0.0, high=1.0, high_closed=True)
  if power is not None:
    power = _checks.as_f32("power", power, low=0.0)
  min_decay = _checks.as_f32("min_decay", min_decay, low=0.0, high=1.0,
                             high_closed=True)
  if warmup_power is not None:
    warmup_power = _checks.as_f32(
        "warmup_power", warmup_power, low=0.0, low_closed=False)
    warmup_gamma = _checks.as_f32(
        "warmup_gamma", warmup_gamma, low=0.0, low_closed=False)
    if not (_checks.is_traced(min_decay) or _checks.is_traced(decay)) and (
        float(min_decay) > float(decay)):
      raise ValueError(
          f"`min_decay` must lie in [0, decay] = [0, {float(decay):g}], got "
          f"{float(min_decay):g}.")
  elif not _checks.is_traced(min_decay) and float(min_decay) != 0.0:
    raise ValueError(
        "`min_decay` bounds the warmed-up decay: give `warmup_power` too "
        f"(got min_decay={float(min_decay):g} without warm-up).")
  if update_after_step is not None:
    update_after_step = _canonical_int("update_after_step", update_after_step, 0)
  every = _canonical_every(every)
  if not isinstance(debias, bool):
    raise ValueError(f"`debias` must be True or False, got {debias!r}.")
  _checks.check_choice("source", source, SOURCES)
  if name is not None and not isinstance(name, str):
    raise ValueError(f"`name` must be a string or None, got {name!r}.")
  gamma_at = _decay_fn(decay, power, warmup_power, warmup_gamma, min_decay,
                       update_after_step)

  def wrap(state):
    return state if name is None else {name: state}

  def unwrap(state):
    return state if name is None else state[name]

  def init_fn(params):
    return wrap(EmaParamsState(
        count=_numerics.scalar_like(params, 0, jnp.int32),
        weight_sum=_numerics.scalar_like(params, 0.0 if debias else 1.0,
                                         jnp.float32),
        ema=_averaging.init_average(params, ema_dtype)))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    x = _averaging.averaged_point(updates, params, source, "ema_params")
    state = unwrap(state)
    count = optax.safe_increment(state.count)
    if isinstance(every, int) and every == 1:
      active = None
      m = count
    else:
      active = (count - 1) % every == 0
      m = (count - 1) // every + 1
    gamma, one_minus = gamma_at(count, m)
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
        lambda e, xi: _averaging.blend(e, xi, w, active), state.ema, x,
        is_leaf=_numerics.is_none)
    new_state = EmaParamsState(
        count=count, weight_sum=weight_sum.astype(jnp.float32), ema=ema)
    return updates, wrap(new_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def with_ema(
    optimizer: optax.GradientTransformation,
    decay: Any = None,
    *,
    power: Any = None,
    debias: bool = True,
    warmup_power: Any = None,
    warmup_gamma: Any = 1.0,
    min_decay: Any = 0.0,
    update_after_step: Any = None,
    every: int = 1,
    source: str = "updated",
    ema_dtype: Optional[Any] = None,
    name: Optional[str] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""``optimizer`` followed by :func:`ema_params`: the EMA in its one right place.

  :func:`ema_params` averages ``x_n = params + updates``, the parameters the
  loop holds after step n, so it must come after every transform that
  changes the updates.  ``with_ema(optimizer, decay, **kwargs)`` is
  ``optax.chain(optimizer, ema_params(decay, **kwargs))``: the order is
  fixed, and :func:`ema_params_of` reads the EMA from its state.  Its
  arguments are named (not ``**kwargs``), so
  ``optax.inject_hyperparams(functools.partial(with_ema, optimizer))(decay=...)``
  injects the decay.  (The wrong
  order, ``optax.chain(ema_params(0.9), ftrl_adam(0.1))``, averages params +
  *gradient*; :func:`ema_params_of` refuses to read it.)

  Args:
    optimizer: any optax ``GradientTransformation`` (its extra arguments are
      passed through).
    decay: the EMA's decay, as in :func:`ema_params`.
    power: as in :func:`ema_params`.
    debias: as in :func:`ema_params`.
    warmup_power: as in :func:`ema_params`.
    warmup_gamma: as in :func:`ema_params`.
    min_decay: as in :func:`ema_params`.
    update_after_step: as in :func:`ema_params`.
    every: as in :func:`ema_params`.
    source: as in :func:`ema_params`.
    ema_dtype: as in :func:`ema_params`.
    name: as in :func:`ema_params`.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose state is the tuple
    ``(optimizer's state, EmaParamsState)``; ``update`` requires ``params``.

  Raises:
    ValueError: ``optimizer`` is not an optax transform, or any error of
      :func:`ema_params`.

  Example:
    >>> import jax.numpy as jnp, optax, ftrl_adam as fa
    >>> tx = fa.with_ema(optax.sgd(0.1), 0.9)
    >>> params = {"w": jnp.array([1.0])}
    >>> state = tx.init(params)
    >>> for _ in range(3):
    ...   updates, state = tx.update({"w": jnp.array([1.0])}, state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> round(float(fa.ema_params_of(state)["w"][0]), 5)   # as ema_params'
    0.79299

  References:
    docs/theory.md section 5; the EMA of Ahn & Cutkosky, NeurIPS 2024,
    https://arxiv.org/abs/2405.18199.
  """
  if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
    raise ValueError(
        "`optimizer` must be an optax GradientTransformation (init, update), "
        f"got {optimizer!r}.")
  return optax.chain(optimizer, ema_params(
      decay, power=power, debias=debias, warmup_power=warmup_power,
      warmup_gamma=warmup_gamma, min_decay=min_decay,
      update_after_step=update_after_step, every=every, source=source,
      ema_dtype=ema_dtype, name=name))
