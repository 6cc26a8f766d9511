"""The lab: what runs on top of the optimizer (loaded only when used).

Data flows one way: adversary / task -> cell (the optimizer transform's own
``update``) -> running sums -> engine (vmap, shard, chunk, resume) -> table
-> report -> CLI.  ``README.md`` in this folder describes each place and one
run of ``ftrl-adam regret`` hop by hop; ``import ftrl_adam`` loads none of
this (tests/test_layering.py).

The lab's own dependencies come with the package's ``lab`` extra
(``pip install "ftrl-adam[lab]"``; the optimizer needs only jax, optax and
numpy).  Without them, the experiments (:mod:`ftrl_adam.regret`,
:mod:`ftrl_adam.studies`, the figures) raise an ``ImportError`` on import,
and ``ftrl-adam regret | study | bench`` exits with status 2, each with one
line naming the extra (:func:`require_extra`).
"""

from __future__ import annotations

import importlib.util as _importlib_util

#: The lab's dependencies: the module each provides -> its distribution
#: (pyproject.toml's ``lab`` extra lists the same).
LAB_EXTRA = {"flax": "flax", "matplotlib": "matplotlib",
             "sklearn": "scikit-learn"}


def missing_extra() -> list[str]:
  """The distributions of the ``lab`` extra that are not installed.

  Looks the modules up without importing them.

  Returns:
    The missing distributions' names, sorted (empty when the lab can run).

  Example:
    >>> from ftrl_adam import lab
    >>> lab.missing_extra()     # the test environment has the extra
    []
  """
  return sorted(dist for module, dist in LAB_EXTRA.items()
                if _importlib_util.find_spec(module) is None)


def extra_message(what: str) -> str | None:
  """One line saying which extra ``what`` needs, or None when it is there.

  Args:
    what: what needs the extra, e.g. ``"ftrl_adam.studies"``.

  Returns:
    ``None`` with every dependency installed, else e.g. ``"ftrl_adam.studies
    needs the lab extra (missing: flax, matplotlib): pip install
    "ftrl-adam[lab]" (in a checkout: pip install ".[lab]")"``.

  Example:
    >>> from ftrl_adam import lab
    >>> lab.extra_message("ftrl_adam.studies") is None
    True
  """
  missing = missing_extra()
  if not missing:
    return None
  return (f"{what} needs the lab extra (missing: {', '.join(missing)}): "
          f'pip install "ftrl-adam[lab]" (in a checkout: pip install ".[lab]")')


def require_extra(what: str) -> None:
  """Raises ``ImportError`` (one line, naming the extra) if it is missing.

  The first statement of each lab package that needs the extra, before it
  imports anything, so that the user reads this line rather than a
  ``ModuleNotFoundError`` from deep inside.

  Args:
    what: the module that needs the extra (named in the message).

  Raises:
    ImportError: a distribution of the ``lab`` extra is not installed.

  Example:
    >>> from ftrl_adam import lab
    >>> lab.require_extra("ftrl_adam.studies")   # silent with the extra
  """
  message = extra_message(what)
  if message is not None:
    raise ImportError(message)
