"""A (b1, b2) x learning-rate x seed study: train every cell in one program.

:func:`run_study` builds the tidy table of configurations
(:func:`study_table`), runs one training run per cell through the grid engine
(:func:`ftrl_adam.grid.run_grid`: ``jax.vmap`` over a chunk of cells, sharded
over every device, resumable from ``out_dir``), then tunes the learning rate
per (b1, b2) as Orvieto & Gower (2025) do - for each (b1, b2) the learning rate
with the lowest validation loss averaged over seeds - and reports, for each
b1, the best b2 next to b1 and b1**2 (docs/theory.md section 6: with the learning
rate tuned, Orvieto & Gower find b1 = b2 near-optimal; Nguyen reads the same
runs as b1 / sqrt(b2) ~ 1, i.e. b2 ~ b1**2).

A study is an experiment of the lab's runner
(:func:`ftrl_adam.lab.experiment.run_experiment`), like the beta-grid: the
same results folder layout and resume protocol.  Files written to
``out_dir``:

* ``results.csv``: one row per cell (b1, b2, lr, seed and every metric of
  :func:`ftrl_adam.studies.train`);
* ``tuned.csv``: one row per (b1, b2): for each tuned metric the chosen
  learning rate, the mean and standard deviation over seeds, and the number of
  diverged seeds;
* ``run.json``: the configuration, versions, task facts, timings, summary;
* ``heatmap_<metric>.png``: the tuned metric over (b1, b2), axes in log(1 - b),
  with the lines b2 = b1 and b2 = b1**2; ``heatmap_lr.png``: the tuned
  learning rate;
* ``summary.txt``: the printed summary;
* ``grid_train/``: the engine's manifest and chunk files.

References:
  Orvieto & Gower, *In Search of Adam's Secret Sauce*, 2025,
  https://arxiv.org/abs/2505.21829.
  Nguyen, *How to Set beta1, beta2 in Adam: An Online Learning Perspective*,
  ALT 2026, https://arxiv.org/abs/2510.03478.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from ftrl_adam import _checks
from ftrl_adam.lab import engine as grid
from ftrl_adam.lab.experiment import run_experiment
from ftrl_adam.lab.protocol import Heatmap
from ftrl_adam.lab.protocol import Part
from ftrl_adam.lab.protocol import Result
from ftrl_adam.lab.protocol import Size
from ftrl_adam.lab.protocol import seconds_line
from ftrl_adam.lab import options as _opt
from ftrl_adam.lab.report import summary as _report
from ftrl_adam.lab.studies import registry as tasks_lib
from ftrl_adam.lab.studies import train as train_lib
from ftrl_adam.lab.studies.task import Task

#: Metrics the learning rate can be tuned on (lower is better).
TUNE_METRICS = ("val_loss", "val_loss_ema", "best_val_loss",
                "best_val_loss_ema")

#: The grid of Orvieto & Gower (2025): b = 1 - kappa (1 - 0.9),
#: kappa in {2**-5, ..., 2**2} (docs/theory.md section 6), as a grid axis spec.
OG_AXIS = "log1m:0.6:0.996875:8"

#: The options of :func:`make_study` (and the flags of ``ftrl-adam study``); the
#: defaults are the default study (digits, about a minute on 2 CPU cores).
STUDY_OPTIONS: tuple[_opt.Option, ...] = (
    _opt.Option("task", "digits", "the training task.",
                choices=tuple(tasks_lib.TASKS)),
    _opt.Option("b1", OG_AXIS, "b1 values in [0, 1): a list '0.9,0.99' or a "
                "range 'log1m:lo:hi:n' (1-b log-spaced), 'lin:lo:hi:n'; the "
                "default is the Orvieto & Gower grid 1 - {0.4, 0.2, ..., "
                "0.003125}."),
    _opt.Option("b2", OG_AXIS, "b2 values in [0, 1), as --b1."),
    _opt.Option("learning_rates", None, "learning rates > 0, tuned per "
                "(b1, b2): a list '1e-3,1e-2' or 'log:lo:hi:n'; default the "
                "task's.", flag="--lrs"),
    _opt.Option("seeds", "4", "a number of seeds n (0..n-1) or a list '3,7'."),
    _opt.Option("steps", None, "training steps per run; default the task's.",
                type=int),
    _opt.Option("eval_every", None, "validation every this many steps; "
                "default the task's.", type=int),
    _opt.Option("ema_decay", None, "decay of the parameter EMA; default the "
                "task's.", type=float),
    _opt.Option("eps", 1e-8, "Adam's epsilon.", type=float),
    _opt.Option("metric", "val_loss", "metric the learning rate is tuned on "
                "and the summary ranks by.", choices=TUNE_METRICS),
    _opt.Option("chunk_size", 64, "runs per compiled chunk (memory, resume "
                "granularity).", type=int),
)


# ----------------------------------------------------------------------------
# The table.
# ----------------------------------------------------------------------------


def _axis(name: str, values: Any, **range_kwargs) -> np.ndarray:
  """A validated 1-D axis (duplicates refused): a spec string or a list."""
  return np.asarray(_opt.axis(name, values, **range_kwargs), np.float64)


def seed_axis(seeds: Any) -> np.ndarray:
  """Seeds from an int ``n`` (0..n-1), a list of ints, or a grid axis spec.

  Example:
    >>> from ftrl_adam import studies
    >>> studies.seed_axis(3).tolist(), studies.seed_axis("5,7").tolist()
    ([0, 1, 2], [5, 7])
  """
  return np.asarray(_opt.seeds(seeds), np.int64)


def study_table(b1: Any, b2: Any, learning_rates: Any, seeds: Any
                ) -> dict[str, np.ndarray]:
  """The tidy table b1 x b2 x lr x seed (first axis slowest), validated.

  Args:
    b1: values in [0, 1): a list or a grid axis spec (``"0.9,0.99"``,
      ``"log1m:0.6:0.996875:8"``, ... see :func:`ftrl_adam.grid.parse_axis`).
    b2: values in [0, 1), as ``b1``.
    learning_rates: values > 0, a list or a spec (``"log:1e-3:1e-2:3"``).
    seeds: an int n (seeds 0..n-1), a list of ints or a spec.

  Returns:
    ``dict`` with float32 columns ``b1``, ``b2``, ``lr`` and int32 ``seed``.

  Raises:
    ValueError: an empty axis, b outside [0, 1), a learning rate <= 0,
      repeated or non-integer seeds; the message names the argument.

  Example:
    >>> from ftrl_adam import studies
    >>> t = studies.study_table([0.9], "0.9,0.99", [1e-3, 1e-2], 2)
    >>> len(t["b1"]), sorted(t)
    (8, ['b1', 'b2', 'lr', 'seed'])
  """
  b1 = _axis("b1", b1, low=0.0, high=1.0, low_closed=True)
  b2 = _axis("b2", b2, low=0.0, high=1.0, low_closed=True)
  lrs = _axis("learning_rates", learning_rates, low=0.0)
  return grid.product(b1=b1, b2=b2, lr=lrs, seed=seed_axis(seeds))


# ----------------------------------------------------------------------------
# The cell.
# ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def make_cell_fn(task: Task, *, steps: int, eval_every: int, ema_decay: float,
                 eps: float = 1e-8, curves: bool = False
                 ) -> Callable[[Mapping[str, jax.Array]], dict[str, jax.Array]]:
  """The per-cell function of a study: ``cell -> train(task, ...)`` metrics.

  ``cell`` holds the scalars ``b1``, ``b2``, ``lr`` and ``seed`` (a row of
  :func:`study_table`).  Cached on its arguments, so a second study of the same
  task and settings reuses the grid engine's compiled program.

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

  def cell_fn(cell):
    return train_lib.train(
        task, b1=cell["b1"], b2=cell["b2"], learning_rate=cell["lr"],
        seed=cell["seed"], steps=steps, eval_every=eval_every,
        ema_decay=ema_decay, eps=eps, curves=curves)

  return cell_fn


