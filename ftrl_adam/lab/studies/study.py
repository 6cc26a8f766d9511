"""A training study: every configuration of a grid trained in one program per rung.

:func:`make_study` checks a study's options and returns a :class:`Study`, an
experiment of the lab's runner (:func:`ftrl_adam.lab.experiment.run_experiment`,
the beta-grid's too: the same results folder layout and resume protocol);
:func:`run_study` runs it.  The grid is the product of the *axes* - b1, b2,
the learning rate ``lr``, and any hyperparameter of the built-in optimizer or
of an optimizer function of yours - and the seeds; each row of the table is
one training run (:mod:`ftrl_adam.lab.studies.train`), vmapped in chunks
and sharded over every device.  Then, for each combination of the *shown*
axes (default (b1, b2)), the *tuned* axes (default: the others, e.g. the
learning rate, as Orvieto & Gower 2025 tune it) are chosen by the lowest
validation loss averaged over seeds, and the summary reports, for each b1,
the best b2 next to b1 and b1**2 (docs/theory.md section 6).

With ``budget="halving"`` the runs go rung by rung
(:mod:`ftrl_adam.lab.studies.halving`): each rung is a part of the runner
whose table holds the configurations still running and, per cell, the state
the previous rung left (an array per cell), so a configuration continues
exactly where it stopped.  Files written to ``out_dir``:

* ``results.csv``: one row per run (every axis, the seed, every metric of
  :func:`ftrl_adam.studies.train`; with rungs also ``stopped_at`` and
  ``rung``);
* ``tuned.csv``: one row per shown combination: for each tuned metric the
  tuned values, the mean and standard deviation over seeds, and the number
  of diverged seeds (with halving: over the runs that reached the last step);
* ``run.json``, ``summary.txt``, ``heatmap_*.png``;
* ``grid_train/`` (one rung) or ``grid_rung0/``, ``grid_rung1/``, ...: the
  engine's manifests and chunk files.

References:
  Orvieto & Gower, *In Search of Adam's Secret Sauce*, 2025,
  https://arxiv.org/abs/2505.21829.
  Nguyen, *How to Set beta1, beta2 in Adam: An Online Learning Perspective*,
  ALT 2026, https://arxiv.org/abs/2510.03478.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from ftrl_adam.lab import engine as grid
from ftrl_adam.lab import options as _opt
from ftrl_adam.lab.experiment import run_experiment
from ftrl_adam.lab.protocol import Heatmap
from ftrl_adam.lab.protocol import Part
from ftrl_adam.lab.protocol import Result
from ftrl_adam.lab.protocol import Size
from ftrl_adam.lab.studies import cells as cells_lib
from ftrl_adam.lab.studies import halving
from ftrl_adam.lab.studies import optimizers as _optimizers
from ftrl_adam.lab.studies import registry
from ftrl_adam.lab.studies import study_options as so
from ftrl_adam.lab.studies import summary as _summary
from ftrl_adam.lab.studies import tuning
from ftrl_adam.lab.studies.task import Task
from ftrl_adam.lab.studies.train import Trainer
from ftrl_adam.lab.studies.train import STORED_SIGMA_RELS
from ftrl_adam.lab.studies.train import stored_powers

Table = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True, eq=False)
class Study:
  """A checked training study (build it with :func:`make_study`): an experiment.

  Attributes:
    task: the :class:`~ftrl_adam.studies.Task`.
    axes: ``((name, values), ...)``: every hyperparameter axis, in table
      order (b1, b2, lr, then the others).
    seeds: the seeds.
    optimizer: ``hp -> optax transformation``.
    optimizer_info: what the fingerprint knows of it (the built-in one's
      formula, or a digest of your function's code).
    steps, eval_every: training steps per run, steps between evaluations.
    ema_decay, ema_power: the parameter EMA (a constant decay, or Karras'
      power EMA when ``ema_power`` is set).
    eps: Adam's epsilon (unless an axis).
    metric: the metric tuned, ranked by halving, and summarised.
    shown, tuned: the axes of the heatmaps, and those minimised over.
    sigma_rels: the post-hoc EMA widths reported (empty: none kept).
    budget, rung_ends, halving_rate: ``"full"`` or ``"halving"``, the last
      step of each rung, the fraction kept (1 / rate).
    chunk_size: runs per compiled chunk.
  """

  task: Task
  axes: tuple[tuple[str, tuple[float, ...]], ...]
  seeds: tuple[int, ...]
  optimizer: Callable[[Mapping[str, Any]], Any]
  optimizer_info: str
  steps: int
  eval_every: int
  ema_decay: float
  ema_power: Optional[float]
  eps: float
  metric: str
  shown: tuple[str, ...]
  tuned: tuple[str, ...]
  sigma_rels: tuple[float, ...]
  budget: str
  rung_ends: tuple[int, ...]
  halving_rate: float
  chunk_size: int

  FORMAT = "ftrl_adam.studies.study"
  WHAT = "study"
  FIGURE_PREFIXES = ("heatmap_",)
  EXTRA_TABLES = ("tuned",)

  # ------------------------------------------------------------- the grid --
  def axis(self, name: str) -> tuple[float, ...]:
    return dict(self.axes).get(name, ())

  @property
  def b1(self) -> tuple[float, ...]:
    return self.axis("b1")

  @property
  def b2(self) -> tuple[float, ...]:
    return self.axis("b2")

  @property
  def learning_rates(self) -> tuple[float, ...]:
    return self.axis("lr")

  @property
  def axis_names(self) -> tuple[str, ...]:
    return tuple(n for n, _ in self.axes)

  @property
  def n_configs(self) -> int:
    return int(np.prod([len(v) for _, v in self.axes]))

  @property
  def n_runs(self) -> int:
    return self.n_configs * len(self.seeds)

  def table(self) -> Table:
    return grid.product(**{n: so.np_axis(v) for n, v in self.axes},
                        seed=np.asarray(self.seeds, np.int64))

  def trainer(self) -> Trainer:
    return Trainer(self.task, self.optimizer, self.steps, self.eval_every,
                   ema_decay=self.ema_decay, ema_power=self.ema_power,
                   sigma_rels=self.sigma_rels)

  def metrics(self) -> tuple[str, ...]:
    return tuning.TUNE_METRICS + ((tuning.POSTHOC_METRIC,) if self.sigma_rels
                                  else ())

  def config(self) -> dict[str, Any]:
    return {
        "study": "ftrl_adam.studies.run_study",
        "task": self.task.name, "task_info": dict(self.task.info),
        "num_params": self.task.num_params(),
        "optimizer": self.optimizer_info,
        "steps": self.steps, "eval_every": self.eval_every,
        "ema": (f"power {self.ema_power!r}" if self.ema_power is not None
                else f"decay {self.ema_decay!r}"),
        "eps": self.eps,
        "axes": {**{n: list(v) for n, v in self.axes},
                 "seed": list(self.seeds)},
        "shown": list(self.shown), "tuned": list(self.tuned),
        "metric": self.metric, "chunk_size": self.chunk_size,
        "sigma_rels": list(self.sigma_rels),
        "budget": {"kind": self.budget, "rung_ends": list(self.rung_ends),
                   "halving_rate": self.halving_rate},
        "tuning": "per shown combination: the tuned values with the lowest "
                  "mean over seeds, never where a seed diverged (Orvieto & "
                  "Gower 2025)",
    }

  # ------------------------------------------------------------ the rungs --
  def rung_counts(self) -> list[int]:
    """Configurations per rung at most (halving keeps ceil(n / rate))."""
    counts, n = [], self.n_configs
    for _ in self.rung_ends:
      counts.append(n)
      if self.budget == "halving":
        n = max(1, int(np.ceil(n / self.halving_rate)))
    return counts

  def size(self) -> Size:
    n = self.n_runs
    counts = [c * len(self.seeds) for c in self.rung_counts()]
    work = float(halving.compute(counts, self.rung_ends))
    params = float(self.task.num_params())
    example = {k: v[0] for k, v in self.axes}
    state = float(self.trainer().layout(example, self.steps).nbytes()) if len(
        self.rung_ends) > 1 else 0.0
    chunk = min(self.chunk_size, n)
    snaps = 4.0 * params * len(stored_powers()) * len(
        self.trainer().evaluation_steps()) if self.sigma_rels else 0.0
    note = ""
    if len(self.rung_ends) > 1:
      note = (f"{len(self.rung_ends)} rungs ending at steps "
              f"{', '.join(map(str, self.rung_ends))}: at most "
              f"{work / (n * self.steps):.0%} of the full grid's compute")
    return Size(
        cells=n, work=work, unit="training steps",
        host_bytes=float(n) * 400.0 + 2.0 * counts[0] * state,
        chunk_bytes=chunk * (params * 4.0 * 8.0 + snaps + 2.0 * state),
        rate=0.0, too_big_hint="use fewer values of --b1, --b2, --lrs, --axis "
                               "or --seeds", note=note)

  def _part(self, i: int, table: Callable[[], Table], n: int) -> Part:
    start = self.rung_ends[i - 1] if i else 0
    stop = self.rung_ends[i]
    last = i == len(self.rung_ends) - 1
    fn = cells_lib.rung_cell_fn(
        self.trainer(), self.axis_names, start, stop, last=last,
        example={k: v[0] for k, v in self.axes})
    single = len(self.rung_ends) == 1
    ends = (0, *self.rung_ends)
    later = tuple(float(c * len(self.seeds) * (ends[j + 1] - ends[j]))
                  for j, c in enumerate(self.rung_counts()) if j > i)
    return Part(name="train" if single else f"rung{i}", n_cells=n, later=later,
                table=table, cell_fn=fn,
                config=self.config() if single else {
                    **self.config(), "rung": i, "start": start, "stop": stop},
                chunk_size=self.chunk_size, work_per_cell=float(stop - start))

  def parts(self, done: Sequence[tuple[Part, Table]] = ()) -> list[Part]:
    i = len(done)
    if i == len(self.rung_ends):
      return []
    if i == 0:
      return [self._part(0, lambda: {**self.table(), "row": np.arange(
          self.n_runs, dtype=np.int32)} if len(self.rung_ends) > 1
          else self.table(), self.n_runs)]
    prev = done[-1][1]
    keep = halving.survivors(prev, self.axis_names, self.metric,
                             self.halving_rate if self.budget == "halving"
                             else 1.0)
    if not keep.any():       # every configuration diverged
      return []
    columns = (*self.axis_names, "seed", "row")

    def table() -> Table:
      out = {k: np.asarray(prev[k])[keep] for k in columns}
      out.update({cells_lib.STATE_IN[k]: np.asarray(prev[c])[keep]
                  for k, c in cells_lib.STATE_OUT.items()})
      return out

    return [self._part(i, table, int(keep.sum()))]

  # ------------------------------------------------------------ the table --
  def assemble(self, done: Sequence[tuple[Part, Table]]) -> Table:
    if len(self.rung_ends) == 1:
      return dict(done[0][1])
    state = set(cells_lib.STATE_OUT.values())
    first = done[0][1]
    out = {k: np.array(v) for k, v in first.items()
           if k not in state and k != "row"}
    out["stopped_at"] = np.full(self.n_runs, self.rung_ends[0], np.int32)
    out["rung"] = np.zeros(self.n_runs, np.int32)
    for i, (_, t) in enumerate(done[1:], start=1):
      rows = np.asarray(t["row"])
      for k in out:
        if k in t:
          out[k][rows] = np.asarray(t[k])
      out["stopped_at"][rows] = self.rung_ends[i]
      out["rung"][rows] = i
    return out

  def csv_columns(self, table: Table) -> list[str]:
    return [k for k, v in table.items() if np.ndim(v) == 1]

  def extra_tables(self, table: Table) -> dict[str, Table]:
    rows = None
    if "stopped_at" in table:
      rows = np.asarray(table["stopped_at"]) == self.steps
    return {"tuned": tuning.tune(table, shown=self.shown, tuned=self.tuned,
                                 metrics=self.metrics(), rows=rows)}

  # -------------------------------------------------------------- reports --
  def summarize(self, table: Table, extra: Mapping[str, Table]
                ) -> list[dict[str, Any]]:
    tuned = extra["tuned"]
    if self.shown == ("b1", "b2"):
      return _summary.best_b2_per_b1(tuned, self.metric, self.tuned)
    if len(self.shown) == 2:
      return _summary.best_y_per_x(tuned, self.metric, *self.shown,
                                   tuned_axes=self.tuned)
    return [_summary.overall_best(tuned, self.metric, self.shown, self.tuned)]

  def format_summary(self, result: Result) -> str:
    return _summary.study_text(self, result)

  def figures(self, result: Result) -> list[Heatmap]:
    if len(self.shown) != 2:
      return []
    tuned = result.extra["tuned"]
    n = max(len(self.axis(self.shown[0])), len(self.axis(self.shown[1])))
    metrics = list(dict.fromkeys([self.metric, _ema_of(self.metric)]))
    extra = []
    if "stopped_at" in result.table:
      extra.append(Heatmap(
          name="heatmap_stopped_at", value="stopped_at", reduce="max",
          x=self.shown[0], y=self.shown[1], log_one_minus=False,
          label="last step trained (the best configuration of the cell)",
          title=f"{self.task.name}: where halving stopped each cell",
          annotate=n <= 10))
    return _summary.heatmaps(tuned, metrics, self.task.name, self.shown,
                             self.tuned, annotate=n <= 10, extra=extra,
                             stopped_early=bool(extra))


def _ema_of(metric: str) -> str:
  if metric.endswith("_ema") or metric == tuning.POSTHOC_METRIC:
    return metric
  return f"{metric}_ema"


def make_study(task: Task | str = "digits", *,
               task_options: Optional[Mapping[str, Any]] = None,
               **options: Any) -> Study:
  """Checks a training study's options and returns its :class:`Study`.

  Nothing is compiled; every option has the default of ``ftrl-adam study``
  (:data:`~ftrl_adam.studies.STUDY_OPTIONS`).  A bad value raises a
  ``ValueError`` naming it, before anything is compiled.

  Args:
    task: a :class:`~ftrl_adam.studies.Task` or a built-in name.
    task_options: keyword arguments of the built-in task (by name only).
    **options: ``b1``, ``b2`` (in [0, 1)), ``learning_rates`` (> 0; default
      the task's), ``axes`` (more axes: ``{name: values}``), ``optimizer``
      (``hp -> optax transformation``), ``seeds``, ``steps``, ``eval_every``,
      ``ema_decay``, ``ema_sigma_rel``, ``eps``, ``sigma_rels``, ``metric``,
      ``show``, ``tune``, ``budget``, ``rungs``, ``halving_rate``,
      ``chunk_size``.

  Returns:
    A :class:`Study`.

  Example:
    >>> import optax, ftrl_adam as fa
    >>> from ftrl_adam import studies
    >>> spec = studies.make_study(
    ...     "quadratic", task_options={"dim": 4}, b1=[0.9], b2=[0.99],
    ...     learning_rates=[0.03, 0.1], axes={"wd": [0.0, 1e-3]}, seeds=2,
    ...     optimizer=lambda hp: optax.chain(
    ...         optax.add_decayed_weights(hp["wd"]),
    ...         fa.ftrl_adam(hp["lr"], hp["b1"], hp["b2"])))
    >>> spec.axis_names, spec.shown, spec.tuned, spec.n_runs
    (('b1', 'b2', 'lr', 'wd'), ('b1', 'b2'), ('lr', 'wd'), 8)
  """
  o = _opt.fill([x for x in so.STUDY_OPTIONS if x.name != "task"], options,
                "make_study")
  task = so.resolve_task(task, task_options)
  optimizer, info = so.resolve_optimizer(o["optimizer"], o["eps"])
  user = o["optimizer"] is not None
  b1 = o["b1"] if not user or "b1" in options else None
  b2 = o["b2"] if not user or "b2" in options else None
  lrs = (task.defaults.learning_rates if o["learning_rates"] is None
         else o["learning_rates"])
  axes = so.standard_axes(b1, b2, lrs)
  names = registry.task_options(task.name) if task.name in registry.TASKS \
      else ()
  axes.update(so.extra_axes(o["axes"], user, names))
  if not user and ("b1" not in axes or "b2" not in axes):
    raise ValueError("`b1` and `b2` are required by the built-in optimizer.")
  seeds = _opt.seeds(o["seeds"])
  steps, eval_every, ema_decay = cells_lib.settings(
      task, o["steps"], o["eval_every"], o["ema_decay"])
  _opt.positive_float("eps", o["eps"], zero_ok=True)
  sigma_rels = so.sigma_rels(o["sigma_rels"])
  metric = so.metric(o["metric"], bool(sigma_rels))
  shown, tuned = so.resolve_roles(axes, o["show"], o["tune"])
  kind, n_rungs, rate = so.budget(o["budget"], o["rungs"], o["halving_rate"])
  ema_power = so.ema_power(o["ema_sigma_rel"])
  if ema_power is not None and "ema_decay" in axes:
    raise ValueError("`ema_sigma_rel` replaces the EMA's decay: it cannot go "
                     "with an `ema_decay` axis.")
  study = Study(
      task=task, axes=tuple((n, tuple(v)) for n, v in axes.items()),
      seeds=seeds, optimizer=optimizer, optimizer_info=info, steps=steps,
      eval_every=eval_every, ema_decay=ema_decay, ema_power=ema_power,
      eps=float(o["eps"]), metric=metric, shown=shown, tuned=tuned,
      sigma_rels=sigma_rels, budget=kind,
      rung_ends=halving.rung_ends(steps, eval_every, n_rungs, rate),
      halving_rate=rate,
      chunk_size=_opt.positive_int("chunk_size", o["chunk_size"]))
  _check_built(study)
  return study


def _check_built(study: Study) -> None:
  """What needs the task's shapes: the post-hoc fit and the optimizer's axes."""
  trainer = study.trainer()
  if study.sigma_rels:
    try:
      trainer.posthoc_fit(study.steps)
    except ValueError as e:
      raise ValueError(
          f"`sigma_rels`: {str(e).split('.  ')[0]}, from the snapshots of the "
          f"widths {', '.join(map(str, STORED_SIGMA_RELS))} taken at the "
          f"{len(trainer.evaluation_steps())} evaluations (every "
          f"{study.eval_every} steps): evaluate more often (`eval_every`) or "
          f"ask for widths nearer 0.05-0.1.") from e
  _optimizers.check_axes(trainer.transform, dict(study.axes), study.task)


@dataclasses.dataclass(frozen=True)
class StudyResult:
  """What :func:`run_study` returns.

  Attributes:
    cells: the tidy table, one entry per run (``results.csv``).
    tuned: one entry per shown combination (``tuned.csv``).
    best_b2: the summary rows (with (b1, b2) shown: one dict per b1, see
      :func:`~ftrl_adam.studies.best_b2_per_b1`).
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
    task: Task | str | Study = "digits",
    *,
    out_dir: Optional[str | os.PathLike] = None,
    progress: bool = True,
    overwrite: bool = False,
    plots: bool = True,
    redraw: bool = False,
    task_options: Optional[Mapping[str, Any]] = None,
    verbose: bool = True,
    reproducible: bool = True,
    **options: Any,
) -> StudyResult:
  r"""Trains ``task`` over the study's axes x seeds; tunes per shown combination.

  :func:`make_study` checks the options, then the lab's runner
  (:func:`ftrl_adam.lab.experiment.run_experiment`) trains every cell -
  :func:`ftrl_adam.studies.train`, the whole loop under ``lax.scan`` -
  vmapped over chunks of ``chunk_size`` cells, sharded over all devices, one
  compilation per rung, and (with ``out_dir``) resumable at every chunk of
  every rung.  Then the tuned axes are chosen per shown combination for each
  tuned metric (:func:`~ftrl_adam.lab.studies.tuning.tune`; never where a
  seed diverged) and, with (b1, b2) shown, the best b2 of each b1 is
  reported next to b1 and b1**2.

  Args:
    task: a :class:`~ftrl_adam.studies.Task` or a built-in name
      (``"digits"``, ``"charlm"``, ``"quadratic"``, ``"rosenbrock"``), or a
      :class:`Study` from :func:`make_study` (then no other option).
    out_dir: results folder (resumable); nothing is written without it.  The
      fingerprint holds the task's ``name`` and ``info`` (for
      :func:`~ftrl_adam.studies.flax_task`: a hash of the model, the loss and
      the data), the optimizer (a hash of your function's code) and every
      setting and axis.
    progress: the runner's size line and progress lines (stderr).
    overwrite: start ``out_dir`` afresh instead of resuming.
    plots: write the heatmaps (needs ``out_dir``).
    redraw: draw every figure again (a finished folder otherwise draws only
      the missing ones).
    task_options: keyword arguments of the built-in task when ``task`` is a
      name.
    verbose: print the summary.
    reproducible: compile with :func:`ftrl_adam.grid.compiler_options`, so
      that every cell equals :func:`~ftrl_adam.studies.single_run` bit for bit
      (default True), and a configuration continued by halving equals its
      unpruned run bit for bit; False: ``grid.fast_compiler_options()``,
      equal to float32 rounding.  On CPU the reproducible options cost a
      model's program compile and run time: a 2-run ``charlm`` study of 100
      steps compiled in 19.0 s and ran in 4.7 s, against 6.2 s and 3.1 s with
      False (one CPU device of the 2-core development machine).
    **options: the options of :func:`make_study`.

  Returns:
    A :class:`StudyResult`.

  Raises:
    ValueError: an unknown task, an empty axis, b outside [0, 1), a learning
      rate <= 0, an axis the optimizer cannot take traced or never reads, a
      bad setting or metric - all before anything is compiled.
    ftrl_adam.grid.ResultsFolderError: an ``out_dir`` of another run.

  Example:
    >>> from ftrl_adam import studies
    >>> res = studies.run_study("quadratic", b1=[0.0, 0.9], b2=[0.9, 0.99],
    ...                         learning_rates=[0.03, 0.1], seeds=1, steps=90,
    ...                         eval_every=10, budget="halving",
    ...                         progress=False, verbose=False)
    >>> sorted(set(res.cells["stopped_at"].tolist()))
    [10, 30, 90]
  """
  if isinstance(task, Study):
    if options or task_options:
      raise ValueError("A Study given to run_study carries its options; got "
                       f"{sorted(options) + (['task_options'] if task_options else [])} too.")
    spec = task
  else:
    spec = make_study(task, task_options=task_options, **options)
  res = run_experiment(spec, out_dir=out_dir, progress=progress,
                       overwrite=overwrite,
                       plots=plots and out_dir is not None,
                       redraw=redraw, reproducible=reproducible)
  text = res.text
  if verbose and jax.process_index() == 0:
    print(text)
  return StudyResult(cells=res.table, tuned=res.extra["tuned"],
                     best_b2=res.summary, summary=text,
                     config={**spec.config(), "reproducible": reproducible},
                     files=res.files, seconds=res.seconds["wall"])
