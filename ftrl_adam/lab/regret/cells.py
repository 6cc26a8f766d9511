"""The beta-grid's cell functions: one game, a group sharing a stream, a search.

Each is built per part by :class:`~ftrl_adam.lab.regret.study.BetaGrid`
(nothing cached): a *group function* for an oblivious adversary (the learners
of one seed play its stream, :func:`~ftrl_adam.lab.regret.shared.shared_stream_games`),
a *cell function* for an adaptive one or the time-parallel path (one game per
cell), and the worst-case search (:mod:`ftrl_adam.lab.regret.worst`).  All of
them play the transform's own ``update``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ftrl_adam.lab.engine.tables import key_from_seed
from ftrl_adam.lab.regret import bounds
from ftrl_adam.lab.regret import games
from ftrl_adam.lab.regret import shared
from ftrl_adam.lab.regret import worst as _worst
from ftrl_adam.lab.regret.registry import GridAdversary
from ftrl_adam.lab.regret.rounds import GameResult

# Extra columns of a worst-case search (NaN / -1 in the other adversaries' rows).
WORST_COLUMNS = ("best_construction", "search_start", "search_gain_last",
                 "search_restarts", "search_steps", "search_sweeps")


def _outputs(res: GameResult, horizon, T: int, domain: str
             ) -> dict[str, jax.Array]:
  box = domain == "box"
  return {
      "regret": res.regret_box if box else res.regret_ball,
      "max_regret": res.max_regret_box if box else res.max_regret_ball,
      "bound": res.bound,
      "bound_d4": res.bound_d4,
      "horizon": (jnp.full(jnp.shape(res.bound), T, jnp.int32)
                  if horizon is None else horizon),
      "nonfinite_round": res.first_nonfinite_round,
  }


def _switch_horizon(adv: GridAdversary, b1, b2, kappa, T):
  if adv.identity != "switch":
    return None
  big_l, k = bounds.switch_lengths(b1, b2, kappa)
  return jnp.minimum(big_l + k, T).astype(jnp.int32)


def shared_group_fn(adv: GridAdversary, *, T, d, domain, G, kappa):
  """Group function: the learners of one stream against its gradients."""

  def group_fn(group):
    b1, b2, radius, c = group["b1"], group["b2"], group["radius"], group["c"]
    key = key_from_seed(group["seed"][0])
    if adv.per_cell:
      adversary = jax.vmap(lambda x, y: adv.make(G, kappa, x, y))(b1, b2)
    else:
      adversary = adv.make(G, kappa, None, None)
    horizon = _switch_horizon(adv, b1, b2, kappa, T)
    res = shared.shared_stream_games(
        b1, b2, radius, c, adversary, key, horizon, T=T, d=d, domain=domain,
        per_cell_adversary=adv.per_cell, tick=True)
    return _outputs(res, horizon, T, domain)

  return group_fn


def per_cell_fn(adv: GridAdversary, *, T, d, domain, G, kappa, method):
  """Cell function: one game per cell (adaptive adversaries, the parallel path).

  Also version 0.1.0's way to run every adversary, kept as the baseline of
  ``ftrl-adam bench grid``.
  """

  def cell_fn(cell):
    b1, b2 = cell["b1"], cell["b2"]
    horizon = _switch_horizon(adv, b1, b2, kappa, T)
    res = games.grid_cell_game(
        b1, b2, cell["radius"], cell["c"], adv.make(G, kappa, b1, b2),
        key_from_seed(cell["seed"]), horizon, T=T, d=d, domain=domain,
        method=method)
    return _outputs(res, horizon, T, domain)

  return cell_fn


def worst_cell_fn(*, T, d, G, restarts, steps):
  """Cell function: the worst-case search of ftrl_adam.regret.worst.

  The search runs at d = 1: in the box the learner and the best comparator
  act coordinate by coordinate, so the worst d-dimensional sequence is the
  1-D one tiled, with d times its regret and bound (regret.worst).
  """
  search = _worst.worst_case_cell_fn(T=T, restarts=restarts, steps=steps,
                                     G=G)

  def cell_fn(cell):
    out = search(cell)
    hist = out["gain_history"]
    tail = max(1, hist.shape[0] // 10)
    nan = jnp.full([], jnp.nan, jnp.float32)
    return {
        "regret": d * out["worst_regret"], "max_regret": nan,
        "bound": d * out["worst_bound"], "bound_d4": nan,
        "horizon": jnp.int32(T), "nonfinite_round": jnp.int32(0),
        "best_construction": d * out["best_construction"],
        "search_start": d * out["search_start"],
        # the relative gain of the last tenth of the budget (convergence)
        "search_gain_last": (hist[-1] - hist[-1 - tail]) / hist[-1],
        "search_restarts": out["search_restarts"],
        "search_steps": out["search_steps"],
        "search_sweeps": out["search_sweeps"],
    }

  return cell_fn


def with_search_columns(res: dict, n: int) -> dict:
  fill = {"search_restarts": -1, "search_steps": -1, "search_sweeps": -1}
  for k in WORST_COLUMNS:
    if k not in res:
      res[k] = (np.full(n, fill[k], np.int32) if k in fill
                else np.full(n, np.nan, np.float32))
  return res