def single_run(task: Task, *, b1: float, b2: float, learning_rate: float,
               seed: int, steps: Optional[int] = None,
               eval_every: Optional[int] = None,
               ema_decay: Optional[float] = None, eps: float = 1e-8,
               curves: bool = False) -> dict[str, np.ndarray]:
  """One cell of a study, alone: bit for bit the numbers the study's grid gives.

  ``jax.jit`` of the study's cell function compiled with the grid engine's
  :func:`ftrl_adam.grid.compiler_options` (on CPU: XLA's size-dependent
  library fusions off), on float32 hyperparameters exactly as the table holds
  them.

  Returns:
    The metrics of :func:`ftrl_adam.studies.train` as NumPy values.
  """
  steps, eval_every, ema_decay = _settings(task, steps, eval_every, ema_decay)
  _checks.check_in_range("learning_rate", learning_rate, low=0.0,
                         low_closed=False)
  fn = make_cell_fn(task, steps=steps, eval_every=eval_every,
                    ema_decay=ema_decay, eps=eps, curves=curves)
  cell = {"b1": np.float32(b1), "b2": np.float32(b2),
          "lr": np.float32(learning_rate), "seed": np.int32(seed)}
  out = jax.jit(fn, compiler_options=grid.compiler_options() or None)(cell)
  return {k: np.asarray(v) for k, v in out.items()}


