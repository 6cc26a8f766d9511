"""A study's cell functions: one training run (or one rung of it) per table row.

The grid engine vmaps a *cell function* over chunks of a table (one row per
cell).  A study's cell reads its hyperparameters (one column per axis) and
its seed, and returns the run's metrics:

* :func:`rung_cell_fn` - the run from step ``start`` to ``stop`` of a
  :class:`~ftrl_adam.lab.studies.train.Trainer`: from the seed when
  ``start`` is 0, else from the state the previous rung left in the columns
  ``state_in_f32`` / ``state_in_i32``; unless it is the last rung, it returns
  its state as ``state_out_f32`` / ``state_out_i32`` for the next.  The whole
  run of a full study is the one rung ``0 -> steps``;
* :func:`make_cell_fn` and :func:`single_run` - the default study's cell of
  (b1, b2, lr, seed), and one such cell trained alone, bit for bit the
  study's numbers.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from ftrl_adam import _checks
from ftrl_adam.lab import engine as grid
from ftrl_adam.lab.studies import carry as carry_lib
from ftrl_adam.lab.studies import optimizers as _optimizers
from ftrl_adam.lab.studies.task import Task
from ftrl_adam.lab.studies.train import Trainer

CellFn = Callable[[Mapping[str, jax.Array]], dict[str, jax.Array]]

#: Table columns of the state carried from one rung to the next.
STATE_IN = {k: f"state_in_{k}" for k in carry_lib.KINDS}
STATE_OUT = {k: f"state_out_{k}" for k in carry_lib.KINDS}


def rung_cell_fn(trainer: Trainer, axes: Sequence[str], start: int, stop: int,
                 *, last: bool, example: Mapping[str, float],
                 curves: bool = False) -> CellFn:
  """The cell function of one rung (module docstring).

  Args:
    trainer: the run.
    axes: the hyperparameter columns (``hp`` holds them by name).
    start, stop: the rung's first step (0 or the previous rung's end) and its
      last (an evaluation step).
    last: the last rung returns no state.
    example: one value per axis (for the state's layout, computed abstractly).
    curves: also return the rung's curves (``curve_step``,
      ``curve_val_loss``, ``curve_val_loss_ema``, ``curve_train_loss``).
  """
  axes = tuple(axes)
  layout_in = trainer.layout(example, start) if start else None
  layout_out = None if last else trainer.layout(example, stop)

  def cell_fn(cell):
    hp = {k: cell[k] for k in axes}
    seed = cell["seed"]
    if layout_in is None:
      state = trainer.init(hp, seed)
    else:
      state = layout_in.unpack({k: cell[c] for k, c in STATE_IN.items()})
    state, (at, evals, train_means) = trainer.advance(state, hp, seed, start,
                                                      stop)
    out = trainer.metrics(state, stop)
    if curves:
      out.update(curve_step=at, curve_val_loss=evals[:, 0],
                 curve_val_loss_ema=evals[:, 1], curve_train_loss=train_means)
    if layout_out is not None:
      packed = layout_out.pack(state)
      out.update({c: packed[k] for k, c in STATE_OUT.items()})
    return out

  return cell_fn


def make_cell_fn(task: Task, *, steps: int, eval_every: int, ema_decay: float,
                 eps: float = 1e-8, curves: bool = False,
                 sigma_rels: Sequence[float] = ()) -> CellFn:
  """The per-cell function of a default study: ``cell -> train(task, ...)`` metrics.

  ``cell`` holds the scalars ``b1``, ``b2``, ``lr`` and ``seed`` (a row of
  :func:`~ftrl_adam.studies.study_table`).

  Example:
    >>> import numpy as np
    >>> from ftrl_adam import studies
    >>> task = studies.make_task("quadratic", dim=4)
    >>> fn = studies.make_cell_fn(task, steps=20, eval_every=10, ema_decay=0.9)
    >>> out = fn({"b1": np.float32(0.9), "b2": np.float32(0.99),
    ...           "lr": np.float32(0.1), "seed": np.int32(0)})
    >>> sorted(out)[:3]
    ['best_step', 'best_step_ema', 'best_val_loss']
  """
  trainer = Trainer(task, _optimizers.builtin(eps), steps, min(eval_every, steps),
                    ema_decay=ema_decay,
                    sigma_rels=tuple(float(s) for s in sigma_rels))
  return rung_cell_fn(trainer, ("b1", "b2", "lr"), 0, steps, last=True,
                      example={}, curves=curves)


def settings(task: Task, steps: Any, eval_every: Any, ema_decay: Any
             ) -> tuple[int, int, float]:
  """(steps, eval_every, ema_decay) checked, with the task's defaults."""
  d = task.defaults
  steps = _checks.check_positive_int(
      "steps", d.steps if steps is None else steps)
  eval_every = _checks.check_positive_int(
      "eval_every", d.eval_every if eval_every is None else eval_every)
  ema_decay = float(d.ema_decay if ema_decay is None else ema_decay)
  _checks.check_in_range("ema_decay", ema_decay, low=0.0, high=1.0,
                         high_closed=True)
  return steps, min(eval_every, steps), ema_decay


def single_run(task: Task, *, b1: float, b2: float, learning_rate: float,
               seed: int, steps: Optional[int] = None,
               eval_every: Optional[int] = None,
               ema_decay: Optional[float] = None, eps: float = 1e-8,
               curves: bool = False, sigma_rels: Sequence[float] = ()
               ) -> dict[str, np.ndarray]:
  """One cell of a default study, alone: bit for bit the numbers the study's grid gives.

  ``jax.jit`` of the study's cell function compiled with the grid engine's
  :func:`ftrl_adam.grid.compiler_options` (on CPU: XLA's size-dependent
  library fusions off), on float32 hyperparameters exactly as the table holds
  them.

  Returns:
    The metrics of :func:`ftrl_adam.studies.train` as NumPy values.
  """
  steps, eval_every, ema_decay = settings(task, steps, eval_every, ema_decay)
  _checks.check_in_range("learning_rate", learning_rate, low=0.0,
                         low_closed=False)
  fn = make_cell_fn(task, steps=steps, eval_every=eval_every,
                    ema_decay=ema_decay, eps=eps, curves=curves,
                    sigma_rels=sigma_rels)
  cell = {"b1": np.float32(b1), "b2": np.float32(b2),
          "lr": np.float32(learning_rate), "seed": np.int32(seed)}
  out = jax.jit(fn, compiler_options=grid.compiler_options() or None)(cell)
  return {k: np.asarray(v) for k, v in out.items()}
