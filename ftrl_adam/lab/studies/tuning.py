"""Tuning a study's table: for each shown setting, the best of the tuned axes.

A study's axes are split in two (the user's choice; by default the shown
ones are (b1, b2) and the learning rate is tuned): for each combination of
the *shown* axes (a cell of the heatmap), :func:`tune` picks the combination
of the *tuned* axes with the lowest metric averaged over seeds - Orvieto &
Gower's protocol (2025, https://arxiv.org/abs/2505.21829) for the learning
rate, applied to any axes.  A combination at which any seed diverged is never
chosen; a shown cell where every combination diverged gets NaN.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

Table = dict[str, np.ndarray]

#: Metrics a study can be tuned on (lower is better).
TUNE_METRICS = ("val_loss", "val_loss_ema", "best_val_loss",
                "best_val_loss_ema")
#: The metric tuned when the study keeps post-hoc EMA snapshots.
POSTHOC_METRIC = "val_loss_posthoc"
#: The column reported next to a loss (its accuracy; the post-hoc EMA's best
#: width), at the combination tuned for it.
_ACCURACY_OF = {"val_loss": "val_acc", "val_loss_ema": "val_acc_ema",
                POSTHOC_METRIC: "best_sigma_rel"}


def group_stats(cells: Mapping[str, np.ndarray], metric: str,
                keys: Sequence[str]) -> tuple[np.ndarray, ...]:
  """Per unique ``keys`` tuple: (tuples, mean, std, number non-finite).

  The mean over the group's rows (the seeds) is +inf as soon as one of them
  is not finite or diverged (the ``diverged`` column).

  Example:
    >>> import numpy as np
    >>> from ftrl_adam.lab.studies import tuning
    >>> t = {"lr": np.float32([0.1, 0.1, 0.2]), "loss": np.float32([1, 3, 2])}
    >>> keys, mean, std, bad = tuning.group_stats(t, "loss", ["lr"])
    >>> mean.tolist(), bad.tolist()
    ([2.0, 2.0], [0, 0])
  """
  stacked = np.stack([np.asarray(cells[k], np.float64) for k in keys], axis=1)
  uniq, inv = np.unique(stacked, axis=0, return_inverse=True)
  inv = inv.reshape(-1)
  vals = np.asarray(cells[metric], np.float64)
  if "diverged" in cells:   # a run that saw a non-finite loss or gradient
    vals = np.where(np.asarray(cells["diverged"], bool), np.nan, vals)
  finite = np.isfinite(vals)
  n = len(uniq)
  count = np.bincount(inv, minlength=n)
  bad = np.bincount(inv, weights=~finite, minlength=n).astype(np.int32)
  total = np.bincount(inv, weights=np.where(finite, vals, 0.0), minlength=n)
  mean = np.where(bad == 0, total / np.maximum(count, 1), np.inf)
  dev = np.where(finite, vals - mean[inv], 0.0)
  var = np.bincount(inv, weights=dev * dev, minlength=n) / np.maximum(count, 1)
  std = np.where(bad == 0, np.sqrt(var), np.nan)
  return uniq, mean, std, bad


def _tune_one(cells, metric, shown, tuned, out, groups) -> None:
  """Adds the columns of one metric to ``out`` (see :func:`tune`)."""
  uniq, mean, std, bad = group_stats(cells, metric, list(shown) + list(tuned))
  n = len(groups)
  chosen = {t: np.full(n, np.nan, np.float32) for t in tuned}
  best, sd = np.full(n, np.nan), np.full(n, np.nan)
  diverged = np.zeros(n, np.int32)
  acc = _ACCURACY_OF.get(metric) if _ACCURACY_OF.get(metric) in cells else None
  acc_best = np.full(n, np.nan)
  acc_mean = group_stats(cells, acc, list(shown) + list(tuned))[1] if acc \
      else None
  k = len(shown)
  for g, key in enumerate(groups):
    rows = np.flatnonzero(np.all(uniq[:, :k] == key, axis=1))
    if not np.any(np.isfinite(mean[rows])):
      diverged[g] = int(np.sum(bad[rows]))
      continue
    i = rows[int(np.argmin(mean[rows]))]   # ties: the smallest tuned values
    for j, t in enumerate(tuned):
      chosen[t][g] = uniq[i, k + j]
    best[g], sd[g], diverged[g] = mean[i], std[i], bad[i]
    if acc:
      acc_best[g] = acc_mean[i]
  for t in tuned:
    out[f"{t}_{metric}"] = chosen[t]
  out[metric], out[f"{metric}_std"] = best, sd
  out[f"{metric}_diverged"] = diverged
  if acc:
    out[acc] = acc_best


def tune(cells: Mapping[str, np.ndarray], *,
         shown: Sequence[str] = ("b1", "b2"), tuned: Sequence[str] = ("lr",),
         metrics: Sequence[str] = TUNE_METRICS,
         rows: Optional[np.ndarray] = None) -> Table:
  """Per combination of the ``shown`` axes, the ``tuned`` combination with the
  lowest mean-over-seeds metric, for each metric.

  Args:
    cells: a study's tidy table: the axes, ``seed`` and the metrics.
    shown: the axes kept (one row per combination of their values).
    tuned: the axes minimised over (empty: only the mean over seeds).
    metrics: the metrics to tune for (lower is better).
    rows: a boolean mask of the rows to use (a halving study: the runs that
      reached the last rung); default all.  Every shown combination of the
      whole table gets its row (NaN where no used row is).

  Returns:
    A tidy table, one entry per shown combination sorted by its values: the
    shown axes and, for each metric ``m``: ``<t>_m`` for each tuned axis t
    (the value chosen), ``m`` (the mean over seeds there), ``m_std``,
    ``m_diverged`` (seeds with a non-finite value there, or of all its cells
    if none is finite); for ``val_loss`` and ``val_loss_ema`` of tasks with an
    accuracy also ``val_acc`` and ``val_acc_ema`` there.

  Raises:
    KeyError: a missing axis or metric column.

  Example:
    >>> import numpy as np
    >>> from ftrl_adam import grid
    >>> from ftrl_adam.lab.studies import tuning
    >>> t = grid.product(b1=[0.9], wd=[0.0, 0.1], lr=[0.1, 0.01], seed=[0, 1])
    >>> t["val_loss"] = np.float32([3, 2, 1, 5, 4, 4, 0.5, 0.5])
    >>> out = tuning.tune(t, shown=["b1"], tuned=["wd", "lr"],
    ...                   metrics=["val_loss"])
    >>> float(out["wd_val_loss"][0]), float(out["lr_val_loss"][0]), float(
    ...     out["val_loss"][0])
    (0.10000000149011612, 0.009999999776482582, 0.5)
  """
  for k in (*shown, *tuned, "seed"):
    if k not in cells:
      raise KeyError(f"The study table has no column {k!r}.")
  for m in metrics:
    if m not in cells:
      raise KeyError(f"The study table has no metric {m!r}.")
  stacked = np.stack([np.asarray(cells[k], np.float64) for k in shown], axis=1)
  groups = np.unique(stacked, axis=0)   # every shown combination, even
  if rows is not None:                  # one that no used row reaches
    cells = {k: np.asarray(v)[rows] for k, v in cells.items()}
  out: Table = {k: groups[:, i].astype(np.asarray(cells[k]).dtype)
                for i, k in enumerate(shown)}
  for metric in metrics:
    _tune_one(cells, metric, shown, tuned, out, groups)
  return out


def tune_learning_rate(cells: Mapping[str, np.ndarray],
                       metrics: Sequence[str] = TUNE_METRICS) -> Table:
  """Per (b1, b2), the learning rate with the lowest mean-over-seeds metric.

  :func:`tune` with ``shown=("b1", "b2")`` and ``tuned=("lr",)``: Orvieto &
  Gower's protocol.  A learning rate at which any seed diverged (a non-finite
  metric) has mean +inf and is never chosen unless every learning rate
  diverged; then the (b1, b2) gets NaN (grey in the heatmaps).

  Returns:
    One entry per (b1, b2), sorted by b1 then b2: ``b1``, ``b2`` and for each
    metric ``m``: ``lr_m``, ``m``, ``m_std``, ``m_diverged`` (and the
    accuracies, see :func:`tune`).

  Example:
    >>> import numpy as np
    >>> from ftrl_adam import grid, studies
    >>> cells = grid.product(b1=[0.9], b2=[0.99], lr=[0.1, 0.01], seed=[0, 1])
    >>> cells["val_loss"] = np.float32([3.0, 2.0, 1.0, 5.0])  # lr 0.1: 2.5
    >>> t = studies.tune_learning_rate(cells, metrics=["val_loss"])
    >>> t["lr_val_loss"][0], float(t["val_loss"][0])
    (np.float32(0.1), 2.5)
  """
  return tune(cells, shown=("b1", "b2"), tuned=("lr",), metrics=metrics)