def _settings(task: Task, steps, eval_every, ema_decay):
  d = task.defaults
  steps = _checks.check_positive_int(
      "steps", d.steps if steps is None else steps)
  eval_every = _checks.check_positive_int(
      "eval_every", d.eval_every if eval_every is None else eval_every)
  ema_decay = float(d.ema_decay if ema_decay is None else ema_decay)
  _checks.check_in_range("ema_decay", ema_decay, low=0.0, high=1.0,
                         high_closed=True)
  return steps, min(eval_every, steps), ema_decay


# ----------------------------------------------------------------------------
# Tuning and the summary.
# ----------------------------------------------------------------------------


def _group_mean(cells, metric, keys):
  """Mean / std / #non-finite of ``metric`` over seeds for each unique key tuple."""
  cols = [np.asarray(cells[k]) for k in keys]
  stacked = np.stack(cols, axis=1)
  uniq, inv = np.unique(stacked, axis=0, return_inverse=True)
  inv = inv.reshape(-1)
  vals = np.asarray(cells[metric], np.float64)
  if "diverged" in cells:   # a run that saw a non-finite loss or gradient
    vals = np.where(np.asarray(cells["diverged"], bool), np.nan, vals)
  n = len(uniq)
  mean = np.full(n, np.inf)
  std = np.full(n, np.nan)
  bad = np.zeros(n, np.int32)
  for g in range(n):
    v = vals[inv == g]
    finite = np.isfinite(v)
    bad[g] = int(np.sum(~finite))
    if finite.all():
      mean[g] = float(np.mean(v))
      std[g] = float(np.std(v))
  return uniq, mean, std, bad


def tune_learning_rate(cells: Mapping[str, np.ndarray],
                       metrics: Sequence[str] = TUNE_METRICS
                       ) -> dict[str, np.ndarray]:
  """Per (b1, b2), the learning rate with the lowest mean-over-seeds metric.

  A learning rate at which any seed diverged (a non-finite metric) has mean
  +inf and is never chosen unless every learning rate diverged; then the
  (b1, b2) gets NaN (grey in the heatmaps).

  Args:
    cells: a study's tidy table (columns ``b1``, ``b2``, ``lr``, ``seed`` and
      the metrics).
    metrics: the metrics to tune for (lower is better).

  Returns:
    A tidy table with one entry per (b1, b2), sorted by b1 then b2:
    ``b1``, ``b2`` and for each metric ``m``: ``lr_m``, ``m`` (the mean over
    seeds), ``m_std``, ``m_diverged`` (number of seeds with a non-finite value
    at ``lr_m``, or of all cells if none is finite); for tasks with an
    accuracy also ``val_acc`` and ``val_acc_ema`` at the learning rates tuned
    for ``val_loss`` and ``val_loss_ema``.

  Example:
    >>> import numpy as np
    >>> from ftrl_adam import grid, studies
    >>> cells = grid.product(b1=[0.9], b2=[0.99], lr=[0.1, 0.01], seed=[0, 1])
    >>> cells["val_loss"] = np.float32([3.0, 2.0, 1.0, 5.0])  # lr 0.1: 2.5
    >>> t = studies.tune_learning_rate(cells, metrics=["val_loss"])
    >>> t["lr_val_loss"][0], float(t["val_loss"][0])
    (np.float32(0.1), 2.5)
  """
  for k in ("b1", "b2", "lr", "seed"):
    if k not in cells:
      raise KeyError(f"The study table has no column {k!r}.")
  pairs = np.unique(np.stack([np.asarray(cells["b1"]), np.asarray(cells["b2"])],
                             axis=1), axis=0)
  out: dict[str, np.ndarray] = {"b1": pairs[:, 0].astype(np.float32),
                                "b2": pairs[:, 1].astype(np.float32)}
  extra = {"val_loss": "val_acc", "val_loss_ema": "val_acc_ema"}
  for metric in metrics:
    if metric not in cells:
      raise KeyError(f"The study table has no metric {metric!r}.")
    uniq, mean, std, bad = _group_mean(cells, metric, ("b1", "b2", "lr"))
    lr_best = np.full(len(pairs), np.nan, np.float32)
    m_best = np.full(len(pairs), np.nan)
    s_best = np.full(len(pairs), np.nan)
    d_best = np.zeros(len(pairs), np.int32)
    acc_name = extra.get(metric) if extra.get(metric) in cells else None
    acc_best = np.full(len(pairs), np.nan)
    if acc_name:
      _, acc_mean, _, _ = _group_mean(cells, acc_name, ("b1", "b2", "lr"))
    for p, (b1, b2) in enumerate(pairs):
      rows = np.flatnonzero((uniq[:, 0] == b1) & (uniq[:, 1] == b2))
      if not np.any(np.isfinite(mean[rows])):
        d_best[p] = int(np.sum(bad[rows]))
        continue
      i = rows[int(np.argmin(mean[rows]))]  # ties: the smaller learning rate
      lr_best[p], m_best[p], s_best[p], d_best[p] = (
          uniq[i, 2], mean[i], std[i], bad[i])
      if acc_name:
        acc_best[p] = acc_mean[i]
    out[f"lr_{metric}"] = lr_best
    out[metric] = m_best
    out[f"{metric}_std"] = s_best
    out[f"{metric}_diverged"] = d_best
    if acc_name:
      out[acc_name] = acc_best
  return out


