"""Your own Flax model as a training task: :func:`flax_task` (Linen or NNX).

:func:`flax_task` wraps a model, a per-example loss and data into a
:class:`~ftrl_adam.lab.studies.task.Task`.  The model is a Linen module, an
NNX module, or a function building an NNX module from ``nnx.Rngs``; each kind
has an adapter here that gives ``init_params(key)``, ``apply(params, inputs)``
and what identifies the model in a results folder's fingerprint (fed to
:func:`ftrl_adam.lab.identity.code_digest`, the package's one code hasher).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import sys
from typing import Any, Callable, Iterable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ftrl_adam import _checks
from ftrl_adam.lab.identity import code_digest
from ftrl_adam.lab.studies.task import Task
from ftrl_adam.lab.studies.task import TaskDefaults
from ftrl_adam.lab.studies.task import accuracy_of
from ftrl_adam.lab.studies.task import mean
from ftrl_adam.lab.studies.task import sample_rows

# The model kinds flax_task accepts, for error messages.
_MODEL_ALLOWED = (
    "a flax.linen.Module instance (e.g. nn.Dense(2)), a flax.nnx.Module "
    "instance (e.g. nnx.Linear(3, 2, rngs=nnx.Rngs(0))) or a function "
    "rngs -> flax.nnx.Module (e.g. lambda rngs: nnx.Linear(3, 2, rngs=rngs))")


def _model_kind(model: Any) -> str:
  """``"linen"``, ``"nnx"`` (an instance) or ``"factory"``; else ValueError."""
  nnx_lib = sys.modules.get("flax.nnx")  # loaded if the user made an NNX model
  nnx_module = getattr(nnx_lib, "Module", None)
  if isinstance(model, type):
    if issubclass(model, nn.Module) or (
        nnx_module is not None and issubclass(model, nnx_module)):
      example = (f"lambda rngs: {model.__name__}(..., rngs=rngs)"
                 if not issubclass(model, nn.Module) else
                 f"{model.__name__}(...)")
      raise ValueError(
          f"`model` must be a module instance, not the class "
          f"{model.__name__} (pass e.g. {example}). `model` may be "
          f"{_MODEL_ALLOWED}.")
    raise ValueError(
        f"`model` must be {_MODEL_ALLOWED}; got the class {model.__name__}.")
  if isinstance(model, nn.Module):
    return "linen"
  if nnx_module is not None and isinstance(model, nnx_module):
    return "nnx"
  if inspect.isfunction(model) or inspect.ismethod(model) or isinstance(
      model, functools.partial):
    return "factory"
  raise ValueError(f"`model` must be {_MODEL_ALLOWED}; got "
                   f"{type(model).__name__}.")



def _linen_parts(model: nn.Module, example: Any):
  """(init_params, apply, identity, label) of a Linen module.

  ``identity`` is what the fingerprint hashes: the module (its class and
  fields: sizes, initializers), every module class that runs when it is
  initialised (user classes are hashed with their code), and the variables
  of ``init`` with key 0.
  """

  def init_params(key):
    return model.init(key, example)["params"]

  def apply(params, inputs):
    return model.apply({"params": params}, inputs)

  classes = []

  def record(next_fun, args, kwargs, context):
    classes.append(type(context.module))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):  # every submodule class that runs
    variables = model.init(jax.random.key(0), example)
  identity = ("linen", model, tuple(dict.fromkeys(classes)), variables)
  return init_params, apply, identity, f"Linen model {type(model).__name__}"


def _var_value(var):
  """The value of an nnx.Variable (``get_value`` where flax has it)."""
  get = getattr(var, "get_value", None)
  return get() if get is not None else var.value


def _path_str(path) -> str:
  return "/".join(str(k) for k in path)


def _at(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def _same_value(a, b) -> bool:
  if jax.dtypes.issubdtype(getattr(a, "dtype", None), jax.dtypes.prng_key):
    a = jax.random.key_data(a)
  if jax.dtypes.issubdtype(getattr(b, "dtype", None), jax.dtypes.prng_key):
    b = jax.random.key_data(b)
  a, b = np.asarray(a), np.asarray(b)
  return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(
      a, b, equal_nan=a.dtype.kind in "fc")



def _nnx_instance(model: Any, factory: bool) -> Any:
  """The module itself, or the one a factory builds with ``nnx.Rngs(0)``."""
  from flax import nnx  # pylint: disable=import-outside-toplevel

  if not factory:
    return model
  try:
    instance = model(nnx.Rngs(0))
  except Exception as e:
    raise ValueError(
        f"`model` is a function, so it must build a flax.nnx.Module from an "
        f"nnx.Rngs; model(nnx.Rngs(0)) raised {e!r}.") from e
  if not isinstance(instance, nnx.Module):
    raise ValueError(
        f"`model` is a function, so it must return a flax.nnx.Module when "
        f"called with an nnx.Rngs; it returned {type(instance).__name__}. "
        f"`model` may be {_MODEL_ALLOWED}.")
  return instance


def _refuse_updated_state(graphdef, flat_params, flat_rest, example) -> None:
  """Refuses a model whose forward pass updates its non-Param state.

  BatchNorm statistics in training mode, the RNG counts of active Dropout:
  training would have to carry them from step to step.  Variables created by
  the call (sown intermediates) are harmless: they die with the merged copy.
  """
  from flax import nnx  # pylint: disable=import-outside-toplevel

  def fresh(flat):
    return nnx.from_flat_state(
        [(path, var.replace(_var_value(var))) for path, var in flat])

  probe = nnx.merge(graphdef, fresh(flat_params), fresh(flat_rest))
  probe(example)
  after = dict(nnx.to_flat_state(nnx.state(probe)))
  changed = [
      f"{_path_str(path)} ({type(var).__name__})"
      for path, var in flat_params + flat_rest
      if not isinstance(var, nnx.Intermediate) and path in after
      and not _same_value(_var_value(var), _var_value(after[path]))]
  if changed:
    raise ValueError(
        f"`model` updates its state when called ({', '.join(changed)}); "
        "flax_task trains the nnx.Param variables and keeps every other "
        "variable constant, so it cannot carry such state from step to step. "
        "Put the model in evaluation mode first (model.eval(), or "
        "use_running_average=True on BatchNorm and deterministic=True on "
        "Dropout): its other state is then used as constants. Or write a "
        "studies.Task of your own.")


def _nnx_parts(model: Any, example: Any, factory: bool):
  """(init_params, apply, identity, label) of an NNX module or factory.

  The module (for a factory: the one built with ``nnx.Rngs(0)``) is split once
  into its graph definition, its ``nnx.Param`` variables (what is trained) and
  the rest (constants in the loss).  ``apply`` merges fresh copies of them, so
  nothing outlives a call (no side effect under ``jit`` or ``vmap``).
  ``identity`` is the factory (its code) and the instance: its classes,
  attributes and variables.
  """
  from flax import nnx  # pylint: disable=import-outside-toplevel

  instance = _nnx_instance(model, factory)
  graphdef, params, rest = nnx.split(instance, nnx.Param, ...)
  flat_params = list(nnx.to_flat_state(params))
  flat_rest = list(nnx.to_flat_state(rest))
  _refuse_updated_state(graphdef, flat_params, flat_rest, example)

  def fresh(flat, value_of):
    return nnx.from_flat_state(
        [(path, var.replace(value_of(path, var))) for path, var in flat])

  def apply(pure_params, inputs):
    module = nnx.merge(
        graphdef, fresh(flat_params, lambda path, _: _at(pure_params, path)),
        fresh(flat_rest, lambda _, var: _var_value(var)))
    return module(inputs)

  if factory:

    def init_params(key):
      g, p, _ = nnx.split(model(nnx.Rngs(key)), nnx.Param, ...)
      if g != graphdef:
        raise ValueError(
            "`model` builds modules of different structures for different "
            "keys; flax_task needs one structure.")
      return nnx.to_pure_dict(p)
  else:
    initial = nnx.to_pure_dict(params)

    def init_params(key):
      del key  # the instance's own parameters, for every seed
      return jax.tree.map(lambda a: a, initial)  # a new dict each call

  identity = ("nnx factory" if factory else "nnx",
              model if factory else None, instance)
  label = f"NNX model {type(instance).__name__}"
  if factory:
    label += f" built per seed by {getattr(model, '__name__', 'a function')}"
  return init_params, apply, identity, label



def _train_source(train_data: Any, batch_size: Optional[int],
                  num_batches: int) -> tuple[Callable, Any, Any, str]:
  """(train_batch, example inputs, the data arrays, a description)."""
  is_arrays = isinstance(train_data, tuple) and len(train_data) == 2 and all(
      hasattr(a, "shape") for a in jax.tree.leaves(train_data))
  if is_arrays:
    if batch_size is None:
      raise ValueError("`batch_size` is required when `train_data` is arrays.")
    batch_size = _checks.check_positive_int("batch_size", batch_size)
    arrays = jax.tree.map(jnp.asarray, train_data)
    example = jax.tree.map(lambda a: a[:1], arrays[0])
    return sample_rows(arrays, batch_size), example, arrays, "arrays"
  if isinstance(train_data, (str, bytes)) or not isinstance(
      train_data, Iterable):
    raise ValueError(
        "`train_data` must be a pair of arrays (inputs, targets) or an "
        f"iterable of such batches, got {type(train_data).__name__}.")
  num_batches = _checks.check_positive_int("num_batches", num_batches)
  batches = list(itertools.islice(iter(train_data), num_batches))
  if not batches:
    raise ValueError("`train_data` yielded no batch.")
  stacked = jax.tree.map(lambda *b: jnp.stack([jnp.asarray(x) for x in b]),
                         *[tuple(b) for b in batches])
  n = len(batches)

  def train_batch(key, step):
    del key
    return jax.tree.map(lambda a: a[step % n], stacked)

  example = jax.tree.map(lambda a: a[0][:1], stacked[0])
  return train_batch, example, stacked, f"{n} batches from an iterable"


def flax_task(
    model: Any,
    loss_fn: Callable[[jax.Array, Any], jax.Array],
    train_data: Any,
    val_data: Any,
    *,
    batch_size: Optional[int] = None,
    num_batches: int = 256,
    accuracy: bool = False,
    name: str = "user",
    defaults: Optional[TaskDefaults] = None,
) -> Task:
  """Wraps a Flax model (Linen or NNX), a loss and data into a :class:`Task`.

  The model is one of:

  * a ``flax.linen.Module`` instance: ``init_params(key)`` is
    ``model.init(key, inputs[:1])["params"]`` (each seed draws its own initial
    parameters) and the model runs as ``model.apply({"params": p}, inputs)``;
  * a ``flax.nnx.Module`` instance: split once with ``nnx.split(model,
    nnx.Param, ...)``.  Its ``nnx.Param`` variables are what is trained, and
    **its own current values are the initial parameters of every seed** (the
    seed then only draws the batches): the model you pass is the model that is
    trained, and a study never touches it;
  * a function ``rngs -> flax.nnx.Module`` (e.g. ``lambda rngs: MLP(16,
    rngs=rngs)``): each seed's initial parameters are those of
    ``model(nnx.Rngs(key))``, the seed's key, like a Linen ``init``.

  For NNX, ``init_params`` returns the parameters as a nested dict of arrays
  (``nnx.to_pure_dict``) and the loss merges them with the graph definition
  and the model's other variables (BatchNorm statistics, RNG streams, any
  ``nnx.Variable``), which are constants: taken from the instance, or from
  ``model(nnx.Rngs(0))`` for a function.  A model whose call updates such
  state (BatchNorm in training mode, Dropout with rngs in training mode) is
  refused; call ``model.eval()`` first to use the state as constants.

  ``info["content_sha256"]`` identifies the task for a resumed study: the
  package's one code hasher (:func:`ftrl_adam.lab.identity.code_digest`) over
  the model (a Linen module's fields, the classes that run in it and its
  initial parameters with key 0; an NNX module's classes, attributes and
  variables; a factory's code), the loss's code and constants, and every
  data array.

  Args:
    model: a Linen module, an NNX module, or a function ``rngs -> NNX
      module`` (above); it is called on the inputs alone.
    loss_fn: ``(outputs, targets) -> per-example losses (any shape) or a
      scalar``; per-example losses are averaged in a batching-independent
      order.
    train_data: either a tuple ``(inputs, targets)`` of arrays with the
      examples on axis 0 (batches of ``batch_size`` drawn with replacement, a
      fresh draw per step and seed), or any Python iterable of ``(inputs,
      targets)`` batches: its first ``num_batches`` batches are stacked and
      cycled through in order (then every seed sees the same batches).
    val_data: ``(inputs, targets)`` arrays, evaluated whole.
    batch_size: required with array ``train_data``.
    num_batches: how many batches to take from an iterable ``train_data``.
    accuracy: also report the arg-max accuracy of ``outputs`` against integer
      ``targets``.
    name: the task's name in tables.
    defaults: a :class:`TaskDefaults`; default 500 steps, learning rates
      (1e-3, 3e-3, 1e-2), EMA decay 0.99, evaluation every 50 steps.

  Returns:
    A :class:`Task`.

  Raises:
    ValueError: ``model`` is not one of the three kinds above (a module class
      is refused: pass an instance), an NNX model updates non-Param state
      when called, or bad data options.

  Example:
    >>> import numpy as np, optax, flax.linen as nn
    >>> from flax import nnx
    >>> from ftrl_adam import studies
    >>> x = np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32)
    >>> y = (x.sum(1) > 0).astype(np.int32)
    >>> task = studies.flax_task(
    ...     nn.Dense(2), optax.softmax_cross_entropy_with_integer_labels,
    ...     (x, y), (x, y), batch_size=32, accuracy=True)
    >>> r = studies.train(task, b1=0.9, b2=0.99, learning_rate=0.05, seed=0,
    ...                   steps=100, ema_decay=0.9, eval_every=50)
    >>> bool(r["val_acc"] > 0.9)
    True
    >>> nnx_task = studies.flax_task(
    ...     nnx.Linear(3, 2, rngs=nnx.Rngs(0)),
    ...     optax.softmax_cross_entropy_with_integer_labels,
    ...     (x, y), (x, y), batch_size=32, accuracy=True)
    >>> r = studies.train(nnx_task, b1=0.9, b2=0.99, learning_rate=0.05,
    ...                   seed=0, steps=100, ema_decay=0.9, eval_every=50)
    >>> bool(r["val_acc"] > 0.9)
    True
  """
  kind = _model_kind(model)
  if not callable(loss_fn):
    raise ValueError("`loss_fn` must be callable (outputs, targets) -> loss.")
  val_data = jax.tree.map(jnp.asarray, tuple(val_data))
  if len(val_data) != 2:
    raise ValueError("`val_data` must be a pair (inputs, targets).")
  train_batch, example, arrays, source = _train_source(
      train_data, batch_size, num_batches)
  if kind == "linen":
    init_params, apply, identity, label = _linen_parts(model, example)
  else:
    init_params, apply, identity, label = _nnx_parts(
        model, example, factory=kind == "factory")

  def reduce(value):
    return mean(value) if jnp.ndim(value) else jnp.asarray(value, jnp.float32)

  def loss(params, batch):
    inputs, targets = batch
    return reduce(loss_fn(apply(params, inputs), targets))

  def acc(params, batch):
    inputs, targets = batch
    return accuracy_of(apply(params, inputs), targets)

  return Task(
      name=name, init_params=init_params, loss=loss, train_batch=train_batch,
      val_batch=val_data, accuracy=acc if accuracy else None,
      defaults=defaults or TaskDefaults(
          steps=500, learning_rates=(1e-3, 3e-3, 1e-2), ema_decay=0.99,
          eval_every=50),
      info=dict(description=f"user Flax {label} ({source})",
                kwargs={},
                content_sha256=code_digest(
                    ("flax_task", identity, loss_fn, arrays, val_data))))
