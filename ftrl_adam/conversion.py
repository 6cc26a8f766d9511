"""Online-to-nonconvex conversion with random scaling, as an optax transform.

Ahn & Cutkosky (NeurIPS 2024, arXiv:2405.18199), docs/theory.md section 4 [R]: an
online learner plays updates delta_t; the model iterate is w_t and the gradient
is taken at a random point of the segment [w_{t-1}, w_t]:

    for t = 1..T:
        delta_t = learner's play (built from g_1..g_{t-1}; delta_1 = 0)
        base = w_{t-1};  w_t = base + delta_t            # model iterate
        s_t ~ Uniform[0, 1) (one scalar per step);  y_t = base + s_t delta_t
        g_t = gradient at y_t;  the learner sees g_t and plays delta_{t+1}

``scaling="exponential"`` is the variant of Zhang & Cutkosky (ICML 2024,
arXiv:2405.09742): s_t ~ Exp(1) and ``w_t = w_{t-1} + s_t delta_t = y_t``.
``scaling="none"`` fixes s_t = 1: y_t = w_t and the updates are the learner's
own, unchanged, so the loop follows the plain learner's trajectory (for
ablations and tests).

**Indexing in the training loop [D].**  The parameters the loop holds and
differentiates are the gradient points y_t; ``init(x_0)`` makes y_1 = w_0 = x_0
(an optax learner has no play before its first gradient, so delta_1 = 0, as for
FTRL-Adam, docs/theory.md section 2).  The n-th call of ``update`` receives g_n (taken
at y_n), asks the learner for delta_{n+1}, draws s_{n+1}, and returns

    updates = y_{n+1} - y_n = (c_n - s_n) delta_n + s_{n+1} delta_{n+1},

with c = 1 (uniform, none) or c = s (exponential), so that
``params + updates = y_{n+1}``.  The updates are computed from the state alone,
never as a difference with ``params``, so with s = 1 they are the learner's
plays exactly (the loop's params, x_0 plus the sum of the updates, may differ
from w_n + s_{n+1} delta_{n+1} by float rounding; the state does not depend on
them).  After n updates the state holds the iterate w_{n+1} (the end of
the segment the loop's params lie on) with s_{n+1} and delta_{n+1};
:func:`nonconvex_iterate` returns w_{n+1}.  With ``ema_params(beta,
source="gradient_point")`` after it, the EMA is the paper's output
ybar_n = (1 - beta) / (1 - beta**n) sum_{s<=n} beta**(n-s) y_s.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from ftrl_adam import _checks
from ftrl_adam import _numerics
from ftrl_adam import _state_search

_is_none = _numerics.is_none

SCALINGS = ("uniform", "exponential", "none")


class OnlineToNonconvexState(NamedTuple):
  """State of :func:`online_to_nonconvex`, after n = ``count`` updates.

  Attributes:
    count: number of gradients seen n, int32, saturating.
    key: the base PRNG key as raw ``uint32`` key data (checkpointable);
      s_t is drawn from ``fold_in(key, t - 1)``.
    scale: s_{n+1}, float32, the scale of the point the loop now holds.
    play: delta_{n+1}, the learner's latest play, a tree like the params.
    iterate: w_{n+1} = w_n + c delta_{n+1}, the model iterate (params dtype).
    inner_state: the learner's state.
  """

  count: jax.Array
  key: jax.Array
  scale: jax.Array
  play: optax.Updates
  iterate: optax.Params
  inner_state: optax.OptState


def _key_data_and_impl(key: Any) -> tuple[jax.Array, Optional[str]]:
  """(raw uint32 key data, impl name or None for the default impl)."""
  if key is None:
    raise ValueError(
        "`key` must be a JAX PRNG key (jax.random.key(seed)), got None.")
  dtype = getattr(key, "dtype", None)
  if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
    if key.shape != ():
      raise ValueError(
          f"`key` must be a single PRNG key (shape ()), got shape {key.shape}.")
    return jax.random.key_data(key), str(jax.random.key_impl(key))
  arr = jnp.asarray(key) if dtype is not None else None
  if arr is None or arr.dtype != jnp.uint32 or arr.ndim != 1:
    raise ValueError(
        "`key` must be a JAX PRNG key (jax.random.key(seed)) or raw uint32 "
        f"key data (jax.random.PRNGKey(seed)), got {key!r}.")
  return arr, None


def _draw(key_data, impl, t_minus_1, scaling):
  """s_t from fold_in(key, t - 1), float32 scalar."""
  if scaling == "none":
    return jnp.ones([], jnp.float32)
  key = jax.random.wrap_key_data(key_data, impl=impl) if impl else (
      jax.random.wrap_key_data(key_data))
  key = jax.random.fold_in(key, t_minus_1)
  if scaling == "uniform":
    return jax.random.uniform(key, (), jnp.float32)
  return jax.random.exponential(key, (), jnp.float32)


def _scaled_updates(scaling, delta, old_delta, old_scale, s):
  """(the update returned, the step of the learner's iterate) for ``scaling``.

  uniform: (1 - s_n) delta_n + s_{n+1} delta_{n+1}, the iterate moves by
  delta; exponential: s delta both; none: delta both (docs/theory.md 4).
  """
  if scaling == "none":
    return delta, delta
  if scaling == "exponential":
    out = jax.tree.map(
        lambda d: None if d is None else (s * d).astype(d.dtype),
        delta, is_leaf=_is_none)
    return out, out
  carry = 1.0 - old_scale

  def combine(d_old, d):
    if d is None:
      return None
    ct = jnp.promote_types(d.dtype, jnp.float32)
    return (carry * d_old.astype(ct) + s * d.astype(ct)).astype(d.dtype)

  return jax.tree.map(combine, old_delta, delta, is_leaf=_is_none), delta


def online_to_nonconvex(
    learner: optax.GradientTransformation,
    *,
    key: Any,
    scaling: str = "uniform",
    name: Optional[str] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Online-to-nonconvex conversion: gradients at random points of each step.

  Wraps an online ``learner`` (any optax transform mapping a gradient to an
  update; Ahn & Cutkosky use clipped FTRL-Adam) so that the parameters the
  training loop holds, and differentiates at, are the random points

      y_t = w_{t-1} + s_t delta_t,     w_t = w_{t-1} + delta_t,

  with one scalar s_t ~ Uniform[0, 1) per step (docs/theory.md section 4 [R]).  The
  indexing is in the module docstring: ``params + updates = y_{n+1}`` after the
  n-th update, and :func:`nonconvex_iterate` returns the iterate w_{n+1}.

  Args:
    learner: an ``optax.GradientTransformation``; its update at g_n is the play
      delta_{n+1}.  It receives the loop's ``params`` (the point y_n) and any
      extra arguments.
    key: a PRNG key (typed ``jax.random.key`` or raw ``jax.random.PRNGKey``);
      stored in the state as raw uint32 data, so the state checkpoints with
      Orbax and the same key gives the same trajectory.
    scaling: ``"uniform"`` (s ~ U[0, 1), Ahn & Cutkosky), ``"exponential"``
      (s ~ Exp(1) and w_t = y_t, Zhang & Cutkosky) or ``"none"`` (s = 1: the
      learner's updates are returned unchanged).
    name: optional name for :func:`nonconvex_iterate` when a state holds
      several conversions; the state is then ``{name: OnlineToNonconvexState}``.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose state is an
    :class:`OnlineToNonconvexState`.

  Raises:
    ValueError: an unknown ``scaling``, a missing or malformed ``key``, or a
      ``learner`` that is not an optax transform.

  Example:
    >>> import jax, jax.numpy as jnp, optax, ftrl_adam as fa
    >>> tx = fa.online_to_nonconvex(optax.sgd(0.1), key=jax.random.key(0))
    >>> params = {"w": jnp.array([1.0])}
    >>> state = tx.init(params)
    >>> for _ in range(3):
    ...   grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
    ...   updates, state = tx.update(grads, state, params)
    ...   params = optax.apply_updates(params, updates)   # y_{n+1}
    >>> w_prev = fa.nonconvex_iterate(state)["w"] - state.play["w"]
    >>> bool(jnp.allclose(params["w"], w_prev + state.scale * state.play["w"]))
    True

  References:
    Ahn & Cutkosky, *Adam with model exponential moving average is effective
    for nonconvex optimization*, NeurIPS 2024, https://arxiv.org/abs/2405.18199.
    Zhang & Cutkosky, *Random Scaling and Momentum for Non-smooth Non-convex
    Optimization*, ICML 2024, https://arxiv.org/abs/2405.09742.
    Cutkosky, Mehta & Orabona, *Optimal Stochastic Non-smooth Non-convex
    Optimization through Online-to-Non-convex Conversion*, ICML 2023,
    https://arxiv.org/abs/2302.03775.
  """
  if not (hasattr(learner, "init") and hasattr(learner, "update")):
    raise ValueError(
        "`learner` must be an optax GradientTransformation (init, update), "
        f"got {learner!r}.")
  _checks.check_choice("scaling", scaling, SCALINGS)
  if name is not None and not isinstance(name, str):
    raise ValueError(f"`name` must be a string or None, got {name!r}.")
  key_data, impl = _key_data_and_impl(key)
  learner = optax.with_extra_args_support(learner)

  def wrap(state):
    return state if name is None else {name: state}

  def unwrap(state):
    return state if name is None else state[name]

  def init_fn(params):
    play = jax.tree.map(
        lambda p: None if p is None else _numerics.zeros_like(p),
        params, is_leaf=_is_none)

    def copy(p):
      if isinstance(p, jax.ShapeDtypeStruct):
        return _numerics.zeros_like(p)   # shapes only: no values to copy
      return jnp.array(p, dtype=_numerics.leaf_dtype(p), copy=True)

    iterate = jax.tree.map(lambda p: None if p is None else copy(p),
                           params, is_leaf=_is_none)
    # The count, key and scale are placed like the params (committed or
    # not), so a jitted loop compiles once.
    data = _numerics.scalar_like(params, key_data, jnp.uint32)
    count = _numerics.scalar_like(params, 0, jnp.int32)
    scale = _draw(data, impl, jnp.zeros([], jnp.int32), scaling)
    return wrap(OnlineToNonconvexState(
        count=count,
        key=data,
        scale=_numerics.scalar_like(params, scale, jnp.float32),
        play=play,
        iterate=iterate,
        inner_state=learner.init(params)))

  def update_fn(updates, state, params=None, **extra_args):
    state = unwrap(state)
    delta, inner_state = learner.update(
        updates, state.inner_state, params, **extra_args)
    count = optax.safe_increment(state.count)
    s = _draw(state.key, impl, count, scaling)          # s_{n+1}

    out, step = _scaled_updates(scaling, delta, state.play, state.scale, s)
    iterate = optax.apply_updates(state.iterate, step)
    play = optax.tree.cast_like(delta, state.play)
    return out, wrap(OnlineToNonconvexState(
        count=count, key=state.key, scale=s, play=play, iterate=iterate,
        inner_state=inner_state))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def nonconvex_iterate(opt_state: Any, name: Optional[str] = None) -> optax.Params:
  """Returns the model iterate w kept by :func:`online_to_nonconvex`.

  After n updates this is w_{n+1}, the end of the segment [w_n, w_{n+1}] on
  which the loop's current params y_{n+1} lie (with ``scaling="exponential"``
  or ``"none"`` it equals them).  Found by type
  (:class:`OnlineToNonconvexState`) in any nested state, like
  :func:`ftrl_adam.ema_params_of`.

  Args:
    opt_state: a pytree holding the conversion's state (an optax state, a
      Linen ``TrainState``, an ``nnx.Optimizer`` or its ``opt_state``).
    name: the name given by ``online_to_nonconvex(..., name=...)`` or a
      ``named_chain`` key, to choose among several.

  Returns:
    The iterate, a tree like the params.

  Example:
    >>> import jax, jax.numpy as jnp, optax, ftrl_adam as fa
    >>> tx = fa.online_to_nonconvex(optax.sgd(1.0), key=jax.random.key(0),
    ...                             scaling="none")
    >>> params = jnp.array([1.0])
    >>> state = tx.init(params)
    >>> updates, state = tx.update(jnp.array([0.5]), state, params)
    >>> fa.nonconvex_iterate(state).tolist()
    [0.5]
    >>> optax.apply_updates(params, updates).tolist()  # sgd: 1.0 - 0.5
    [0.5]
  """
  state = _state_search.find_state(
      opt_state, OnlineToNonconvexState, name, "online_to_nonconvex")
  return _state_search.unwrap_variables(_state_search.field(state, "iterate"))
