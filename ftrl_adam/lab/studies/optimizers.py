"""A study's optimizer as a function of traced hyperparameters, and the axes it may vary.

A study trains one configuration per cell inside one compiled program, so
the optimizer is built *inside* the program from a dict of traced float32
scalars, ``hp``: ``{"lr": ..., "b1": ..., "b2": ..., <your axes>}``.  Two
kinds of optimizer function:

* the built-in one (:func:`builtin`), FTRL-Adam with the study's named
  hyperparameters :data:`HYPERPARAMETERS` (``ftrl-adam study --axis
  weight_decay=log:1e-5:1e-1:5``);
* yours, any ``hp -> optax.GradientTransformation`` (``ftrl_adam`` or not),
  e.g. ``lambda hp: optax.chain(optax.clip_by_global_norm(hp["clip"]),
  optax.add_decayed_weights(hp["wd"]), fa.ftrl_adam(hp["lr"], hp["b1"],
  hp["b2"]))``.

Before anything is compiled, :func:`check_axes` builds the optimizer with
traced hyperparameters on the task's parameter shapes and refuses, naming the
axis and why: an axis the optimizer uses as a Python value (a shape, a step
count, an ``if``), which no traced value can be, and an axis with several
values that the optimizer never reads (every value would train the same
run).  Settings that shape the program (``steps``, ``batch_size``,
``eval_every`` and every task option) are refused as axis names outright.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax

import ftrl_adam as fa
from ftrl_adam.lab.studies.task import Task

OptimizerFn = Callable[[Mapping[str, Any]], optax.GradientTransformation]

#: The built-in optimizer's hyperparameters an axis may vary (besides b1, b2
#: and lr, which have options of their own), and what each one is.
HYPERPARAMETERS: Mapping[str, str] = {
    "eps": "Adam's epsilon (ftrl_adam's eps)",
    "eps_root": "epsilon inside the square root (ftrl_adam's eps_root)",
    "weight_decay": "decoupled weight decay as AdamW's: the update gains "
                    "-lr * weight_decay * params",
    "clip_norm": "clip the gradient to this global norm first "
                 "(optax.clip_by_global_norm)",
    "radius": "the FTRL domain's radius D: each coordinate of the update "
              "clipped to [-D, D] (ftrl_adam's radius, box domain)",
    "ema_decay": "decay of the parameter EMA the study keeps",
}

#: Names an axis can never have: what they change is a shape or the program.
SHAPE_SETTINGS: Mapping[str, str] = {
    "steps": "the number of steps is the length of the training loop",
    "eval_every": "the evaluation schedule is the loop's structure",
    "seed": "seeds are their own axis (`seeds`)",
    "seeds": "seeds are their own axis (`seeds`)",
    "batch_size": "the batch size is a shape of the program",
}

#: The axes with options of their own, and the option.
OWN_OPTIONS = {"b1": "b1", "b2": "b2", "lr": "learning_rates"}


def builtin(eps: float = 1e-8) -> OptimizerFn:
  """The built-in optimizer: FTRL-Adam with the named hyperparameters in ``hp``.

  ``ftrl_adam(hp["lr"], hp["b1"], hp["b2"], eps)`` (Adam with the defaults),
  preceded by ``optax.clip_by_global_norm(hp["clip_norm"])`` and followed by
  AdamW's decoupled weight decay ``-lr * hp["weight_decay"] * params`` when
  those are in ``hp``; ``hp["eps"]``, ``hp["eps_root"]`` and ``hp["radius"]``
  replace ftrl_adam's arguments when given.  Without extra names it is
  exactly ``ftrl_adam(lr, b1, b2, eps)``.

  Example:
    >>> import jax.numpy as jnp
    >>> from ftrl_adam.lab.studies import optimizers
    >>> tx = optimizers.builtin()({"lr": 0.1, "b1": 0.9, "b2": 0.99,
    ...                            "weight_decay": 0.01})
    >>> params = {"w": jnp.ones(2)}
    >>> u, _ = tx.update({"w": jnp.zeros(2)}, tx.init(params), params)
    >>> u["w"].tolist()   # no gradient: only the decay, -0.1 * 0.01 * 1
    [-0.0010000000474974513, -0.0010000000474974513]
  """

  def make(hp: Mapping[str, Any]) -> optax.GradientTransformation:
    parts = []
    if "clip_norm" in hp:
      parts.append(optax.clip_by_global_norm(hp["clip_norm"]))
    parts.append(fa.ftrl_adam(hp["lr"], hp["b1"], hp["b2"], hp.get("eps", eps),
                              hp.get("eps_root", 0.0), radius=hp.get("radius")))
    if "weight_decay" in hp:
      parts.append(optax.add_decayed_weights(
          -jnp.asarray(hp["lr"], jnp.float32) * hp["weight_decay"]))
    return parts[0] if len(parts) == 1 else optax.chain(*parts)

  return make


def check_name(name: Any, user: bool, task_options: Sequence[str]) -> str:
  """An axis name, or a ValueError naming it and why it cannot be one."""
  if not isinstance(name, str) or not name.isidentifier():
    raise ValueError(f"`axes`: an axis name must be an identifier, got "
                     f"{name!r}.")
  why = SHAPE_SETTINGS.get(name)
  if why is None and name in task_options:
    why = "a task option builds the model or the data (shapes, constants)"
  if why is not None:
    raise ValueError(
        f"`axes`: {name!r} cannot be an axis: {why}, and every cell of a "
        f"study runs in one compiled program; run one study per value.")
  if name in OWN_OPTIONS:
    raise ValueError(f"`axes`: {name!r} has its own option; pass "
                     f"`{OWN_OPTIONS[name]}` instead.")
  if not user and name not in HYPERPARAMETERS:
    known = ", ".join(HYPERPARAMETERS)
    raise ValueError(
        f"`axes`: the built-in optimizer has no hyperparameter {name!r}; its "
        f"axes are b1, b2 (`b1`, `b2`), lr (`learning_rates`) and {known}. "
        f"For others, pass an optimizer function of your own.")
  return name


def _needed_inputs(jaxpr: Any) -> set[Any]:
  """The input variables that reach an output (a backward walk; an equation
  that is needed needs all its inputs)."""
  needed = {v for v in jaxpr.outvars if not isinstance(v, jax.extend.core.Literal)}
  for eqn in reversed(jaxpr.eqns):
    if any(v in needed for v in eqn.outvars):
      needed.update(v for v in eqn.invars
                    if not isinstance(v, jax.extend.core.Literal))
  return needed


def _probe(make: Callable[[Mapping[str, Any]], optax.GradientTransformation],
           params: Any) -> Callable[[Mapping[str, Any]], Any]:
  """``hp -> (updates, new state)`` of one step on zero gradients."""

  def probe(hp):
    tx = make(hp)
    state = tx.init(params)
    grads = jax.tree.map(jnp.zeros_like, params)
    return tx.update(grads, state, params)

  return probe


def _trace_error(probe, values: Mapping[str, float],
                 traced: Sequence[str]) -> str:
  """'' if ``probe`` traces with the ``traced`` names as tracers (the others
  concrete Python floats), else the error in one line."""
  fixed = {k: v for k, v in values.items() if k not in traced}

  def partial(hp):
    return probe({**fixed, **hp})

  try:
    jax.make_jaxpr(partial)({k: jnp.float32(values[k]) for k in traced})
  except Exception as e:  # pylint: disable=broad-except  # reported below
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
  return ""


def check_axes(make: Callable[[Mapping[str, Any]], optax.GradientTransformation],
               axes: Mapping[str, Sequence[float]], task: Task) -> None:
  """Refuses axes the optimizer cannot take traced, or never reads.

  Args:
    make: ``hp -> transformation`` (the optimizer and the study's EMAs).
    axes: ``name -> values`` of every hyperparameter axis.
    task: the task (its parameter shapes, computed abstractly).

  Raises:
    ValueError: naming the axis: it is used as a Python value (a shape, a
      count, an ``if`` on it), the optimizer cannot be built with it, or it
      has several values and is never read.
  """
  params = jax.eval_shape(task.init_params, jax.random.key(0))
  params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), params)
  probe = _probe(make, params)
  values = {k: float(np.float32(v[0])) for k, v in axes.items()}
  error = _trace_error(probe, values, list(axes))
  if error:
    for name in axes:
      why = _trace_error(probe, values, [name])
      if why:
        raise ValueError(
            f"`axes`: the optimizer cannot take {name!r} as a traced value "
            f"({why}). A study builds the optimizer inside one compiled "
            f"program from traced hyperparameters, so a value used as a "
            f"shape, a count or in a Python `if` cannot be an axis; run one "
            f"study per value, or fix it in the optimizer function.")
    raise ValueError(f"`optimizer` cannot be built from the hyperparameters "
                     f"{sorted(axes)}: {error}")
  traced = {k: jnp.float32(v) for k, v in values.items()}
  closed = jax.make_jaxpr(probe)(traced)
  needed = _needed_inputs(closed.jaxpr)
  names = list(jax.tree_util.tree_flatten_with_path(traced)[0])
  for (path, _), var in zip(names, closed.jaxpr.invars, strict=True):
    name = path[0].key
    if var not in needed and len(axes[name]) > 1:
      raise ValueError(
          f"`axes`: the optimizer never reads hp[{name!r}], which has "
          f"{len(axes[name])} values: each would train the same run. Read "
          f"it in the optimizer function, or give it one value.")
