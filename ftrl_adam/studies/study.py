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

Files written to ``out_dir`` (with the engine's ``manifest.json`` and chunk
files, which make a second identical call resume):

* ``cells.csv``: one row per cell (b1, b2, lr, seed and every metric of
  :func:`ftrl_adam.studies.train`);
* ``tuned.csv``: one row per (b1, b2): for each tuned metric the chosen
  learning rate, the mean and standard deviation over seeds, and the number of
  diverged seeds;
* ``study.json``: the configuration, versions, task facts and the summary;
* ``heatmap_<metric>.png``: the tuned metric over (b1, b2), axes in log(1 - b),
  with the lines b2 = b1 and b2 = b1**2; ``heatmap_lr.png``: the tuned
  learning rate;
* ``summary.txt``: the printed summary.

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
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from ftrl_adam import _checks
from ftrl_adam import grid
from ftrl_adam.studies import tasks as tasks_lib
from ftrl_adam.studies import train as train_lib
from ftrl_adam.studies.tasks import Task

#: Metrics the learning rate can be tuned on (lower is better).
TUNE_METRICS = ("val_loss", "val_loss_ema", "best_val_loss",
                "best_val_loss_ema")

#: The grid of Orvieto & Gower (2025): b = 1 - kappa (1 - 0.9),
#: kappa in {2**-5, ..., 2**2} (docs/theory.md section 6), as a grid axis spec.
OG_AXIS = "log1m:0.6:0.996875:8"

#: The default study of ``ftrl-adam study`` (about a minute on 2 CPU cores).
DEFAULT_STUDY = dict(task="digits", b1=OG_AXIS, b2=OG_AXIS, learning_rates=None,
                     seeds=4, steps=None, chunk_size=64)


@dataclasses.dataclass(frozen=True)
class StudyResult:
  """What :func:`run_study` returns.

  Attributes:
    cells: the tidy table, one entry per cell: ``b1, b2, lr, seed`` and every
      metric of :func:`ftrl_adam.studies.train`.
    tuned: one entry per (b1, b2): the learning rate tuned for each metric of
      :data:`TUNE_METRICS` (``lr_<metric>``), the metric's mean and standard
      deviation over seeds at that learning rate (``<metric>``,
      ``<metric>_std``), ``diverged`` (seeds diverged at the learning rate tuned
      for ``metric``) and, for tasks with an accuracy, ``val_acc`` /
      ``val_acc_ema`` at the learning rates tuned for ``val_loss`` /
      ``val_loss_ema``.
    best_b2: one dict per b1 (see :func:`best_b2_per_b1`).
    summary: the printed summary text.
    config: the study's configuration (as written to ``study.json``).
    files: paths written (empty without ``out_dir``).
    seconds: wall time of the grid (compilation included).
  """

  cells: dict[str, np.ndarray]
  tuned: dict[str, np.ndarray]
  best_b2: list[dict[str, Any]]
  summary: str
  config: dict[str, Any]
  files: dict[str, str]
  seconds: float


# ----------------------------------------------------------------------------
# The table.
# ----------------------------------------------------------------------------


def _axis(name: str, values: Any, **range_kwargs) -> np.ndarray:
  """A validated 1-D axis: a spec string or a list; never empty."""
  try:
    arr = grid.parse_axis(values) if isinstance(values, str) else np.atleast_1d(
        np.asarray(values, dtype=np.float64))
  except (ValueError, TypeError) as e:
    raise ValueError(f"`{name}`: {e}") from e
  if arr.ndim != 1 or arr.size == 0:
    raise ValueError(
        f"`{name}` must be a non-empty list of numbers (the grid would be "
        f"empty); got {values!r}.")
  if range_kwargs:
    _checks.check_in_range(name, arr, **range_kwargs)
  return arr


