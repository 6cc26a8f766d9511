"""Digests of user code, for the fingerprints of resumable results folders.

A results folder is resumed only by the same experiment.  When the experiment
runs a user's code (an adversary, a model, a loss, an optimizer), "the same"
includes that code: :func:`code_digest` hashes what a function computes with,
so that editing the function, or a constant it closes over, changes the
digest, while rebuilding the same function in another process does not (no
memory address, no ``id``, no unordered iteration enters it).  It is the
package's one code hasher: the studies' task fingerprints use it too.

What is fed, by kind of object:

* numbers, strings, bytes, ``None``: their ``repr``;
* lists, tuples, dicts (keys sorted by ``repr``), sets (elements in the order
  of their own digests): item by item;
* arrays (NumPy, JAX, anything with ``__array__``, ``dtype`` and ``shape``):
  dtype, shape and bytes; a typed PRNG key by its key data;
* a function: its qualified name, bytecode, constants, names, defaults, the
  values in its closure and the module-level values it reads (functions and
  classes recursively, to a bounded depth) - except the code and globals of a
  function of an installed library (:data:`LIBRARIES`: JAX, NumPy, optax,
  Flax, ...), which stand for themselves by their module, qualified name and
  the library's version; its defaults and closure values are fed all the same
  (a closure made by ``optax`` or ``functools`` holds the user's values);
* ``functools.partial``: the function, its arguments and keywords;
* a bound method: its function and the object;
* a class: its qualified name and, for every class of its method resolution
  order that is not a library's, its methods (plain, static, class methods,
  properties) and its other non-dunder attributes;
* a dataclass instance (a Flax Linen module): its class and its fields;
* a Flax NNX ``Variable`` (an ``nnx.Param``): its type and its value; an NNX
  object (a module, ``nnx.Rngs``) and any other callable object with a
  ``__dict__``: its class and its attributes (graph structure, parameters,
  static attributes and the functions it holds);
* anything else (an open file, a lock, a device): its type's name only; pass
  an explicit version to the experiment (its ``config``) when such state
  matters.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import sys
import types
from typing import Any, Callable

import numpy as np

_MAX_DEPTH = 8

#: Top-level packages whose code is fixed by their installed version: a
#: function or class of theirs is fed by name and version, not by its code.
LIBRARIES = frozenset({
    "builtins", "abc", "typing", "types", "functools", "collections",
    "dataclasses", "enum", "math", "operator", "itertools", "numbers",
    "numpy", "ml_dtypes", "scipy", "sklearn", "jax", "jaxlib", "optax",
    "chex", "flax", "orbax", "equinox", "opt_einsum", "_operator",
    "_functools", "_collections_abc"})

_VERSIONS: dict[str, str] = {}


def _library(module: Any) -> str:
  """The library's top-level package name if ``module`` is one, else ``""``."""
  top = (module or "").split(".")[0] if isinstance(module, str) else ""
  return top if top in LIBRARIES else ""


def _version(package: str) -> str:
  if package not in _VERSIONS:
    try:
      _VERSIONS[package] = importlib.metadata.version(package)
    except (importlib.metadata.PackageNotFoundError, ValueError):
      _VERSIONS[package] = sys.version.split()[0]   # the standard library
  return _VERSIONS[package]


class _Hasher:
  """Feeds objects into one sha256; ``seen`` guards against cycles per path."""

  def __init__(self):
    self.h = hashlib.sha256()

  def put(self, *items: Any) -> None:
    for item in items:
      self.h.update((item if isinstance(item, bytes) else str(item).encode())
                    + b"\0")

  def feed(self, obj: Any, depth: int = 0, seen: frozenset = frozenset()
           ) -> None:
    self.put(type(obj).__name__)
    if depth > _MAX_DEPTH:
      return
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
      self.put(repr(obj))
      return
    if id(obj) in seen:
      self.put("<cycle>")
      return
    seen = seen | {id(obj)}
    for test, feeder in _FEEDERS:
      if test(obj):
        feeder(self, obj, depth + 1, seen)
        return
    self.put(f"{type(obj).__module__}.{type(obj).__qualname__}")


def _items(hasher: _Hasher, items: Any, depth: int, seen: frozenset) -> None:
  for x in items:
    hasher.feed(x, depth, seen)


