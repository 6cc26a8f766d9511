"""A few entries of a function's outputs without materialising them (private).

The regret monitor needs k entries of the update a wrapped optax transform
returns (``ravel(update)[idx]``).  Under ``jit``, gathering them from the
update itself makes XLA compute the whole update into memory, because the
update then has two consumers (the caller's ``apply_updates`` and the gather)
and XLA will not duplicate its expensive element-wise ops (divide, sqrt) into
both.  The step then makes two or three extra passes over the parameters
(measured 2.4x the plain step on 16M parameters, ``ftrl-adam bench step``).

:func:`gather_outputs` instead traces the function to a jaxpr and pushes the
gather through it (a rewrite derived here): the gathered value of an
element-wise equation is the equation applied to the gathered values of its
array operands (scalar operands taken whole), a scalar broadcast gathers to a
broadcast of length k, and a nested ``jit`` is entered.  The push stops at
the function's inputs and at its other outputs (the new optimizer state): a
gather of the old state, which the step overwrites in place when it is
donated, would make XLA copy it first, while the new state is written
anyway.  Any other equation (a reduction, a reshape, a custom-derivative
call, ...) is a frontier too: its output is computed whole (as the function
computes it; XLA shares it with the real call by common-subexpression
elimination) and gathered there.  Reductions over all parameters (a global
norm) end up as scalars, which are always taken whole, so
``clip_by_global_norm`` chains push down too.

The result equals ``ravel(fn(*args)[i])[idx]`` entry for entry for float32
and float64 outputs: the same element-wise operations on the same operand
values (tested bit for bit against the update's entries for ``ftrl_adam``,
``optax.adam``, a clipped ``adamw`` chain, Nesterov SGD and
``inject_hyperparams``).  For 16-bit outputs XLA may keep intermediates in
float32 in one program and not in the other (its "excess precision"), so
entries can differ by one step of the 16-bit type.  It only rebinds
equations the function itself traced, so nothing is re-implemented.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

# Primitives whose output entry i depends only on entry i of each operand
# (operands of the output's shape or scalars).  Names, as jaxprs print them.
ELEMENTWISE = frozenset({
    "abs", "acos", "acosh", "add", "and", "asin", "asinh", "atan", "atan2",
    "atanh", "cbrt", "ceil", "clamp", "convert_element_type", "copy", "copy_p",
    "cos", "cosh", "div", "eq", "erf", "erf_inv", "erfc", "exp", "exp2",
    "expm1", "floor", "ge", "gt", "imag", "integer_pow", "is_finite", "le",
    "log", "log1p", "logistic", "lt", "max", "min", "mul", "ne", "neg",
    "nextafter", "not", "or", "pow", "real", "reduce_precision", "rem",
    "round", "rsqrt", "select_n", "sign", "sin", "sinh", "sqrt", "square",
    "sub", "tan", "tanh", "xor",
})
# Call primitives entered as if inlined (their value is their jaxpr's).
CALLS = frozenset({"jit", "pjit", "closed_call", "core_call"})


class _Scope:
  """One jaxpr's variables: bound inputs, lazily computed values, producers."""

  def __init__(self, jaxpr, consts, parent=None, links=None):
    self.producer = {v: e for e in jaxpr.eqns for v in e.outvars}
    self.env = dict(zip(jaxpr.constvars, consts, strict=True))
    self.parent = parent
    self.links = links or {}   # an invar -> the caller's atom bound to it
    self.children = {}         # a call equation -> its _Scope


def _is_literal(atom) -> bool:
  return isinstance(atom, jex_core.Literal)


def _bind(eqn, vals):
  """Applies a jaxpr equation to ``vals`` (as ``jax.core.eval_jaxpr`` does)."""
  params = eqn.primitive.get_bind_params(eqn.params)
  subfuns = []
  if isinstance(params, tuple):  # older JAX: (subfuns, params)
    subfuns, params = params
  return eqn.primitive.bind(*subfuns, *vals, **params)


def _shape(atom) -> tuple:
  return tuple(atom.aval.shape)