def seed_axis(seeds: Any) -> np.ndarray:
  """Seeds from an int ``n`` (0..n-1), a list of ints, or a grid axis spec.

  Example:
    >>> from ftrl_adam import studies
    >>> studies.seed_axis(3).tolist(), studies.seed_axis("5,7").tolist()
    ([0, 1, 2], [5, 7])
  """
  if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
    if seeds < 1:
      raise ValueError(
          f"`seeds` must be a number of seeds >= 1 or a non-empty list; got "
          f"{seeds!r} (the grid would be empty).")
    return grid.seeds(int(seeds))
  if isinstance(seeds, str):
    text = seeds.strip()
    if text.isdigit():
      return seed_axis(int(text))
  arr = _axis("seeds", seeds)
  if np.any(arr != np.round(arr)) or np.any(np.abs(arr) > 2**31 - 1):
    raise ValueError(f"`seeds` must be integers (int32); got {arr.tolist()!r}.")
  if len(np.unique(arr)) != len(arr):
    raise ValueError(f"`seeds` must not repeat; got {arr.tolist()!r}.")
  return arr.astype(np.int32)


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
  b1 = _axis("b1", b1, low=0.0, high=1.0)
  b2 = _axis("b2", b2, low=0.0, high=1.0)
  lrs = _axis("learning_rates", learning_rates, low=0.0, low_closed=False)
  for name, arr in (("b1", b1), ("b2", b2), ("learning_rates", lrs)):
    if len(np.unique(arr.astype(np.float32))) != len(arr):
      raise ValueError(f"`{name}` must not repeat (in float32); got "
                       f"{arr.tolist()!r}.")
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
  steps = train_lib._check_int("steps", d.steps if steps is None else steps)  # pylint: disable=protected-access
  eval_every = train_lib._check_int(  # pylint: disable=protected-access
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


def _log_gap(a: float, b: float) -> float:
  """|log(1 - a) - log(1 - b)|: distance of two decays on the study's axis."""
  return abs(math.log1p(-a) - math.log1p(-b))


def best_b2_per_b1(tuned: Mapping[str, np.ndarray], metric: str = "val_loss"
                   ) -> list[dict[str, Any]]:
  """For each b1, the b2 with the lowest tuned ``metric``, next to b1 and b1**2.

  Returns:
    One dict per b1 (ascending) with ``b1``, ``b1_squared``, ``best_b2``,
    ``lr`` (tuned), ``value`` (the metric there), ``value_at_b2_eq_b1`` (NaN
    if b2 = b1 is not on the grid), ``ratio`` = b1 / sqrt(best_b2) (Nguyen's
    beta), ``nearer`` - ``"b1"`` or ``"b1^2"``, whichever is closer to the
    best b2 in log(1 - b) (``"-"`` if no b2 is finite) - and ``b2_at_edge``
    (the best b2 is the smallest or largest b2 of a grid of more than two:
    the optimum may lie outside the grid).
  """
  rows = []
  b1s = np.unique(tuned["b1"])
  for b1 in b1s:
    sel = tuned["b1"] == b1
    b2s, vals = tuned["b2"][sel], np.asarray(tuned[metric][sel], np.float64)
    lrs = tuned[f"lr_{metric}"][sel]
    eq = np.flatnonzero(b2s == b1)
    row = {"b1": float(b1), "b1_squared": float(b1) ** 2,
           "value_at_b2_eq_b1": float(vals[eq[0]]) if len(eq) else math.nan}
    if np.any(np.isfinite(vals)):
      i = int(np.nanargmin(np.where(np.isfinite(vals), vals, np.nan)))
      best = float(b2s[i])
      near = ("b1" if _log_gap(best, float(b1)) <= _log_gap(best, float(b1) ** 2)
              else "b1^2")
      edge = len(b2s) > 2 and best in (float(b2s.min()), float(b2s.max()))
      row.update(best_b2=best, lr=float(lrs[i]), value=float(vals[i]),
                 ratio=float(b1) / math.sqrt(best) if best > 0 else math.inf,
                 nearer=near, b2_at_edge=bool(edge))
    else:
      row.update(best_b2=math.nan, lr=math.nan, value=math.nan,
                 ratio=math.nan, nearer="-", b2_at_edge=False)
    rows.append(row)
  return rows


def format_summary(rows: Sequence[Mapping[str, Any]], metric: str,
                   title: str = "") -> str:
  """The summary table printed by :func:`run_study` (one line per b1)."""
  lines = []
  if title:
    lines.append(title)
  lines.append(f"best b2 for each b1 ({metric}, learning rate tuned per "
               f"(b1, b2), mean over seeds):")
  head = (f"{'b1':>9} {'b1^2':>9} {'best b2':>9} {'nearer':>6} "
          f"{'b1/sqrt(b2)':>11} {'lr':>9} {metric:>12} {'at b2=b1':>12}")
  lines += [head, "-" * len(head)]
  for r in rows:
    mark = "*" if r.get("b2_at_edge") else " "
    lines.append(
        f"{r['b1']:>9.6g} {r['b1_squared']:>9.6g} {r['best_b2']:>8.6g}{mark} "
        f"{r['nearer']:>6} {r['ratio']:>11.4f} {r['lr']:>9.3g} "
        f"{r['value']:>12.5g} {r['value_at_b2_eq_b1']:>12.5g}")
  if any(r.get("b2_at_edge") for r in rows):
    lines.append("* best b2 on the edge of the b2 grid: the optimum may lie "
                 "beyond it.")
  finite = [r for r in rows if math.isfinite(r["value"])]
  if finite:
    n_b1 = sum(r["nearer"] == "b1" for r in finite)
    lines.append(
        f"best b2 nearer to b1 than to b1^2 (in log(1 - b)) for {n_b1} of "
        f"{len(finite)} b1 values.")
    best = min(finite, key=lambda r: r["value"])
    lines.append(
        f"overall best: b1={best['b1']:.6g}, b2={best['best_b2']:.6g}, "
        f"lr={best['lr']:.3g}, {metric}={best['value']:.5g}")
  return "\n".join(lines)


# ----------------------------------------------------------------------------
# The study.
# ----------------------------------------------------------------------------


def _heatmaps(tuned, out_dir, metrics, task_name, annotate):
  """heatmap_<metric>.png for each metric and heatmap_lr.png (ftrl_adam.plots).

  The loss colour scale is logarithmic and capped at the 90th percentile of
  the finite values, so a few diverging (b1, b2) do not wash out the rest;
  the numbers written in the cells are the true ones.
  """
  import io  # pylint: disable=import-outside-toplevel

  from ftrl_adam import _grid_io  # pylint: disable=import-outside-toplevel
  from ftrl_adam import plots  # pylint: disable=import-outside-toplevel

  def save(fig, path, values=None):
    if values is not None:
      v = np.asarray(values, np.float64)
      v = v[np.isfinite(v) & (v > 0)]
      if v.size >= 2:
        lo, hi = float(v.min()), float(np.quantile(v, 0.9))
        if hi > lo:
          fig.axes[0].collections[0].set_clim(lo, hi)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _grid_io.atomic_write_bytes(path, buf.getvalue())

  files = {}
  overlays = ["b2=b1", "b2=b1^2"]
  for metric in metrics:
    path = os.path.join(out_dir, f"heatmap_{metric}.png")
    fig = plots.heatmap(
        tuned, metric, log_one_minus=True, log_value=True, overlays=overlays,
        annotate=annotate,
        title=f"{task_name}: {metric}, lr tuned per cell, mean over seeds")
    save(fig, path, tuned[metric])
    files[f"heatmap_{metric}"] = path
  lr_metric = f"lr_{metrics[0]}"
  path = os.path.join(out_dir, "heatmap_lr.png")
  fig = plots.heatmap(tuned, lr_metric, log_one_minus=True, log_value=True,
                      overlays=overlays, annotate=annotate,
                      title=f"{task_name}: learning rate tuned for "
                            f"{metrics[0]}")
  save(fig, path)
  files["heatmap_lr"] = path
  return files


def run_study(
    task: Task | str = "digits",
    *,
    b1: Any = OG_AXIS,
    b2: Any = OG_AXIS,
    learning_rates: Any = None,
    seeds: Any = 4,
    steps: Optional[int] = None,
    eval_every: Optional[int] = None,
    ema_decay: Optional[float] = None,
    eps: float = 1e-8,
    metric: str = "val_loss",
    chunk_size: int = 64,
    out_dir: Optional[str | os.PathLike] = None,
    progress: bool = True,
    overwrite: bool = False,
    plots: bool = True,
    task_options: Optional[Mapping[str, Any]] = None,
    verbose: bool = True,
) -> StudyResult:
  r"""Trains ``task`` over b1 x b2 x learning rates x seeds; tunes lr per (b1, b2).

  Every cell is :func:`ftrl_adam.studies.train` (FTRL-Adam + EMA of the
  parameters, the whole loop under ``lax.scan``); the grid engine vmaps it over
  chunks of ``chunk_size`` cells, sharded over all devices, with one
  compilation, and (with ``out_dir``) writes each chunk so that the same call
  resumes an interrupted study.  Then the learning rate is tuned per (b1, b2)
  for each metric of :data:`TUNE_METRICS` (:func:`tune_learning_rate`) and the
  best b2 of each b1 is reported next to b1 and b1**2 (:func:`best_b2_per_b1`).

  Args:
    task: a :class:`~ftrl_adam.studies.Task` or a built-in name
      (``"digits"``, ``"charlm"``, ``"quadratic"``, ``"rosenbrock"``).
    b1: values in [0, 1), a list or a grid axis spec; default the grid of
      Orvieto & Gower, 1 - b in {0.4, 0.2, ..., 0.003125} (:data:`OG_AXIS`).
    b2: values in [0, 1), as ``b1`` (same default).
    learning_rates: values > 0 (list or spec); default the task's.
    seeds: number of seeds (0..n-1), or a list of seeds.
    steps: training steps; default the task's.
    eval_every: steps between validation evaluations; default the task's.
    ema_decay: decay of ``ema_params``; default the task's.
    eps: Adam's epsilon.
    metric: the metric the summary ranks by, one of :data:`TUNE_METRICS`.
    chunk_size: cells per compiled chunk (memory bound, resume granularity).
    out_dir: results folder (resumable); nothing is written without it.
      The run's fingerprint holds the task's ``name`` and ``info`` and the
      settings: for your own :class:`~ftrl_adam.studies.Task`, put in ``info``
      what identifies its model and data, so that a changed task is never
      resumed from old results.
    progress: the engine's progress line per chunk (stderr).
    overwrite: start ``out_dir`` afresh instead of resuming.
    plots: write the heatmaps (needs ``out_dir``).
    task_options: keyword arguments of the built-in task when ``task`` is a
      name.
    verbose: print the summary.

  Returns:
    A :class:`StudyResult`.

  Raises:
    ValueError: an unknown task, an empty axis, b outside [0, 1), a learning
      rate <= 0, a bad setting or metric - all before anything is compiled.
    ftrl_adam.grid.ResultsFolderError: an ``out_dir`` of another run.
  """
  _checks.check_choice("metric", metric, TUNE_METRICS)
  if isinstance(task, str):
    task = tasks_lib.make_task(task, **dict(task_options or {}))
  elif not isinstance(task, Task):
    raise ValueError(
        f"`task` must be a Task or one of {', '.join(map(repr, tasks_lib.TASKS))}"
        f"; got {task!r}.")
  elif task_options:
    raise ValueError("`task_options` only applies to a task given by name.")
  lrs = task.defaults.learning_rates if learning_rates is None else learning_rates
  table = study_table(b1, b2, lrs, seeds)
  steps, eval_every, ema_decay = _settings(task, steps, eval_every, ema_decay)
  _checks.check_in_range("eps", eps, low=0.0)
  if plots and out_dir is None:
    plots = False
  cell_fn = make_cell_fn(task, steps=steps, eval_every=eval_every,
                         ema_decay=ema_decay, eps=float(eps))

  config = {
      "study": "ftrl_adam.studies.run_study",
      "task": task.name,
      "task_info": dict(task.info),
      "num_params": task.num_params(),
      "optimizer": "optax.chain(ftrl_adam(lr, b1, b2, eps), "
                   "ema_params(ema_decay))",
      "steps": steps, "eval_every": eval_every, "ema_decay": ema_decay,
      "eps": float(eps),
      "axes": {"b1": np.unique(table["b1"]).tolist(),
               "b2": np.unique(table["b2"]).tolist(),
               "lr": np.unique(table["lr"]).tolist(),
               "seed": np.unique(table["seed"]).tolist()},
      "metric": metric,
      "lr_tuning": "per (b1, b2): the lr with the lowest mean over seeds "
                   "(Orvieto & Gower 2025)",
  }
  files: dict[str, str] = {}
  if out_dir is not None:
    out_dir = os.fspath(out_dir)
  t0 = time.perf_counter()
  cells = grid.run_grid(cell_fn, table, chunk_size=chunk_size, out_dir=out_dir,
                        config=config, progress=progress, overwrite=overwrite)
  seconds = time.perf_counter() - t0

  tuned = tune_learning_rate(cells)
  rows = best_b2_per_b1(tuned, metric)
  rows_ema = best_b2_per_b1(tuned, f"{metric}_ema" if not metric.endswith(
      "_ema") else metric)
  n_cells = len(cells["b1"])
  title = (f"study: {task.name} ({task.info.get('description', '')}), "
           f"{n_cells} runs of {steps} steps in {seconds:.1f} s on "
           f"{jax.device_count()} x {jax.devices()[0].device_kind}")
  summary = format_summary(rows, metric, title)
  if not metric.endswith("_ema"):
    summary += "\n\n" + format_summary(rows_ema, f"{metric}_ema")
  n_div = int(np.sum(np.asarray(cells["diverged"])))
  if n_div:
    summary += f"\n{n_div} of {n_cells} runs diverged (non-finite loss)."
  is_writer = jax.process_index() == 0  # multi-host: process 0 writes
  if verbose and is_writer:
    print(summary)

  if out_dir is not None and is_writer:
    files["cells"] = os.path.join(out_dir, "cells.csv")
    grid.write_csv(cells, files["cells"])
    files["tuned"] = os.path.join(out_dir, "tuned.csv")
    grid.write_csv(tuned, files["tuned"])
    if plots:
      n_b = max(len(np.unique(tuned["b1"])), len(np.unique(tuned["b2"])))
      files.update(_heatmaps(tuned, out_dir,
                             list(dict.fromkeys([metric, _ema_of(metric)])),
                             task.name, annotate=n_b <= 10))
    files["summary"] = os.path.join(out_dir, "summary.txt")
    from ftrl_adam import _grid_io  # pylint: disable=import-outside-toplevel
    _grid_io.atomic_write_text(files["summary"], summary + "\n")
    files["json"] = os.path.join(out_dir, "study.json")
    grid.write_json(files["json"], config=config, table=cells, extra={
        "seconds": seconds, "chunk_size": chunk_size,
        "best_b2_per_b1": rows,
        "best_b2_per_b1_ema": rows_ema if not metric.endswith("_ema") else [],
        "diverged_runs": n_div,
        "files": {k: os.path.basename(v) for k, v in files.items()}})
  return StudyResult(cells=cells, tuned=tuned, best_b2=rows, summary=summary,
                     config=config, files=files, seconds=seconds)


def _ema_of(metric: str) -> str:
  return metric if metric.endswith("_ema") else f"{metric}_ema"