def best_b2_per_b1(tuned: Mapping[str, np.ndarray], metric: str = "val_loss"
                   ) -> list[dict[str, Any]]:
  """For each b1, the b2 with the lowest tuned ``metric``, next to b1 and b1**2.

  The rows of :func:`ftrl_adam.lab.report.best_b2_per_b1` (the one summary of
  every experiment) on the tuned table, with the tuned learning rate.

  Returns:
    One dict per b1 (ascending) with ``b1``, ``b1_squared``, ``best_b2``,
    ``lr`` (tuned), ``value`` (the metric there), ``value_at_b2_eq_b1`` (NaN
    if b2 = b1 is not on the grid), ``ratio`` = b1 / sqrt(best_b2) (Nguyen's
    beta), ``nearer`` - ``"b1"`` or ``"b1^2"``, whichever is closer to the
    best b2 in log(1 - b) (``"-"`` if no b2 is finite) - and ``b2_at_edge``
    (the best b2 is the smallest or largest b2 of a grid of more than two:
    the optimum may lie outside the grid).
  """
  rows = _report.best_b2_per_b1(tuned, metric)
  _, _, lrs = grid.pivot(tuned, f"lr_{metric}")
  xs, ys, _ = grid.pivot(tuned, metric)
  for j, r in enumerate(rows):
    i = np.flatnonzero(ys == np.float32(r["best_b2"])) if math.isfinite(
        r["best_b2"]) else []
    r.update(lr=float(lrs[i[0], j]) if len(i) else math.nan, value=r["best"],
             value_at_b2_eq_b1=r["at_b2_eq_b1"], b2_at_edge=r["at_edge"])
  return rows


def format_summary(rows: Sequence[Mapping[str, Any]], metric: str,
                   title: str = "") -> str:
  """The summary table printed by :func:`run_study` (one line per b1)."""
  lines = [title] if title else []
  lines.append(f"best b2 for each b1 ({metric}, learning rate tuned per "
               f"(b1, b2), mean over seeds):")
  lines += _report.format_rows(rows, metric, [
      ("nearer", lambda r: r["nearer"]),
      ("b1/sqrt(b2)", lambda r: _report.fmt(r["ratio"])),
      ("lr", lambda r: _report.fmt(r["lr"])),
      (f"{metric} at b2=b1", lambda r: _report.fmt(r["value_at_b2_eq_b1"]))])
  finite = [r for r in rows if math.isfinite(r["value"])]
  if finite:
    n_b1 = sum(r["nearer"] == "b1" for r in finite)
    lines.append(
        f"best b2 nearer to b1 than to b1^2 (in log(1 - b)) for {n_b1} of "
        f"{len(finite)} b1 values.")
    best = min(finite, key=lambda r: r["value"])
    lines.append(
        f"overall best (no seed diverged): b1={best['b1']:.6g}, "
        f"b2={best['best_b2']:.6g}, lr={best['lr']:.3g}, "
        f"{metric}={best['value']:.5g}")
  return "\n".join(lines)


