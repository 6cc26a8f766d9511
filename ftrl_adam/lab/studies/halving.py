"""Successive halving for a study: rungs, who continues, and what it cost.

Successive halving (Jamieson & Talwalkar 2016, https://arxiv.org/abs/1502.07943;
the rung schedule of Hyperband, Li et al. 2018,
https://arxiv.org/abs/1603.06560) trains every configuration for a first
*rung* of steps, keeps the best ``1 / rate`` of them, trains those on to the
next rung, and so on to the last step.  Here a configuration is one
combination of the study's axes with all its seeds (a *seed group*): it is
ranked by the tuned metric averaged over its seeds, a group in which a seed
diverged ranks last and never continues, and the whole group continues or
stops together.

* :func:`rung_ends` - the steps where rungs end: geometric, ``steps /
  rate**(k - 1 - i)``, rounded up to evaluation steps (so a rung ends with
  an evaluation, the one that ranks it) [D: the rounding is ours];
* :func:`survivors` - the configurations that continue after a rung;
* :func:`compute` - training steps spent, next to the full grid's.

With ``rate = 1`` (``budget="full"`` with several rungs) nothing is pruned but
diverged groups: they stop at the next rung instead of training on.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np


def rung_ends(steps: int, eval_every: int, rungs: int, rate: float
              ) -> tuple[int, ...]:
  """The last step of each rung, increasing, the last one ``steps``.

  Rung i of k ends at ``steps / rate**(k - 1 - i)`` rounded up to a multiple
  of ``eval_every`` (an evaluation step); rungs that round to the same step
  merge, so fewer than ``rungs`` may come back.  With ``rate = 1`` the rungs
  split the run in ``rungs`` equal parts (rounded likewise).

  Example:
    >>> from ftrl_adam.lab.studies import halving
    >>> halving.rung_ends(400, 50, 3, 3.0)
    (50, 150, 400)
    >>> halving.rung_ends(600, 100, 4, 3.0)
    (100, 200, 600)
  """
  ends = []
  for i in range(rungs):
    if rate > 1:
      target = steps / rate ** (rungs - 1 - i)
    else:
      target = steps * (i + 1) / rungs
    end = min(steps, max(eval_every, math.ceil(target / eval_every - 1e-9)
                         * eval_every))
    ends.append(end)
  ends[-1] = steps
  return tuple(sorted(set(ends)))


def configuration_ids(table: Mapping[str, np.ndarray],
                      axes: Sequence[str]) -> np.ndarray:
  """For each row, the index of its configuration (its axes' values)."""
  stacked = np.stack([np.asarray(table[k], np.float64) for k in axes], axis=1)
  _, inv = np.unique(stacked, axis=0, return_inverse=True)
  return inv.reshape(-1)


def survivors(table: Mapping[str, np.ndarray], axes: Sequence[str],
              metric: str, rate: float) -> np.ndarray:
  """A boolean mask of the rows whose configuration continues.

  Configurations (rows sharing the values of ``axes``: a seed group) are
  ranked by the mean of ``metric`` over their rows; one whose rows are not
  all finite, or are ``diverged``, is last and never continues.  The best
  ``ceil(n / rate)`` of the ``n`` configurations continue (all finite ones
  for ``rate = 1``); ties go to the configuration met first in the table.

  Example:
    >>> import numpy as np
    >>> from ftrl_adam import grid
    >>> from ftrl_adam.lab.studies import halving
    >>> t = grid.product(lr=[0.1, 0.2, 0.3], seed=[0, 1])
    >>> t["loss"] = np.float32([3, 3, 1, 2, 0, np.nan])
    >>> halving.survivors(t, ["lr"], "loss", 3.0).tolist()   # keep 1 of 3
    [False, False, True, True, False, False]
  """
  ids = configuration_ids(table, axes)
  n = int(ids.max()) + 1 if len(ids) else 0
  vals = np.asarray(table[metric], np.float64)
  if "diverged" in table:
    vals = np.where(np.asarray(table["diverged"], bool), np.nan, vals)
  bad = np.bincount(ids, weights=~np.isfinite(vals), minlength=n) > 0
  total = np.bincount(ids, weights=np.where(np.isfinite(vals), vals, 0.0),
                      minlength=n)
  score = np.where(bad, np.inf, total / np.maximum(
      np.bincount(ids, minlength=n), 1))
  first = np.full(n, len(ids))
  np.minimum.at(first, ids, np.arange(len(ids)))
  order = np.lexsort((first, score))          # by score, then table order
  keep = max(1, math.ceil(n / rate)) if rate > 1 else n
  chosen = [c for c in order[:keep] if np.isfinite(score[c])]
  return np.isin(ids, chosen)


def compute(counts: Sequence[int], ends: Sequence[int]) -> int:
  """Training steps spent: rung i trains ``counts[i]`` runs from the previous
  end to ``ends[i]``.

  Example:
    >>> from ftrl_adam.lab.studies import halving
    >>> halving.compute([9, 3, 1], [50, 150, 400])   # of 9 * 400 = 3600
    1000
  """
  starts = [0, *ends[:-1]]
  return int(sum(c * (e - s) for c, s, e in zip(counts, starts, ends,
                                                 strict=True)))
