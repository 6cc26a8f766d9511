"""Finding a transform's state by type inside any nested optimizer state (private).

Shared by :func:`ftrl_adam.ema_params_of` and
:func:`ftrl_adam.nonconvex_iterate`.  Evaluation helpers that ``getattr`` on the
top-level state break as soon as the transform sits inside ``optax.chain``,
so the state is searched by type in the whole pytree instead:
through ``optax.chain``, ``named_chain``, ``masked``, ``inject_hyperparams``,
``MultiSteps``, a Flax Linen ``TrainState`` or an ``nnx.Optimizer``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Optional

import jax


def _variable_type() -> Optional[type]:
  """flax.nnx.Variable if flax.nnx is loaded (no import otherwise)."""
  nnx = sys.modules.get("flax.nnx")
  return None if nnx is None else getattr(nnx, "Variable", None)


def unwrap_variables(tree: Any) -> Any:
  """Replaces flax.nnx Variables (e.g. ``nnx.OptVariable``) by their values.

  ``nnx.Optimizer`` stores the optax state with every array wrapped in an
  ``OptState`` Variable; callers want plain arrays.  Containers (``nnx.State``,
  dicts) are kept, so the result can be given to ``nnx.update``.
  """
  variable = _variable_type()
  if variable is None:
    return tree

  def unwrap(x):
    if isinstance(x, variable):
      return x.get_value() if hasattr(x, "get_value") else x.value
    return x

  return jax.tree.map(unwrap, tree, is_leaf=lambda x: isinstance(x, variable))


def _state_name(path: tuple[Any, ...]) -> Optional[str]:
  """The name of a state: the dict key directly above it, if any.

  ``ema_params(..., name="slow")`` stores its state as ``{"slow": state}``, and
  ``optax.named_chain`` stores ``{name: state}``; both give the name here.
  """
  if path and isinstance(path[-1], jax.tree_util.DictKey):
    key = path[-1].key
    return key if isinstance(key, str) else None
  return None


def _is_state_dict(x: Any, cls: type) -> bool:
  """A mapping with the fields of the NamedTuple ``cls``.

  ``nnx.state(optimizer)`` and an Orbax restore without a target turn optax's
  NamedTuple states into such dicts (field name -> value); a field that
  defaults to None and holds None (an empty subtree) may be left out.
  """
  if not isinstance(x, Mapping):
    return False
  try:
    keys = set(x.keys())
  except TypeError:  # pragma: no cover - unhashable keys
    return False
  return set(cls._fields) - set(cls._field_defaults) <= keys <= set(cls._fields)


def field(state: Any, name: str) -> Any:
  """A field of a state found by :func:`find_state` (NamedTuple or dict form)."""
  if isinstance(state, Mapping):
    return state.get(name)   # None: a None field left out of the dict form
  return getattr(state, name)


def find_state(tree: Any, cls: type, name: Optional[str], factory: str) -> Any:
  """The unique instance of ``cls`` in ``tree``, searched by type.

  Works through ``optax.chain``, ``named_chain``, ``masked``,
  ``inject_hyperparams``, ``MultiSteps``, flax ``TrainState``, ``nnx.Optimizer``
  and its ``opt_state``: anything that is a pytree.  The state-dict form of
  ``cls`` (see :func:`_is_state_dict`) is recognised too.

  Args:
    tree: any pytree holding the state.
    cls: the NamedTuple state class to find.
    name: None, or the name (the dict key above the state) to choose among
      several.
    factory: the public factory that makes ``cls``, for the error messages.

  Returns:
    The state (a ``cls`` instance or its dict form).

  Raises:
    ValueError: none found, several and no ``name``, or ``name`` not found.
  """
  if name is not None and not isinstance(name, str):
    raise ValueError(f"`name` must be a string or None, got {name!r}.")
  match = lambda x: isinstance(x, cls) or _is_state_dict(x, cls)  # noqa: E731
  hits = []
  flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=match)
  for path, leaf in flat:
    if match(leaf):
      hits.append((_state_name(path), jax.tree_util.keystr(path), leaf))
  if not hits:
    raise ValueError(
        f"No {cls.__name__} found in the optimizer state (searched by type): "
        f"put `ftrl_adam.{factory}(...)` in the optax chain that built it.")
  if name is not None:
    chosen = [h for h in hits if h[0] == name]
    if len(chosen) != 1:
      names = sorted({repr(h[0]) for h in hits})
      raise ValueError(
          f"{len(chosen)} {cls.__name__} named {name!r} in the optimizer "
          f"state; the names found are {', '.join(names)} (None = unnamed).")
    return chosen[0][2]
  if len(hits) > 1:
    where = "; ".join(f"name={h[0]!r} at state{h[1]}" for h in hits)
    raise ValueError(
        f"Found {len(hits)} {cls.__name__} in the optimizer state ({where}): "
        f"pass `name=` to choose one (name each with "
        f"`ftrl_adam.{factory}(..., name=...)` or `optax.named_chain`).")
  return hits[0][2]
