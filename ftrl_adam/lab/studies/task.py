"""What a training task is: :class:`Task`, its defaults, and batch-invariant reductions.

A :class:`Task` is what :func:`ftrl_adam.studies.train` needs to run a whole
training loop under one ``jax.lax.scan``:

* ``init_params(key) -> params``: a parameter pytree (a Flax ``init``);
* ``loss(params, batch) -> scalar``: the mean training loss of a batch;
* ``train_batch(key, step) -> batch``: a batch as a *pure function* of a PRNG key
  and the step number (the data arrays are held as constants and batches are
  gathered by index), so the data pipeline lives inside the compiled loop and
  can be vmapped over seeds;
* ``val_batch``: the validation data, one fixed pytree of arrays, evaluated
  whole with ``loss`` (and ``accuracy`` when the task defines it).

The built-in tasks are in :mod:`ftrl_adam.lab.studies.tasks`, the wrapper of a
Flax model of yours in :mod:`ftrl_adam.lab.studies.flax_adapters`, the names in
:mod:`ftrl_adam.lab.studies.registry`.

Every reduction over examples uses a batching-independent summation order
(``ftrl_adam._numerics.fixed_order_sum``) so that a vmapped grid cell computes
the same bits as the single run.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ftrl_adam import _numerics

Params = Any
Batch = Any


@dataclasses.dataclass(frozen=True)
class TaskDefaults:
  """Defaults a study uses for a task unless told otherwise.

  Attributes:
    steps: training steps.
    learning_rates: the learning-rate grid tuned per (b1, b2).
    ema_decay: decay of the EMA of the parameters (``ftrl_adam.ema_params``).
    eval_every: evaluate the validation loss every this many steps (and at the
      last step).
  """

  steps: int
  learning_rates: tuple[float, ...]
  ema_decay: float
  eval_every: int


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
  """A model, its loss and its data, as pure JAX functions (module docstring).

  Attributes:
    name: a short name (a CSV column value).
    init_params: ``key -> params``.
    loss: ``(params, batch) -> float32 scalar``, the mean loss of a batch.
    train_batch: ``(key, step) -> batch``; pure and jit-able, ``step`` is an
      int32 scalar.
    val_batch: the validation data, a pytree of arrays given to ``loss``.
    accuracy: optional ``(params, batch) -> float32 scalar`` in [0, 1].
    defaults: :class:`TaskDefaults` of a study of this task.
    info: JSON-able facts about the task (sizes, reference losses, corpus
      hash, keyword arguments used to build it).
  """

  name: str
  init_params: Callable[[jax.Array], Params]
  loss: Callable[[Params, Batch], jax.Array]
  train_batch: Callable[[jax.Array, jax.Array], Batch]
  val_batch: Batch
  accuracy: Optional[Callable[[Params, Batch], jax.Array]] = None
  defaults: TaskDefaults = TaskDefaults(
      steps=500, learning_rates=(1e-3, 3e-3, 1e-2), ema_decay=0.99,
      eval_every=50)
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def num_params(self) -> int:
    """Number of scalar parameters (computed abstractly, nothing is run)."""
    shapes = jax.eval_shape(self.init_params, jax.random.key(0))
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(shapes)))


# ----------------------------------------------------------------------------
# Batch-invariant reductions.
# ----------------------------------------------------------------------------


def total(x: jax.Array) -> jax.Array:
  """Sum of all elements in a batching-independent order (float32).

  The pairwise tree of :func:`ftrl_adam._numerics.fixed_order_sum` behind an
  optimization barrier: XLA:CPU contracts ``a * b + c`` into a fused
  multiply-add inside a fusion, so without the barrier the products that make
  ``x`` could be fused into the first level of additions in one program (a
  vmapped grid) and not in another (the single run), changing the last bit.
  """
  x = jax.lax.optimization_barrier(jnp.asarray(x, jnp.float32))
  return _numerics.fixed_order_sum(x)


def mean(x: jax.Array) -> jax.Array:
  """Mean of all elements in a batching-independent order (float32); see :func:`total`."""
  return total(x) / np.float32(max(1, jnp.size(x)))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy (nats) over every position of ``labels``."""
  per = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels)
  return mean(per)


def accuracy_of(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of positions where the arg-max of ``logits`` is the label."""
  return mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


def sample_rows(arrays: Any, batch_size: int
                ) -> Callable[[jax.Array, jax.Array], Any]:
  """A ``train_batch(key, step)`` drawing ``batch_size`` rows with replacement.

  ``arrays`` is a pytree of arrays with the examples on axis 0; every step
  draws its own rows from ``key`` (the step number is not used).

  Example:
    >>> import jax, numpy as np
    >>> from ftrl_adam.lab.studies.task import sample_rows
    >>> batch = sample_rows((np.arange(10.0), np.arange(10)), 4)
    >>> [a.shape for a in batch(jax.random.key(0), 0)]
    [(4,), (4,)]
  """
  n = jax.tree.leaves(arrays)[0].shape[0]

  def train_batch(key, step):
    del step
    idx = jax.random.randint(key, (batch_size,), 0, n)
    return jax.tree.map(lambda a: jnp.take(a, idx, axis=0), arrays)

  return train_batch


def check_fraction(name: str, value: Any) -> float:
  """``value`` as a float in (0, 1), or a ValueError naming ``name``."""
  if not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
    raise ValueError(f"`{name}` must be a number in (0, 1), got {value!r}.")
  return float(value)
