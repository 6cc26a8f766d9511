"""One training run as one pure JAX function, vmappable over hyperparameters.

:func:`train` runs a :class:`~ftrl_adam.studies.Task` for ``steps`` steps with

    optax.chain(ftrl_adam(learning_rate, b1, b2, eps), ema_params(ema_decay))

entirely inside ``jax.lax.scan`` (the data are sampled inside the loop from the
seed), evaluating the raw parameters and their EMA on the validation data every
``eval_every`` steps.  ``b1``, ``b2``, ``learning_rate``, ``ema_decay`` and
``seed`` may be traced, so ``jax.vmap(lambda b1, b2, lr, s: train(task, b1=b1,
b2=b2, learning_rate=lr, seed=s, steps=...))`` trains a whole grid in one
program, and every cell is bit for bit the run ``train`` gives alone (tested):
the hyperparameters are float32 arrays in both cases and every
reduction over examples is batching-independent.

The seed fixes the initial parameters and the sequence of batches; cells with
the same seed share both (common random numbers), so differences between
(b1, b2, learning rate) cells are not sampling noise.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ftrl_adam import _checks
from ftrl_adam.ema import ema_params
from ftrl_adam.ema import ema_params_of
from ftrl_adam.ftrl import ftrl_adam
from ftrl_adam.lab.studies.task import Task
from ftrl_adam.lab.studies.task import mean

#: The scalar metrics of every run (accuracy ones only for tasks that define it).
LOSS_METRICS = (
    "val_loss", "val_loss_ema", "best_val_loss", "best_val_loss_ema",
    "best_step", "best_step_ema", "train_loss", "diverged")
ACCURACY_METRICS = ("val_acc", "val_acc_ema", "best_val_acc", "best_val_acc_ema")


def metric_names(task: Task) -> tuple[str, ...]:
  """The keys of :func:`train`'s result for ``task`` (without curves)."""
  return LOSS_METRICS + (ACCURACY_METRICS if task.accuracy is not None else ())


