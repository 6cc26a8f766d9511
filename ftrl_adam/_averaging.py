"""The parameter-averaging step shared by the EMA transforms (private).

:func:`ftrl_adam.ema_params` and :func:`ftrl_adam.posthoc_ema_params` keep
averages of the parameters; this module holds the one copy of what they share
(docs/theory.md section 5):

* :func:`averaged_point` - the point x_n averaged at step n: the parameters
  the loop holds after the step (``params + updates``, rounded to the params'
  dtype as the loop stores them) or the ``params`` given to ``update``;
* :func:`init_average` - the average's initial tree: a copy of the params in
  the average's dtype (zeros for ``jax.ShapeDtypeStruct`` params);
* :func:`power_decay` - Karras' power-profile decay ``gamma_m = (1 - 1/m) **
  (1 + p)`` and its complement ``1 - gamma_m``, accurate at any m;
* :func:`blend` - the EMA step ``ybar + w (x - ybar)``, exactly ``x`` when
  ``w = 1``;
* :func:`check_last` - the check that an EMA's state does not come before a
  transform that changes the updates in an ``optax.chain`` (an EMA averages
  ``params + updates``, so it must see the final updates).

Data flows one way: a transform calls :func:`averaged_point`, then
:func:`power_decay` (or its own decay) and :func:`blend` per leaf; the
readers (``ema_params_of``, ``posthoc_emas_of``) call :func:`check_last`.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from ftrl_adam import _numerics

SOURCES = ("updated", "gradient_point")


def averaged_point(updates: Any, params: Any, source: str,
                   factory: str) -> Any:
  """The point x_n an EMA averages at this step.

  Args:
    updates: the (final) updates of the step.
    params: the params given to ``update``; required.
    source: ``"updated"``: ``optax.apply_updates(params, updates)``, rounded
      to the params' dtype explicitly (:func:`ftrl_adam._numerics.as_held`);
      ``"gradient_point"``: ``params``.
    factory: the public factory, for the error message.

  Raises:
    ValueError: ``params`` is None.
  """
  if params is None:
    raise ValueError(
        f"`{factory}` needs `params` in `update(updates, state, params)`: it "
        "averages the parameters (pass them, as nnx.Optimizer and "
        "TrainState.apply_gradients do).")
  if source == "gradient_point":
    return params
  return jax.tree.map(_numerics.as_held, optax.apply_updates(params, updates),
                      is_leaf=_numerics.is_none)


def init_average(params: Any, ema_dtype: Optional[Any]) -> Any:
  """A copy of ``params`` in ``ema_dtype`` (default: promoted to float32).

  ``None`` leaves stay ``None``; a ``jax.ShapeDtypeStruct`` gives zeros of
  its shape placed like it (shapes only: there are no values to copy).
  """
  def copy(p):
    if p is None:
      return None
    dt = (jnp.dtype(ema_dtype) if ema_dtype is not None
          else jnp.promote_types(_numerics.leaf_dtype(p), jnp.float32))
    if isinstance(p, jax.ShapeDtypeStruct):
      return _numerics.zeros_like(p, dt)
    return jnp.array(p, dtype=dt, copy=True)
  return jax.tree.map(copy, params, is_leaf=_numerics.is_none)


def power_decay(m: jax.Array, power: Any) -> tuple[jax.Array, jax.Array]:
  """(gamma_m, 1 - gamma_m) of Karras' power profile, float32.

  ``gamma_m = (1 - 1/m) ** (1 + power)`` at the m-th EMA update (m >= 1,
  int32), so gamma_1 = 0 [P, Karras et al. 2024].  ``1 - gamma`` is computed
  as ``-expm1((1 + p) log1p(-1/m))``: accurate however long the run
  (``1 - (1 - 1/m) ** (1 + p)`` in float32 loses 1.3% at m = 1e6,
  p = 6.94) [D].
  """
  m = m.astype(jnp.float32)
  log_g = (1.0 + power) * jnp.log1p(-1.0 / m)
  return jnp.exp(log_g), -jnp.expm1(log_g)


def blend(ema: Any, x: Any, w: jax.Array,
          active: Optional[jax.Array] = None) -> Any:
  """One leaf's EMA step ``ema + w (x - ema)`` in float32 at least.

  Exactly ``x`` (cast to the EMA's dtype) where ``w >= 1``; the old value
  where ``active`` is False.  ``None`` stays ``None``.
  """
  if ema is None:
    return None
  ct = jnp.promote_types(ema.dtype, jnp.float32)
  e = ema.astype(ct)
  xc = jnp.asarray(x).astype(ct)
  new = jnp.where(w >= 1.0, xc, e + w.astype(ct) * (xc - e))
  if active is not None:
    new = jnp.where(active, new, e)
  return new.astype(ema.dtype)


# ----------------------------------------------------------------------------
# The EMA must be last in its chain.
# ----------------------------------------------------------------------------


def _passes_through(x: Any) -> bool:
  """A state of a transform that returns its updates unchanged."""
  return getattr(type(x), "passes_updates_through", False) is True


def _position(key: Any) -> Optional[int]:
  """The index of an ordered container's child (a chain's tuple), else None."""
  if isinstance(key, jax.tree_util.SequenceKey):
    return key.idx
  if isinstance(key, jax.tree_util.DictKey) and isinstance(key.key, int):
    return key.key   # the int-keyed form of a tuple (nnx.State)
  return None


def _later_element(path: tuple, target: tuple) -> Optional[tuple]:
  """The path of the chain element that holds ``path`` if it comes after the
  element holding ``target`` in a tuple both lie in, else None."""
  for i, (a, b) in enumerate(zip(path, target, strict=False)):
    if a == b:
      continue
    pa, pb = _position(a), _position(b)
    if pa is not None and pb is not None and pa > pb:
      return path[:i + 1]
    return None
  return None


def check_last(opt_state: Any, cls: type, factory: str, wrapper: str) -> None:
  """Refuses a ``cls`` state that comes before an update-changing transform.

  In an ``optax.chain`` the state is a tuple in the order of the transforms,
  so an EMA whose state is followed, in a tuple it lies in, by the state of a
  stateful transform (a NamedTuple state holding arrays, e.g. FTRL-Adam's
  moments) averaged ``params`` plus updates that were not final - with
  ``chain(ema_params(...), ftrl_adam(...))``, params + gradient.  Other
  states that pass the updates through (their class has
  ``passes_updates_through = True``: the EMAs) may follow.  Stateless
  transforms (``optax.scale``) leave nothing in the state to see; the
  dict form of a state (a restored checkpoint) carries no order and is not
  checked.

  Raises:
    ValueError: naming both states' places and the fix.
  """
  flat, _ = jax.tree_util.tree_flatten_with_path(opt_state,
                                                 is_leaf=_passes_through)
  targets = [p for p, x in flat if isinstance(x, cls)]
  for target in targets:
    passing, changing = set(), {}
    for path, leaf in flat:
      element = _later_element(path, target)
      if element is None:
        continue
      if _passes_through(leaf):
        passing.add(element)
      elif hasattr(leaf, "shape") and any(
          isinstance(k, jax.tree_util.GetAttrKey) for k in path[len(element):]):
        changing.setdefault(element, path)
    for element in changing:
      if element in passing:   # e.g. an injected or masked EMA after this one
        continue
      raise ValueError(
          f"The {cls.__name__} at state{jax.tree_util.keystr(target)} comes "
          "before a transform that changes the updates (state"
          f"{jax.tree_util.keystr(element)}) in its optax.chain: `{factory}` "
          "averages params + updates, so it must be the last transform of "
          "the chain, after the updates are final (here it averaged params "
          f"plus an unfinished update, e.g. the gradient).  Use "
          f"`ftrl_adam.{wrapper}(optimizer, ...)`, or put `{factory}(...)` "
          "last in the chain.")