def _feed_dict(hasher: _Hasher, obj: dict, depth: int, seen: frozenset) -> None:
  for k in sorted(obj, key=repr):
    hasher.feed(k, depth, seen)
    hasher.feed(obj[k], depth, seen)


def _feed_set(hasher: _Hasher, obj: Any, depth: int, seen: frozenset) -> None:
  digests = []
  for x in obj:
    sub = _Hasher()
    sub.feed(x, depth, seen)
    digests.append(sub.h.hexdigest())
  hasher.put(*sorted(digests))


def _is_array(obj: Any) -> bool:
  return isinstance(obj, (np.ndarray, np.generic)) or (
      hasattr(obj, "__array__") and hasattr(obj, "dtype")
      and hasattr(obj, "shape") and not isinstance(obj, type))


def _feed_array(hasher: _Hasher, obj: Any, depth: int, seen: frozenset) -> None:
  del depth, seen
  jax = sys.modules.get("jax")
  if jax is not None and jax.dtypes.issubdtype(getattr(obj, "dtype", None),
                                               jax.dtypes.prng_key):
    hasher.put(str(obj.dtype))
    obj = jax.random.key_data(obj)
  try:
    arr = np.asarray(obj)
  except Exception:  # pylint: disable=broad-except  # e.g. a tracer
    return
  hasher.put(str(arr.dtype), str(arr.shape))
  if arr.dtype.kind in "biufcV":
    hasher.put(np.ascontiguousarray(arr).tobytes())


def _global_names(code: types.CodeType) -> list[str]:
  names = list(code.co_names)
  for c in code.co_consts:
    if isinstance(c, types.CodeType):
      names += _global_names(c)
  return sorted(set(names))


def _feed_code(hasher: _Hasher, obj: types.CodeType, depth: int,
               seen: frozenset) -> None:
  hasher.put(obj.co_code)
  hasher.feed(obj.co_names, depth, seen)
  hasher.feed(obj.co_varnames, depth, seen)
  _items(hasher, obj.co_consts, depth, seen)


def _feed_function(hasher: _Hasher, obj: types.FunctionType, depth: int,
                   seen: frozenset) -> None:
  # The qualified name and the code, not the module's name: the same file
  # imported under another name is the same code.  A library's function is
  # its name and version (its code and globals come with the version).
  library = _library(obj.__module__)
  hasher.put(obj.__qualname__)
  if library:
    hasher.put(obj.__module__, _version(library))
  else:
    hasher.feed(obj.__code__, depth, seen)
  hasher.feed(obj.__defaults__, depth, seen)
  hasher.feed(obj.__kwdefaults__, depth, seen)
  for cell in obj.__closure__ or ():
    try:
      hasher.feed(cell.cell_contents, depth, seen)
    except ValueError:  # an empty cell
      hasher.put("<empty>")
  if library:
    return
  glb = obj.__globals__
  for name in _global_names(obj.__code__):
    if name in glb and not isinstance(glb[name], types.ModuleType):
      hasher.put(name)
      hasher.feed(glb[name], depth, seen)


def _feed_partial(hasher: _Hasher, obj: functools.partial, depth: int,
                  seen: frozenset) -> None:
  hasher.feed(obj.func, depth, seen)
  hasher.feed(obj.args, depth, seen)
  hasher.feed(obj.keywords, depth, seen)


def _feed_method(hasher: _Hasher, obj: types.MethodType, depth: int,
                 seen: frozenset) -> None:
  hasher.feed(obj.__func__, depth, seen)
  hasher.feed(obj.__self__, depth, seen)


def _class_attribute(value: Any) -> Any:
  if isinstance(value, (staticmethod, classmethod)):
    return value.__func__
  if isinstance(value, property):
    return (value.fget, value.fset, value.fdel)
  return value