# ----------------------------------------------------------------------------
# The study as an experiment.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Study:
  """A checked training study (build it with :func:`make_study`): an experiment.

  Attributes:
    task: the :class:`~ftrl_adam.studies.Task`.
    b1: the b1 axis.
    b2: the b2 axis.
    learning_rates: the learning-rate axis.
    seeds: the seeds.
    steps: training steps per run.
    eval_every: steps between evaluations.
    ema_decay: decay of the parameter EMA.
    eps: Adam's epsilon.
    metric: the metric the summary ranks by.
    chunk_size: runs per compiled chunk.
  """

  task: Task
  b1: tuple[float, ...]
  b2: tuple[float, ...]
  learning_rates: tuple[float, ...]
  seeds: tuple[int, ...]
  steps: int
  eval_every: int
  ema_decay: float
  eps: float
  metric: str
  chunk_size: int

  FORMAT = "ftrl_adam.studies.study"
  WHAT = "study"
  FIGURE_PREFIXES = ("heatmap_",)
  EXTRA_TABLES = ("tuned",)

  @property
  def n_runs(self) -> int:
    return (len(self.b1) * len(self.b2) * len(self.learning_rates)
            * len(self.seeds))

  def table(self) -> dict[str, np.ndarray]:
    return study_table(self.b1, self.b2, self.learning_rates, self.seeds)

  def config(self) -> dict[str, Any]:
    return {
        "study": "ftrl_adam.studies.run_study",
        "task": self.task.name,
        "task_info": dict(self.task.info),
        "num_params": self.task.num_params(),
        "optimizer": "optax.chain(ftrl_adam(lr, b1, b2, eps), "
                     "ema_params(ema_decay))",
        "steps": self.steps, "eval_every": self.eval_every,
        "ema_decay": self.ema_decay, "eps": self.eps,
        "axes": {"b1": list(self.b1), "b2": list(self.b2),
                 "lr": list(self.learning_rates), "seed": list(self.seeds)},
        "metric": self.metric, "chunk_size": self.chunk_size,
        "lr_tuning": "per (b1, b2): the lr with the lowest mean over seeds, "
                     "never one where a seed diverged (Orvieto & Gower 2025)",
    }

  def size(self) -> Size:
    n = self.n_runs
    params = float(self.task.num_params())
    return Size(
        cells=n, work=float(n) * self.steps, unit="training steps",
        host_bytes=float(n) * 400.0,
        chunk_bytes=float(min(self.chunk_size, n)) * params * 4.0 * 8.0,
        rate=0.0, too_big_hint="use fewer values of --b1, --b2, --lrs or "
                               "--seeds")

  def parts(self, done=()) -> list[Part]:
    if done:
      return []
    cell_fn = make_cell_fn(self.task, steps=self.steps,
                           eval_every=self.eval_every,
                           ema_decay=self.ema_decay, eps=self.eps)
    return [Part(name="train", n_cells=self.n_runs, table=self.table,
                      cell_fn=cell_fn, config=self.config(),
                      chunk_size=self.chunk_size,
                      work_per_cell=float(self.steps))]

  def assemble(self, results) -> dict[str, np.ndarray]:
    return dict(results[0][1])

  def csv_columns(self, table):
    return [k for k, v in table.items() if np.ndim(v) == 1]

  def extra_tables(self, table) -> dict[str, dict[str, np.ndarray]]:
    return {"tuned": tune_learning_rate(table)}

  def summarize(self, table, extra) -> list[dict[str, Any]]:
    return best_b2_per_b1(extra["tuned"], self.metric)

  def format_summary(self, result: Result) -> str:
    metric = self.metric
    title = (f"study: {self.task.name} "
             f"({self.task.info.get('description', '')}), {self.n_runs} runs "
             f"of {self.steps} steps in {seconds_line(result)} on "
             f"{jax.device_count()} x {jax.devices()[0].device_kind}")
    text = format_summary(result.summary, metric, title)
    if not metric.endswith("_ema"):
      text += "\n\n" + format_summary(
          best_b2_per_b1(result.extra["tuned"], _ema_of(metric)),
          _ema_of(metric))
    cells = result.table
    n_div = int(np.sum(np.asarray(cells["diverged"])))
    if n_div:
      text += (f"\n{n_div} of {self.n_runs} runs diverged (a non-finite "
               f"gradient or loss); no learning rate where a seed diverged "
               f"is ever chosen.")
    return text

  def figures(self, result: Result) -> list[Heatmap]:
    tuned = result.extra["tuned"]
    n_b = max(len(self.b1), len(self.b2))
    return _heatmaps(tuned, list(dict.fromkeys(
        [self.metric, _ema_of(self.metric)])), self.task.name,
        annotate=n_b <= 10)


