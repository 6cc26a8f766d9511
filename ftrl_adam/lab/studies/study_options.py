"""The options of a training study and their checks (``make_study``, ``ftrl-adam study``).

:data:`STUDY_OPTIONS` lists every option once (name, default, help); the
function :func:`ftrl_adam.studies.make_study` fills and checks them with the
helpers here, and the command line builds its flags from the same list.
Everything is checked before anything is compiled; a bad value raises a
one-line ``ValueError`` naming the option (the command line names the flag).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

import ftrl_adam as fa
from ftrl_adam.lab import engine as grid
from ftrl_adam.lab import options as _opt
from ftrl_adam.lab.identity import code_digest
from ftrl_adam.lab.studies import optimizers as _optimizers
from ftrl_adam.lab.studies import registry
from ftrl_adam.lab.studies import tuning
from ftrl_adam.lab.studies.task import Task

#: The grid of Orvieto & Gower (2025): b = 1 - kappa (1 - 0.9),
#: kappa in {2**-5, ..., 2**2} (docs/theory.md section 6), as a grid axis spec.
OG_AXIS = "log1m:0.6:0.996875:8"

#: Budgets: the whole grid to the last step, or successive halving.
BUDGETS = ("full", "halving")

#: The options of :func:`~ftrl_adam.studies.make_study` (and the flags of
#: ``ftrl-adam study``); the defaults are the default study (digits, about a
#: minute on 2 CPU cores).
STUDY_OPTIONS: tuple[_opt.Option, ...] = (
    _opt.Option("task", "digits", "the training task.",
                choices=tuple(registry.TASKS)),
    _opt.Option("b1", OG_AXIS, "b1 values in [0, 1): a list '0.9,0.99' or a "
                "range 'log1m:lo:hi:n' (1-b log-spaced), 'lin:lo:hi:n'; the "
                "default is the Orvieto & Gower grid 1 - {0.4, 0.2, ..., "
                "0.003125} (with an optimizer function of yours: no b1 axis "
                "unless given)."),
    _opt.Option("b2", OG_AXIS, "b2 values in [0, 1), as --b1."),
    _opt.Option("learning_rates", None, "learning rates > 0 (the axis 'lr'): "
                "a list '1e-3,1e-2' or 'log:lo:hi:n'; default the task's.",
                flag="--lrs"),
    _opt.Option("axes", None, "more axes: {name: values} of the built-in "
                "optimizer's hyperparameters (" + ", ".join(
                    _optimizers.HYPERPARAMETERS) + ") or of your optimizer "
                "function's.", cli=False),
    _opt.Option("optimizer", None, "a function hp -> optax transformation "
                "(hp: a dict of traced hyperparameters, one per axis); "
                "default FTRL-Adam.", cli=False),
    _opt.Option("seeds", "4", "a number of seeds n (0..n-1) or a list '3,7'."),
    _opt.Option("steps", None, "training steps per run; default the task's.",
                type=int),
    _opt.Option("eval_every", None, "validation every this many steps; "
                "default the task's.", type=int),
    _opt.Option("ema_decay", None, "decay of the parameter EMA; default the "
                "task's.", type=float),
    _opt.Option("ema_sigma_rel", None, "keep the parameter EMA as Karras' "
                "power EMA of this relative width instead of a constant "
                "decay.", type=float),
    _opt.Option("eps", 1e-8, "Adam's epsilon (unless an axis).", type=float),
    _opt.Option("sigma_rels", None, "widths of the post-hoc EMA to report per "
                "run, synthesised after training from snapshots kept at "
                "every evaluation, e.g. '0.05,0.07,0.1,0.15'; none by "
                "default."),
    _opt.Option("metric", "val_loss", "metric tuned (and, with halving, "
                "ranked) on: " + ", ".join(tuning.TUNE_METRICS) + " or, with "
                "sigma_rels, " + tuning.POSTHOC_METRIC + "."),
    _opt.Option("show", None, "the two axes of the heatmaps, 'x,y'; default "
                "'b1,b2' (else the first two axes)."),
    _opt.Option("tune", None, "the axes tuned (minimised over) per shown "
                "pair, 'lr,weight_decay'; default every axis not shown."),
    _opt.Option("budget", "full", "'full': every run to the last step; "
                "'halving': successive halving (rungs of steps, the best "
                "1/halving_rate of the configurations continue).",
                choices=BUDGETS),
    _opt.Option("rungs", None, "number of rungs (default 1 with --budget full: "
                "one program; 3 with halving); with full and more rungs, only "
                "diverged runs stop early.", type=int),
    _opt.Option("halving_rate", 3.0, "keep the best 1/rate of the "
                "configurations at each rung (> 1); rungs grow by this "
                "factor.", type=float),
    _opt.Option("chunk_size", 64, "runs per compiled chunk (memory, resume "
                "granularity).", type=int),
)

#: Bounds of the built-in hyperparameters: (low, high, low_closed).
_BOUNDS: Mapping[str, tuple[float, Optional[float], bool]] = {
    "eps": (0.0, None, True), "eps_root": (0.0, None, True),
    "weight_decay": (0.0, None, True), "clip_norm": (0.0, None, False),
    "radius": (0.0, None, False), "ema_decay": (0.0, None, True),
}


def names_list(name: str, value: Any) -> Optional[tuple[str, ...]]:
  """``"a,b"`` or a list of names as a tuple; None stays None."""
  if value is None:
    return None
  items = value.split(",") if isinstance(value, str) else list(value)
  out = tuple(str(v).strip() for v in items)
  if not out or any(not v for v in out) or len(set(out)) != len(out):
    raise ValueError(f"`{name}` must be distinct axis names, e.g. 'b1,b2'; "
                     f"got {value!r}.")
  return out


def extra_axes(axes: Any, user: bool, task_options: Sequence[str]
               ) -> dict[str, tuple[float, ...]]:
  """The checked ``axes`` option: ``{name: float values}``."""
  if axes is None:
    return {}
  if not isinstance(axes, Mapping):
    raise ValueError(f"`axes` must be a dict name -> values, e.g. "
                     f"{{'weight_decay': 'log:1e-5:1e-1:5'}}; got {axes!r}.")
  out = {}
  for name, spec in axes.items():
    _optimizers.check_name(name, user, task_options)
    low, high, closed = _BOUNDS.get(name, (-math.inf, None, True))
    try:
      out[name] = _opt.axis(name, spec, low=low, high=high, low_closed=closed)
    except ValueError as e:
      raise ValueError(f"`axes`: {e}") from e
    if name == "ema_decay" and max(out[name]) > 1.0:
      raise ValueError(f"`ema_decay` values must lie in [0, 1], got "
                       f"{list(out[name])!r}.")
  return out


def resolve_roles(axes: Mapping[str, Sequence[float]], show: Any, tune: Any
                  ) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(shown axes, tuned axes), checked.

  Default shown: ``("b1", "b2")`` when both are axes (today's study), else
  the first two axes with several values (or the first two axes); default tuned:
  ``lr`` when not shown (as in Orvieto & Gower's protocol) and every other
  axis with several values that is not shown.  An axis of one value may be
  neither (it is fixed); any other axis must be shown or tuned, not both.
  """
  names = list(axes)
  show, tune = names_list("show", show), names_list("tune", tune)
  for role, given in (("show", show), ("tune", tune)):
    unknown = [n for n in given or () if n not in names]
    if unknown:
      raise ValueError(f"`{role}` names {unknown}, which are not axes of this "
                       f"study; its axes are {names}.")
  multi = [n for n in names if len(axes[n]) > 1]
  if show is None:
    pool = [n for n in multi if n not in (tune or ())]
    pool += [n for n in names if n not in pool and n not in (tune or ())]
    show = ("b1", "b2") if {"b1", "b2"} <= set(pool) else tuple(pool[:2])
  if len(show) > 2:
    raise ValueError(f"`show` takes one or two axes (a heatmap's x and y), got "
                     f"{list(show)}.")
  if tune is None:
    tune = tuple(n for n in names if n not in show
                 and (n in multi or n == "lr"))
  both = sorted(set(show) & set(tune))
  left = [n for n in multi if n not in show and n not in tune]
  if both or left:
    raise ValueError(
        f"`show` and `tune` must split the axes of several values {multi}: "
        f"each is shown or tuned, none both (" + (
            f"both: {both}" if both else f"neither: {left}") + ").")
  return tuple(show), tuple(tune)