class _Pushdown:

  def __init__(self, closed, args, stops):
    self.top = _Scope(closed.jaxpr, closed.consts)
    self.top.env.update(zip(closed.jaxpr.invars, args, strict=True))
    self.inputs = {v: i for i, v in enumerate(closed.jaxpr.invars)}
    self.inputs_read = set()  # positions of the inputs gathered from
    self.stops = set(stops)
    self.gathered = {}
    self.frontier = []  # why the push stopped, for each whole array gathered

  # The whole value of an atom, computed as the function computes it.
  def value(self, scope: _Scope, atom):
    if _is_literal(atom):
      return atom.val
    if atom in scope.env:
      return scope.env[atom]
    if atom in scope.links:
      out = self.value(scope.parent, scope.links[atom])
      scope.env[atom] = out
      return out
    eqn = scope.producer[atom]
    outs = _bind(eqn, [self.value(scope, a) for a in eqn.invars])
    if not eqn.primitive.multiple_results:
      outs = [outs]
    for v, o in zip(eqn.outvars, outs, strict=True):
      scope.env[v] = o
    return scope.env[atom]

  def _child(self, scope: _Scope, eqn) -> _Scope:
    if eqn not in scope.children:
      closed = eqn.params["jaxpr"]
      if not hasattr(closed, "jaxpr"):  # an open jaxpr (closed_call variants)
        closed = jex_core.ClosedJaxpr(closed, ())
      scope.children[eqn] = _Scope(
          closed.jaxpr, closed.consts, parent=scope,
          links=dict(zip(closed.jaxpr.invars, eqn.invars, strict=True)))
    return scope.children[eqn]

  # The entries ``idx`` of an atom of shape ``shape``, as a (k,) array.
  def gather(self, scope: _Scope, atom, shape: tuple, idx: np.ndarray,
             tag: int):
    key = (id(scope), atom, tag) if not _is_literal(atom) else None
    if key is not None and key in self.gathered:
      return self.gathered[key]
    out = self._gather(scope, atom, shape, idx, tag)
    if key is not None:
      self.gathered[key] = out
    return out

  def _direct(self, scope, atom, idx, why):
    """Gathers the whole value of ``atom`` (computed if need be)."""
    if not _is_literal(atom) and _shape(atom):
      self.frontier.append(why)
    return take(self.value(scope, atom), idx)

  def _gather(self, scope, atom, shape, idx, tag):
    if _is_literal(atom) or not shape:
      return self._direct(scope, atom, idx, "scalar")
    if scope is self.top and atom in self.inputs:
      self.inputs_read.add(self.inputs[atom])
      return self._direct(scope, atom, idx, "input")
    if scope is self.top and atom in self.stops:
      return self._direct(scope, atom, idx, "output")
    if atom in scope.links:
      outer = scope.links[atom]
      if _is_literal(outer):
        return self._direct(scope, atom, idx, "scalar")
      return self.gather(scope.parent, outer, shape, idx, tag)
    if atom not in scope.producer:
      return self._direct(scope, atom, idx, "constant")
    eqn = scope.producer[atom]
    name = eqn.primitive.name
    if name in CALLS and "jaxpr" in eqn.params:
      child = self._child(scope, eqn)
      inner = _child_outvars(eqn)[eqn.outvars.index(atom)]
      return self.gather(child, inner, shape, idx, tag)
    if name == "broadcast_in_dim" and not _shape(eqn.invars[0]):
      return jnp.broadcast_to(self.value(scope, eqn.invars[0]), (idx.size,))
    if (name in ELEMENTWISE and not eqn.primitive.multiple_results
        and eqn.params.get("sharding") is None
        and all(_shape(a) in ((), shape) for a in eqn.invars)):
      ops = [self.value(scope, a) if not _shape(a)
             else self.gather(scope, a, shape, idx, tag) for a in eqn.invars]
      return _bind(eqn, ops)
    return self._direct(scope, atom, idx, name)


def _child_outvars(eqn):
  closed = eqn.params["jaxpr"]
  return (closed.jaxpr if hasattr(closed, "jaxpr") else closed).outvars


def take(x: Any, idx: np.ndarray) -> jax.Array:
  """``ravel(x)[idx]`` for in-bounds indices (repeats allowed), one gather.

  The entries' exact bits (no arithmetic), and one operand per leaf, so that
  the concatenation of a few leaves' entries stays one fused kernel (XLA:CPU
  fuses a concatenate of at most 8 operands).  On CPU a gather with
  constant indices is cheaper than the same positions read as strided
  slices put side by side with selects, this module's earlier reading
  (measured on the 33-leaf model of ``ftrl-adam bench step``, 2 cores: the
  monitor's own kernels 55-58 -> 49-50 us a step, medians from
  ``jax.profiler`` as ``ftrl-adam bench kernels`` takes them).
  """
  flat = jnp.ravel(jnp.asarray(x))
  idx = np.asarray(idx)
  return flat.at[idx].get(mode="promise_in_bounds",
                          indices_are_sorted=bool(np.all(np.diff(idx) >= 0)))


def gather_outputs(fn: Callable[..., Sequence[Any]], args: Sequence[Any],
                   indices: Sequence[Optional[np.ndarray]],
                   frontier: Optional[list] = None,
                   inputs_read: Optional[set] = None) -> Optional[list]:
  """``[ravel(fn(*args)[i])[indices[i]] ...]``, the gathers pushed into ``fn``.

  The push stops at the function's inputs and at its other outputs (the
  outputs after the first ``len(indices)``, e.g. the new optimizer state,
  which the caller materialises anyway).  A gather of an input that the
  step overwrites in place (a donated state) would make XLA copy the whole
  input first; a gather of an output does not.

  Args:
    fn: a function of the arrays ``args`` returning a flat list of arrays.
    args: its arguments (arrays or tracers).
    indices: for each of the first ``len(indices)`` outputs, sorted int32
      flat indices into it (repeats allowed), or None to skip it.
    frontier: if a list, it is extended with, for each whole array gathered,
      why the push stopped there: ``"input"``, ``"output"``, ``"constant"``
      or the name of the primitive that made it (for tests).
    inputs_read: if a set, it receives the positions in ``args`` of the
      inputs whose entries were gathered (a caller that overwrites an input
      in place must order that write after the reads).

  Returns:
    The list of gathered (k_i,) arrays (None where the index is None), or
    None when ``fn`` has side effects (then gather from ``fn``'s outputs).
  """
  closed = jax.make_jaxpr(fn)(*args)
  if closed.effects:
    return None
  push = _Pushdown(closed, [jnp.asarray(a) for a in args],
                   [a for a in closed.jaxpr.outvars[len(indices):]
                    if not _is_literal(a)])
  out = []
  for i, idx in enumerate(indices):
    if idx is None:
      out.append(None)
      continue
    atom = closed.jaxpr.outvars[i]
    shape = () if _is_literal(atom) else _shape(atom)
    out.append(push.gather(push.top, atom, shape, np.asarray(idx), i))
  if frontier is not None:
    frontier.extend(push.frontier)
  if inputs_read is not None:
    inputs_read.update(push.inputs_read)
  return out
