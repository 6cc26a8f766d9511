"""Digests of user code, for the fingerprints of resumable results folders.

A results folder is resumed only by the same experiment.  When the experiment
runs a user's code (an adversary, a model, a loss), "the same" includes that
code: :func:`code_digest` hashes what a function computes with - its
bytecode, constants, names, default values, the values in its closure and the
module-level values it reads (functions recursively, to a bounded depth),
arrays by their bytes - so that editing the function, or a constant it
closes over, changes the digest, while rebuilding the same function in
another process does not.  Objects it cannot read (an open file, a lock)
contribute their type name only; pass an explicit ``version=`` to the
experiment when such state matters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
from typing import Any

import numpy as np

_MAX_DEPTH = 6


def _feed(h: "hashlib._Hash", obj: Any, depth: int, seen: set[int]) -> None:
  tag = type(obj).__name__
  h.update(tag.encode() + b"\0")
  if depth > _MAX_DEPTH:
    return
  if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
    h.update(repr(obj).encode() + b"\0")
    return
  if id(obj) in seen:
    h.update(b"<cycle>")
    return
  seen = seen | {id(obj)}
  if isinstance(obj, (list, tuple)):
    for x in obj:
      _feed(h, x, depth + 1, seen)
    return
  if isinstance(obj, dict):
    for k in sorted(obj, key=repr):
      _feed(h, k, depth + 1, seen)
      _feed(h, obj[k], depth + 1, seen)
    return
  if isinstance(obj, (np.ndarray, np.generic)) or hasattr(obj, "__array__") and hasattr(
      obj, "dtype") and hasattr(obj, "shape"):
    try:
      arr = np.asarray(obj)
    except Exception:  # pylint: disable=broad-except  # e.g. a tracer
      return
    h.update(str(arr.dtype).encode() + str(arr.shape).encode())
    if arr.dtype.kind in "biufcV":
      h.update(np.ascontiguousarray(arr).tobytes())
    return
  if isinstance(obj, types.CodeType):
    h.update(obj.co_code)
    _feed(h, obj.co_names, depth + 1, seen)
    _feed(h, obj.co_varnames, depth + 1, seen)
    for c in obj.co_consts:
      _feed(h, c, depth + 1, seen)
    return
  if isinstance(obj, types.FunctionType):
    # The qualified name and the code, not the module's name: the same file
    # imported under another name is the same code.
    h.update(obj.__qualname__.encode())
    _feed(h, obj.__code__, depth + 1, seen)
    _feed(h, obj.__defaults__, depth + 1, seen)
    _feed(h, obj.__kwdefaults__, depth + 1, seen)
    for cell in obj.__closure__ or ():
      try:
        _feed(h, cell.cell_contents, depth + 1, seen)
      except ValueError:  # an empty cell
        h.update(b"<empty>")
    glb = obj.__globals__
    for name in _global_names(obj.__code__):
      if name in glb and not isinstance(glb[name], types.ModuleType):
        h.update(name.encode())
        _feed(h, glb[name], depth + 1, seen)
    return
  if isinstance(obj, (types.MethodType, )):
    _feed(h, obj.__func__, depth + 1, seen)
    _feed(h, obj.__self__, depth + 1, seen)
    return
  if isinstance(obj, type):
    h.update(obj.__qualname__.encode())
    for name, v in sorted(vars(obj).items()):
      if isinstance(v, (types.FunctionType, staticmethod, classmethod)):
        h.update(name.encode())
        _feed(h, getattr(v, "__func__", v), depth + 1, seen)
    return
  if dataclasses.is_dataclass(obj):
    _feed(h, type(obj), depth + 1, seen)
    for f in dataclasses.fields(obj):
      h.update(f.name.encode())
      _feed(h, getattr(obj, f.name), depth + 1, seen)
    return
  if isinstance(obj, (types.BuiltinFunctionType, types.ModuleType)):
    h.update(getattr(obj, "__name__", "").encode())
    return
  if callable(obj) and hasattr(obj, "__dict__"):   # a callable object
    _feed(h, type(obj), depth + 1, seen)
    _feed(h, dict(vars(obj)), depth + 1, seen)
    return
  h.update(f"{type(obj).__module__}.{type(obj).__qualname__}".encode())


def _global_names(code: types.CodeType) -> list[str]:
  names = list(code.co_names)
  for c in code.co_consts:
    if isinstance(c, types.CodeType):
      names += _global_names(c)
  return sorted(set(names))


def code_digest(obj: Any) -> str:
  """A hex digest of a function (or callable object) and what it computes with.

  Example:
    >>> from ftrl_adam.lab.identity import code_digest
    >>> def f(x): return 2 * x
    >>> def g(x): return 3 * x
    >>> code_digest(f) == code_digest(f), code_digest(f) == code_digest(g)
    (True, False)
  """
  h = hashlib.sha256()
  _feed(h, obj, 0, set())
  return h.hexdigest()
