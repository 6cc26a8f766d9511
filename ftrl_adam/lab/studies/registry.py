"""The built-in tasks by name: :data:`TASKS`, :func:`make_task`, :func:`task_options`.

A study or the command line names a task (``"digits"``); this module turns
the name and keyword arguments into the :class:`~ftrl_adam.lab.studies.task.Task`
that :mod:`ftrl_adam.lab.studies.tasks` builds, and lists each task's options
(the ``--option KEY=VALUE`` of ``ftrl-adam study``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from ftrl_adam.lab.studies import tasks as _tasks
from ftrl_adam.lab.studies.task import Task

TASKS: Mapping[str, Callable[..., Task]] = {
    "digits": _tasks.digits,
    "charlm": _tasks.charlm,
    "quadratic": _tasks.quadratic,
    "rosenbrock": _tasks.rosenbrock,
}


def check_task_name(name: Any) -> str:
  """``name`` if it is a built-in task, else a ValueError listing them."""
  if name not in TASKS:
    allowed = ", ".join(repr(k) for k in TASKS)
    raise ValueError(f"`task` must be one of {allowed}; got {name!r}.")
  return name


def task_options(name: str) -> tuple[str, ...]:
  """Keyword arguments accepted by the built-in task ``name``.

  Example:
    >>> from ftrl_adam import studies
    >>> studies.task_options("quadratic")
    ('dim', 'condition', 'noise', 'batch_size')
  """
  check_task_name(name)
  return tuple(inspect.signature(TASKS[name]).parameters)


def make_task(name: str, **kwargs: Any) -> Task:
  """Builds the built-in task ``name`` with the factory's keyword arguments.

  Args:
    name: one of ``"digits"``, ``"charlm"``, ``"quadratic"``, ``"rosenbrock"``.
    **kwargs: options of that factory (:func:`~ftrl_adam.lab.studies.tasks.digits`,
      :func:`~ftrl_adam.lab.studies.tasks.charlm`,
      :func:`~ftrl_adam.lab.studies.tasks.quadratic`,
      :func:`~ftrl_adam.lab.studies.tasks.rosenbrock`).

  Returns:
    The :class:`~ftrl_adam.lab.studies.task.Task`.

  Raises:
    ValueError: unknown name (the allowed names are listed), an option the
      task does not take (its options are listed), or a bad option value.

  Example:
    >>> from ftrl_adam import studies
    >>> studies.make_task("quadratic", dim=10).name
    'quadratic'
  """
  check_task_name(name)
  allowed = task_options(name)
  unknown = sorted(set(kwargs) - set(allowed))
  if unknown:
    raise ValueError(
        f"Task {name!r} has no option {', '.join(map(repr, unknown))}; its "
        f"options are {', '.join(allowed)}.")
  return TASKS[name](**kwargs)