def _check_int(name: str, value: Any, low: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
      or value < low:
    raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")
  return int(value)


def eval_steps(steps: int, eval_every: int) -> np.ndarray:
  """The steps after which :func:`train` evaluates: every ``eval_every`` and the last."""
  points = list(range(eval_every, steps + 1, eval_every))
  if not points or points[-1] != steps:
    points.append(steps)
  return np.asarray(points, np.int32)


def _finite_min(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(min over finite entries or +inf, index of the first minimiser)."""
  x = jnp.where(jnp.isfinite(x), x, jnp.inf)
  return jnp.min(x), jnp.argmin(x)


def _finite_max(x: jax.Array) -> jax.Array:
  return jnp.max(jnp.where(jnp.isfinite(x), x, -jnp.inf))


def train(
    task: Task,
    *,
    b1: Any,
    b2: Any,
    learning_rate: Any,
    seed: Any,
    steps: int | None = None,
    ema_decay: Any = None,
    eval_every: int | None = None,
    eps: Any = 1e-8,
    curves: bool = False,
) -> dict[str, jax.Array]:
  r"""Trains ``task`` with FTRL-Adam + EMA; returns the validation metrics.

  The optimizer is ``optax.chain(ftrl_adam(learning_rate, b1, b2, eps),
  ema_params(ema_decay))`` (docs/theory.md sections 2 and 5; with the defaults
  ``ftrl_adam`` is Adam).  Evaluation happens after every ``eval_every`` steps
  and after the last step, on the raw parameters and on the EMA.

  Args:
    task: a :class:`~ftrl_adam.studies.Task`.
    b1, b2: Adam's decays in [0, 1) (floats or float32 arrays; may be traced).
    learning_rate: > 0 (may be traced).
    seed: an integer (may be a traced int32): the initial parameters and the
      batches.
    steps: training steps (Python int); default ``task.defaults.steps``.
    ema_decay: decay of the parameter EMA in [0, 1] (may be traced); default
      ``task.defaults.ema_decay``.
    eval_every: evaluate every this many steps (Python int); default
      ``task.defaults.eval_every``, at most ``steps``.
    eps: Adam's epsilon.
    curves: also return the curves ``curve_step``, ``curve_val_loss``,
      ``curve_val_loss_ema`` and ``curve_train_loss`` (mean training loss since
      the previous evaluation).

  Returns:
    A dict of float32 scalars (int32 for ``best_step*``, bool for ``diverged``):
    ``val_loss`` and ``val_loss_ema`` (after the last step), ``best_val_loss``,
    ``best_val_loss_ema`` (minimum over the evaluations, +inf if none is
    finite) and the steps where they were reached, ``train_loss`` (mean
    training loss over the last ``eval_every`` steps), ``diverged`` (a
    non-finite gradient, training loss or validation loss at any step), and for tasks with an accuracy
    ``val_acc``, ``val_acc_ema``, ``best_val_acc``, ``best_val_acc_ema``.

  Raises:
    ValueError: ``learning_rate <= 0``, b1 or b2 outside [0, 1), bad
      ``ema_decay``, ``steps`` or ``eval_every`` (checked when concrete).

  Example:
    >>> from ftrl_adam import studies
    >>> task = studies.make_task("quadratic", dim=10, noise=0.0)
    >>> r = studies.train(task, b1=0.9, b2=0.99, learning_rate=0.1, seed=0,
    ...                   steps=130, eval_every=50, curves=True)
    >>> r["curve_step"].tolist()   # evaluations: every 50 steps and the last
    [50, 100, 130]
    >>> bool(r["val_loss"] < 1e-3 < r["curve_val_loss"][0])
    True
  """
  steps = _check_int("steps", task.defaults.steps if steps is None else steps)
  eval_every = _check_int(
      "eval_every", task.defaults.eval_every if eval_every is None
      else eval_every)
  eval_every = min(eval_every, steps)
  ema_decay = task.defaults.ema_decay if ema_decay is None else ema_decay
  lr = _checks.as_f32("learning_rate", learning_rate, low=0.0,
                      low_closed=False)
  tx = optax.chain(ftrl_adam(lr, b1, b2, eps), ema_params(ema_decay))
  seed = jnp.asarray(seed, jnp.int32) if not _checks.is_traced(seed) else seed
  k_init, k_data = jax.random.split(jax.random.key(seed))
  # Optimization barriers around what the task's code produces: XLA's
  # algebraic simplifier may otherwise fold constants across the boundary
  # between data (or initialisation) and loss differently in a vmapped
  # program than in the single one, and the last bits would differ.
  params = jax.lax.optimization_barrier(task.init_params(k_init))
  opt_state = tx.init(params)
  val = task.val_batch
  has_acc = task.accuracy is not None

  def step_fn(carry, step):
    params, opt_state = carry
    batch = jax.lax.optimization_barrier(
        task.train_batch(jax.random.fold_in(k_data, step), step))
    loss, grads = jax.value_and_grad(task.loss)(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    # A non-finite gradient marks the run diverged even if the loss stays
    # finite (the update is non-finite too, as in optax.adam).
    grads_ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g))
                                  for g in jax.tree.leaves(grads)]))
    loss = jnp.where(grads_ok, loss, jnp.nan)
    return (optax.apply_updates(params, updates), opt_state), loss

  def evaluate(carry):
    params, opt_state = carry
    ema = ema_params_of(opt_state)
    out = [task.loss(params, val), task.loss(ema, val)]
    if has_acc:
      out += [task.accuracy(params, val), task.accuracy(ema, val)]
    return jnp.stack([jnp.asarray(x, jnp.float32) for x in out])

  def run(carry, first, n):
    carry, losses = jax.lax.scan(
        step_fn, carry, first + jnp.arange(n, dtype=jnp.int32))
    return carry, losses

  def chunk(carry, first):
    carry, losses = run(carry, first, eval_every)
    train_mean = mean(losses)
    return carry, (evaluate(carry), train_mean, _all_finite(losses))

  n_chunks, rest = divmod(steps, eval_every)
  carry = (params, opt_state)
  carry, (evals, train_means, finite) = jax.lax.scan(
      chunk, carry, jnp.arange(n_chunks, dtype=jnp.int32) * eval_every)
  if rest:
    carry, losses = run(carry, jnp.int32(n_chunks * eval_every), rest)
    evals = jnp.concatenate([evals, evaluate(carry)[None]])
    train_means = jnp.concatenate([train_means, mean(losses)[None]])
    finite = jnp.concatenate([finite, _all_finite(losses)[None]])

  at = jnp.asarray(eval_steps(steps, eval_every))
  best, i_best = _finite_min(evals[:, 0])
  best_ema, i_best_ema = _finite_min(evals[:, 1])
  out = dict(
      val_loss=evals[-1, 0],
      val_loss_ema=evals[-1, 1],
      best_val_loss=best,
      best_val_loss_ema=best_ema,
      best_step=at[i_best],
      best_step_ema=at[i_best_ema],
      train_loss=train_means[-1],
      diverged=~(jnp.all(finite) & jnp.all(jnp.isfinite(evals[:, :2]))),
  )
  if has_acc:
    out.update(
        val_acc=evals[-1, 2],
        val_acc_ema=evals[-1, 3],
        best_val_acc=_finite_max(evals[:, 2]),
        best_val_acc_ema=_finite_max(evals[:, 3]),
    )
  if curves:
    out.update(
        curve_step=at,
        curve_val_loss=evals[:, 0],
        curve_val_loss_ema=evals[:, 1],
        curve_train_loss=train_means,
    )
  return out


def _all_finite(x: jax.Array) -> jax.Array:
  return jnp.all(jnp.isfinite(x))