def _feed_class(hasher: _Hasher, obj: type, depth: int, seen: frozenset) -> None:
  hasher.put(obj.__qualname__)
  library = _library(getattr(obj, "__module__", ""))
  if library:
    hasher.put(obj.__module__, _version(library))
  for klass in obj.__mro__:
    if _library(getattr(klass, "__module__", "")):
      continue
    hasher.put(f"class {klass.__qualname__}")
    for name, value in sorted(vars(klass).items()):
      value = _class_attribute(value)
      if name.startswith("__") and name.endswith("__") and not (
          isinstance(value, types.FunctionType)):
        continue   # __module__, __dict__, __doc__, __slots__ ...
      hasher.put(name)
      hasher.feed(value, depth, seen)


def _feed_dataclass(hasher: _Hasher, obj: Any, depth: int,
                    seen: frozenset) -> None:
  hasher.feed(type(obj), depth, seen)
  for f in dataclasses.fields(obj):
    hasher.put(f.name)
    hasher.feed(getattr(obj, f.name), depth, seen)


def _nnx_class(name: str) -> Any:
  nnx = sys.modules.get("flax.nnx")   # loaded if the user made an NNX object
  return getattr(nnx, name, None) if nnx is not None else None


def _is_nnx_variable(obj: Any) -> bool:
  cls = _nnx_class("Variable")
  return cls is not None and isinstance(obj, cls)


def _feed_nnx_variable(hasher: _Hasher, obj: Any, depth: int,
                       seen: frozenset) -> None:
  hasher.put(f"{type(obj).__module__}.{type(obj).__qualname__}")
  get = getattr(obj, "get_value", None)
  hasher.feed(get() if get is not None else obj.value, depth, seen)


def _is_object_with_state(obj: Any) -> bool:
  pytree = _nnx_class("Pytree") or _nnx_class("Object")
  if pytree is not None and isinstance(obj, pytree):
    return True
  return callable(obj) and hasattr(obj, "__dict__")


def _feed_object(hasher: _Hasher, obj: Any, depth: int, seen: frozenset) -> None:
  hasher.feed(type(obj), depth, seen)
  hasher.feed(dict(vars(obj)), depth, seen)


def _feed_named(hasher: _Hasher, obj: Any, depth: int, seen: frozenset) -> None:
  del depth, seen
  hasher.put(getattr(obj, "__module__", "") or "",
             getattr(obj, "__qualname__", getattr(obj, "__name__", "")))


_FEEDERS: tuple[tuple[Callable[[Any], bool], Callable[..., None]], ...] = (
    (lambda o: isinstance(o, (list, tuple)), _items),
    (lambda o: isinstance(o, dict), _feed_dict),
    (lambda o: isinstance(o, (set, frozenset)), _feed_set),
    (_is_nnx_variable, _feed_nnx_variable),   # before arrays: it has a dtype
    (_is_array, _feed_array),
    (lambda o: isinstance(o, types.CodeType), _feed_code),
    (lambda o: isinstance(o, types.FunctionType), _feed_function),
    (lambda o: isinstance(o, functools.partial), _feed_partial),
    (lambda o: isinstance(o, types.MethodType), _feed_method),
    (lambda o: isinstance(o, type), _feed_class),
    (lambda o: dataclasses.is_dataclass(o), _feed_dataclass),
    (lambda o: isinstance(o, (types.BuiltinFunctionType, types.ModuleType)),
     _feed_named),
    (_is_object_with_state, _feed_object),
)


def code_digest(obj: Any) -> str:
  """A hex digest of a function (or any object) and what it computes with.

  The rules, per kind of object, are in the module docstring: user code by
  its bytecode, constants, closure and the globals it reads; a library's
  functions by name and version; arrays by their bytes; Flax modules by
  their class, fields, attributes and variables.  No memory address enters
  it, so the same object built in another process has the same digest.

  Args:
    obj: a function, a callable object, a Flax module, a tuple of such and
      arrays... anything.

  Returns:
    The sha256 hex digest (64 characters).

  Example:
    >>> import functools
    >>> from ftrl_adam.lab.identity import code_digest
    >>> def f(x, k=2): return k * x
    >>> def g(x, k=2): return k * x + 1
    >>> code_digest(f) == code_digest(f), code_digest(f) == code_digest(g)
    (True, False)
    >>> code_digest(functools.partial(f, k=3)) == code_digest(
    ...     functools.partial(f, k=4))
    False
  """
  hasher = _Hasher()
  hasher.feed(obj)
  return hasher.h.hexdigest()