def make_study(task: Task | str = "digits", *,
          task_options: Optional[Mapping[str, Any]] = None,
          **options: Any) -> Study:
  """Checks a training study's options and returns its :class:`Study`.

  Nothing is compiled; every option has the default of ``ftrl-adam study``
  (:data:`STUDY_OPTIONS`).  A bad value raises a ``ValueError`` naming it.

  Args:
    task: a :class:`~ftrl_adam.studies.Task` or a built-in name.
    task_options: keyword arguments of the built-in task (by name only).
    **options: ``b1``, ``b2`` (in [0, 1)), ``learning_rates`` (> 0; default
      the task's), ``seeds``, ``steps``, ``eval_every``, ``ema_decay``,
      ``eps``, ``metric``, ``chunk_size``.

  Returns:
    A :class:`Study`.
  """
  o = _opt.fill([x for x in STUDY_OPTIONS if x.name != "task"], options,
                "make_study")
  if isinstance(task, str):
    task = tasks_lib.make_task(task, **dict(task_options or {}))
  elif not isinstance(task, Task):
    raise ValueError(
        f"`task` must be a Task or one of {', '.join(map(repr, tasks_lib.TASKS))}"
        f"; got {task!r}.")
  elif task_options:
    raise ValueError("`task_options` only applies to a task given by name.")
  _checks.check_choice("metric", o["metric"], TUNE_METRICS)
  lrs = (task.defaults.learning_rates if o["learning_rates"] is None
         else o["learning_rates"])
  table = study_table(o["b1"], o["b2"], lrs, o["seeds"])
  steps, eval_every, ema_decay = _settings(task, o["steps"], o["eval_every"],
                                           o["ema_decay"])
  _checks.check_in_range("eps", o["eps"], low=0.0)
  chunk = _checks.check_positive_int("chunk_size", o["chunk_size"])
  return Study(
      task=task, b1=tuple(np.unique(table["b1"]).tolist()),
      b2=tuple(np.unique(table["b2"]).tolist()),
      learning_rates=tuple(np.unique(table["lr"]).tolist()),
      seeds=tuple(int(s) for s in dict.fromkeys(table["seed"].tolist())),
      steps=steps, eval_every=eval_every, ema_decay=ema_decay,
      eps=float(o["eps"]), metric=o["metric"], chunk_size=chunk)


def _heatmaps(tuned, metrics, task_name, annotate) -> list[Heatmap]:
  """heatmap_<metric> for each metric and heatmap_lr, as data.

  The loss colour scale is logarithmic and capped at the 90th percentile of
  the finite values, so a few diverging (b1, b2) do not wash out the rest;
  the numbers written in the cells are the true ones.
  """

  def capped(values):
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size >= 2 and np.quantile(v, 0.9) > v.min():
      return float(v.min()), float(np.quantile(v, 0.9))
    return None

  overlays = ("b2=b1", "b2=b1^2")
  out = [Heatmap(
      name=f"heatmap_{metric}", value=metric, source="tuned", log_value=True,
      overlays=overlays, annotate=annotate,
      color_range=capped(tuned[metric]),
      label=f"{metric} at the tuned lr (mean over seeds)",
      title=f"{task_name}: {metric}, lr tuned per cell, mean over seeds")
         for metric in metrics]
  out.append(Heatmap(
      name="heatmap_lr", value=f"lr_{metrics[0]}", source="tuned",
      log_value=True, overlays=overlays, annotate=annotate,
      label="tuned learning rate",
      title=f"{task_name}: learning rate tuned for {metrics[0]}"))
  return out


