"""Vectorised training studies: train small Flax models over a grid in one program.

Do b1 = b2 (Orvieto & Gower 2025) or b2 = b1**2 (Nguyen's b1 / sqrt(b2) = 1)
win on *your* model once the learning rate is tuned?  What weight decay, what
epsilon, what EMA width?  docs/studies.md; docs/theory.md section 6.

Its modules, in the order data flows:

* tasks: :mod:`~ftrl_adam.lab.studies.task` (:class:`Task`: init, loss, a
  pure ``train_batch(key, step)``, validation data), the built-in tasks in
  :mod:`~ftrl_adam.lab.studies.tasks` (``digits``, ``charlm``, ``quadratic``,
  ``rosenbrock``), named by :mod:`~ftrl_adam.lab.studies.registry`
  (:data:`TASKS`, :func:`make_task`), and :func:`flax_task` for your own
  Flax model (:mod:`~ftrl_adam.lab.studies.flax_adapters`: Linen and NNX);
* optimizers (:mod:`~ftrl_adam.lab.studies.optimizers`): the optimizer as a
  function of traced hyperparameters - the built-in FTRL-Adam with named
  hyperparameters, or yours - and the check of a study's axes;
* training (:mod:`~ftrl_adam.lab.studies.train`): :func:`train`, one whole
  run under ``lax.scan`` (optimizer + EMA, optionally the post-hoc EMA), a
  pure function of float32 hyperparameters and a seed, vmappable bit for
  bit, cut into rungs that continue exactly (:mod:`~ftrl_adam.lab.studies.carry`
  carries the state between them);
* cells (:mod:`~ftrl_adam.lab.studies.cells`): the grid engine's cell
  functions, :func:`single_run`;
* studies (:mod:`~ftrl_adam.lab.studies.study`): :func:`make_study` checks a
  study's options (:data:`STUDY_OPTIONS`, :mod:`~ftrl_adam.lab.studies.study_options`)
  and :func:`run_study` runs it with the lab's runner - every configuration
  vmapped, sharded over devices and resumable, successive halving
  (:mod:`~ftrl_adam.lab.studies.halving`) if asked, the tuned axes chosen
  per shown pair (:mod:`~ftrl_adam.lab.studies.tuning`), tidy CSVs, a JSON,
  heatmaps and a summary (:mod:`~ftrl_adam.lab.studies.summary`).

The command line is ``ftrl-adam study``.

Example:
  >>> from ftrl_adam import studies
  >>> res = studies.run_study("quadratic", b1=[0.0, 0.9], b2=[0.9, 0.99],
  ...                         learning_rates=[0.03, 0.1], seeds=1, steps=100,
  ...                         progress=False, verbose=False)
  >>> len(res.cells["b1"]), len(res.tuned["b1"])
  (8, 4)
"""

# The lab's dependencies first: one line naming the extra, not a traceback.
from ftrl_adam import lab as _lab
_lab.require_extra("ftrl_adam.studies")

from ftrl_adam.lab.studies.cells import make_cell_fn
from ftrl_adam.lab.studies.cells import single_run
from ftrl_adam.lab.studies.flax_adapters import flax_task
from ftrl_adam.lab.studies.optimizers import HYPERPARAMETERS
from ftrl_adam.lab.studies.registry import TASKS
from ftrl_adam.lab.studies.registry import make_task
from ftrl_adam.lab.studies.registry import task_options
from ftrl_adam.lab.studies.study import Study
from ftrl_adam.lab.studies.study import StudyResult
from ftrl_adam.lab.studies.study import make_study
from ftrl_adam.lab.studies.study import run_study
from ftrl_adam.lab.studies.study_options import OG_AXIS
from ftrl_adam.lab.studies.study_options import STUDY_OPTIONS
from ftrl_adam.lab.studies.study_options import seed_axis
from ftrl_adam.lab.studies.study_options import study_table
from ftrl_adam.lab.studies.summary import best_b2_per_b1
from ftrl_adam.lab.studies.summary import format_summary
from ftrl_adam.lab.studies.task import Task
from ftrl_adam.lab.studies.task import TaskDefaults
from ftrl_adam.lab.studies.tasks import CharTransformer
from ftrl_adam.lab.studies.tasks import MLP
from ftrl_adam.lab.studies.train import Trainer
from ftrl_adam.lab.studies.train import eval_steps
from ftrl_adam.lab.studies.train import metric_names
from ftrl_adam.lab.studies.train import train
from ftrl_adam.lab.studies.tuning import TUNE_METRICS
from ftrl_adam.lab.studies.tuning import tune
from ftrl_adam.lab.studies.tuning import tune_learning_rate

__all__ = (
    "HYPERPARAMETERS",
    "OG_AXIS",
    "STUDY_OPTIONS",
    "Study",
    "TASKS",
    "TUNE_METRICS",
    "CharTransformer",
    "MLP",
    "StudyResult",
    "Task",
    "TaskDefaults",
    "Trainer",
    "best_b2_per_b1",
    "eval_steps",
    "flax_task",
    "format_summary",
    "make_cell_fn",
    "make_study",
    "make_task",
    "metric_names",
    "run_study",
    "seed_axis",
    "single_run",
    "study_table",
    "task_options",
    "train",
    "tune",
    "tune_learning_rate",
)