def sigma_rels(value: Any) -> tuple[float, ...]:
  """The post-hoc widths: distinct floats in (0, 12 ** -0.5]."""
  if value is None:
    return ()
  limit = 12 ** -0.5
  vals = _opt.axis("sigma_rels", value, low=0.0, high=limit + 1e-7)
  return tuple(sorted(vals))


def ema_power(value: Any) -> Optional[float]:
  """Karras' exponent of the parameter EMA's width ``ema_sigma_rel``."""
  if value is None:
    return None
  limit = 12 ** -0.5
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
      0.0 < value <= limit):
    raise ValueError(f"`ema_sigma_rel` must be a number in (0, {limit:.6f}], "
                     f"got {value!r}.")
  return float(fa.power_from_sigma_rel(float(value)))


def budget(kind: str, rungs: Any, rate: Any) -> tuple[str, int, float]:
  """(budget, number of rungs, halving rate), checked."""
  _opt.choice("budget", kind, BUDGETS)
  rungs = _opt.positive_int("rungs", 3 if rungs is None and kind == "halving"
                            else 1 if rungs is None else rungs)
  if kind == "halving" and rungs < 2:
    raise ValueError(f"`rungs` must be >= 2 with budget 'halving' (one rung "
                     f"is the full grid), got {rungs}.")
  rate = _opt.positive_float("halving_rate", rate)
  if kind == "halving" and not rate > 1.0:
    raise ValueError(f"`halving_rate` must be > 1 (keep 1/rate of the "
                     f"configurations at each rung), got {rate!r}.")
  return kind, rungs, rate


