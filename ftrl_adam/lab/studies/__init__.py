"""Vectorised (b1, b2) studies: train small Flax models over a grid in one program.

Do b1 = b2 (Orvieto & Gower 2025) or b2 = b1**2 (Nguyen's b1 / sqrt(b2) = 1)
win on *your* model once the learning rate is tuned?  docs/theory.md section 6.

* tasks (:mod:`ftrl_adam.studies.tasks`): :class:`Task` (init, loss, a pure
  ``train_batch(key, step)``, validation data), the built-in :data:`TASKS`
  ``digits`` (MLP, scikit-learn digits), ``charlm`` (character Transformer on
  the Python help topics), ``quadratic`` (noisy quadratic model) and
  ``rosenbrock``, :func:`make_task`, and :func:`flax_task` for your own Flax
  model, loss and data;
* training (:mod:`ftrl_adam.studies.train`): :func:`train`, one whole run
  under ``lax.scan`` with ``ftrl_adam`` + ``ema_params``, a pure function of
  float32 hyperparameters and a seed, vmappable bit for bit;
* studies (:mod:`ftrl_adam.studies.study`): :func:`make_study` checks a study's
  options (:data:`STUDY_OPTIONS`) and :func:`run_study` runs it with the
  lab's runner (the same as the beta-grid's) - the table b1 x b2 x lr x seed
  vmapped, sharded over devices and resumable, the learning rate tuned per
  (b1, b2), tidy CSVs, a JSON, heatmaps with b2 = b1 and b2 = b1**2 drawn,
  and the best b2 per b1; :func:`single_run` reproduces one cell alone.

The command line is ``ftrl-adam study``.

Example:
  >>> from ftrl_adam import studies
  >>> res = studies.run_study("quadratic", b1=[0.0, 0.9], b2=[0.9, 0.99],
  ...                         learning_rates=[0.03, 0.1], seeds=1, steps=100,
  ...                         progress=False, verbose=False)
  >>> len(res.cells["b1"]), len(res.tuned["b1"])
  (8, 4)
"""

from ftrl_adam.lab.studies.study import OG_AXIS
from ftrl_adam.lab.studies.study import STUDY_OPTIONS
from ftrl_adam.lab.studies.study import Study
from ftrl_adam.lab.studies.study import StudyResult
from ftrl_adam.lab.studies.study import TUNE_METRICS
from ftrl_adam.lab.studies.study import best_b2_per_b1
from ftrl_adam.lab.studies.study import format_summary
from ftrl_adam.lab.studies.study import make_cell_fn
from ftrl_adam.lab.studies.study import run_study
from ftrl_adam.lab.studies.study import seed_axis
from ftrl_adam.lab.studies.study import single_run
from ftrl_adam.lab.studies.study import make_study
from ftrl_adam.lab.studies.study import study_table
from ftrl_adam.lab.studies.study import tune_learning_rate
from ftrl_adam.lab.studies.flax_adapters import flax_task
from ftrl_adam.lab.studies.registry import TASKS
from ftrl_adam.lab.studies.registry import make_task
from ftrl_adam.lab.studies.registry import task_options
from ftrl_adam.lab.studies.task import Task
from ftrl_adam.lab.studies.task import TaskDefaults
from ftrl_adam.lab.studies.tasks import CharTransformer
from ftrl_adam.lab.studies.tasks import MLP
from ftrl_adam.lab.studies.train import eval_steps
from ftrl_adam.lab.studies.train import metric_names
from ftrl_adam.lab.studies.train import train

__all__ = (
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
    "best_b2_per_b1",
    "eval_steps",
    "flax_task",
    "format_summary",
    "make_cell_fn",
    "make_task",
    "metric_names",
    "run_study",
    "seed_axis",
    "single_run",
    "make_study",
    "study_table",
    "task_options",
    "train",
    "tune_learning_rate",
)