@dataclasses.dataclass(frozen=True)
class StudyResult:
  """What :func:`run_study` returns.

  Attributes:
    cells: the tidy table, one entry per run: ``b1, b2, lr, seed`` and every
      metric of :func:`ftrl_adam.studies.train` (``results.csv``).
    tuned: one entry per (b1, b2) (:func:`tune_learning_rate`, ``tuned.csv``).
    best_b2: one dict per b1 (see :func:`best_b2_per_b1`).
    summary: the printed summary text.
    config: the study's configuration (as written to ``run.json``).
    files: paths written (empty without ``out_dir``).
    seconds: wall time of the run (compilation included).
  """

  cells: dict[str, np.ndarray]
  tuned: dict[str, np.ndarray]
  best_b2: list[dict[str, Any]]
  summary: str
  config: dict[str, Any]
  files: dict[str, str]
  seconds: float


def run_study(
    task: Task | str = "digits",
    *,
    out_dir: Optional[str | os.PathLike] = None,
    progress: bool = True,
    overwrite: bool = False,
    plots: bool = True,
    task_options: Optional[Mapping[str, Any]] = None,
    verbose: bool = True,
    reproducible: bool = True,
    **options: Any,
) -> StudyResult:
  r"""Trains ``task`` over b1 x b2 x learning rates x seeds; tunes lr per (b1, b2).

  :func:`make_study` checks the options, then the lab's runner
  (:func:`ftrl_adam.lab.experiment.run_experiment`) trains every cell -
  :func:`ftrl_adam.studies.train`, FTRL-Adam + EMA of the parameters, the
  whole loop under ``lax.scan`` - vmapped over chunks of ``chunk_size``
  cells, sharded over all devices, one compilation, and (with ``out_dir``)
  resumable.  Then the learning rate is tuned per (b1, b2) for each metric of
  :data:`TUNE_METRICS` (:func:`tune_learning_rate`; never a learning rate at
  which a seed diverged) and the best b2 of each b1 is reported next to b1
  and b1**2 (:func:`best_b2_per_b1`).

  Args:
    task: a :class:`~ftrl_adam.studies.Task` or a built-in name
      (``"digits"``, ``"charlm"``, ``"quadratic"``, ``"rosenbrock"``).
    out_dir: results folder (resumable); nothing is written without it.  The
      fingerprint holds the task's ``name`` and ``info`` (for
      :func:`~ftrl_adam.studies.flax_task`: a hash of the model, the loss and
      the data) and the settings.
    progress: the runner's size line and progress lines (stderr).
    overwrite: start ``out_dir`` afresh instead of resuming.
    plots: write the heatmaps (needs ``out_dir``).
    task_options: keyword arguments of the built-in task when ``task`` is a
      name.
    verbose: print the summary.
    reproducible: compile with :func:`ftrl_adam.grid.compiler_options`, so
      that every cell equals :func:`single_run` bit for bit (default True);
      False: ``grid.fast_compiler_options()`` (XLA's defaults, LLVM at -O2
      on CPU), equal to float32 rounding.
    **options: the options of :func:`make_study`: ``b1``, ``b2`` (default the grid
      of Orvieto & Gower, :data:`OG_AXIS`), ``learning_rates``, ``seeds``,
      ``steps``, ``eval_every``, ``ema_decay``, ``eps``, ``metric``,
      ``chunk_size``.

  Returns:
    A :class:`StudyResult`.

  Raises:
    ValueError: an unknown task, an empty axis, b outside [0, 1), a learning
      rate <= 0, a bad setting or metric - all before anything is compiled.
    ftrl_adam.grid.ResultsFolderError: an ``out_dir`` of another run.
  """
  spec = make_study(task, task_options=task_options, **options)
  res = run_experiment(spec, out_dir=out_dir, progress=progress,
                       overwrite=overwrite,
                       plots=plots and out_dir is not None,
                       reproducible=reproducible)
  text = res.text
  if verbose and jax.process_index() == 0:
    print(text)
  return StudyResult(cells=res.table, tuned=res.extra["tuned"],
                     best_b2=res.summary, summary=text,
                     config={**spec.config(), "reproducible": reproducible},
                     files=res.files, seconds=res.seconds["wall"])


def _ema_of(metric: str) -> str:
  return metric if metric.endswith("_ema") else f"{metric}_ema"