def metric(value: Any, has_posthoc: bool) -> str:
  """The tuned metric, checked against what the study computes."""
  allowed = tuning.TUNE_METRICS + ((tuning.POSTHOC_METRIC,) if has_posthoc
                                   else ())
  if value == tuning.POSTHOC_METRIC and not has_posthoc:
    raise ValueError(f"`metric` {tuning.POSTHOC_METRIC!r} needs `sigma_rels` "
                     f"(the post-hoc EMA's widths).")
  return _opt.choice("metric", value, allowed)


def np_axis(values: Sequence[float]) -> np.ndarray:
  """An axis as float32 values, for the table."""
  return np.asarray(values, np.float32)


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
  return grid.product(**standard_axes(b1, b2, learning_rates),
                      seed=seed_axis(seeds))


def standard_axes(b1: Any, b2: Any, lrs: Any) -> dict[str, tuple[float, ...]]:
  """The axes b1, b2 (when given) and lr, checked."""
  out = {}
  for name, spec in (("b1", b1), ("b2", b2)):
    if spec is not None:
      out[name] = _opt.axis(name, spec, low=0.0, high=1.0, low_closed=True)
  out["lr"] = _opt.axis("learning_rates", lrs, low=0.0)
  return out


def resolve_optimizer(optimizer: Any, eps: float) -> tuple[Callable, str]:
  """(the optimizer function, what the fingerprint records of it)."""
  if optimizer is None:
    return _optimizers.builtin(eps), (
        "optax.chain([clip_by_global_norm(clip_norm)], ftrl_adam(lr, b1, b2, "
        "eps, eps_root, radius=radius), [add_decayed_weights(-lr * "
        "weight_decay)]) + ema_params: the built-in optimizer")
  if not callable(optimizer):
    raise ValueError(f"`optimizer` must be a function hp -> optax "
                     f"transformation, got {type(optimizer).__name__}.")
  name = getattr(optimizer, "__qualname__", type(optimizer).__name__)
  return optimizer, f"user function {name} (code {code_digest(optimizer)})"


def resolve_task(task: Any, task_options: Optional[Mapping[str, Any]]
                 ) -> Task:
  """The task: a Task, or a built-in one by name with its options."""
  if isinstance(task, str):
    return registry.make_task(task, **dict(task_options or {}))
  if not isinstance(task, Task):
    raise ValueError(
        f"`task` must be a Task or one of "
        f"{', '.join(map(repr, registry.TASKS))}; got {task!r}.")
  if task_options:
    raise ValueError("`task_options` only applies to a task given by name.")
  return task
