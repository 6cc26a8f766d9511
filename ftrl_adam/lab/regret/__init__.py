"""The regret lab: online linear optimisation games, adversaries and bounds.

Every claim of docs/theory.md section 3 as something to run (and a test to check):

* games (:mod:`ftrl_adam.regret.games`): :func:`play` any optax transform
  against an adversary under ``jax.lax.scan``, calling the transform's own
  ``update``; :func:`game` for the theory's learner (Algorithm 1,
  :func:`theory_learner`); streaming b1-discounted regret against the best
  box / ball comparator and a given u, the streams of the bound D3, an
  optional trajectory, and a time-parallel path for oblivious adversaries;
* adversaries (:mod:`ftrl_adam.regret.adversaries`): oblivious
  (:func:`gaussian`, :func:`rademacher`, :func:`sparse`, :func:`heavy_tailed`,
  :func:`from_array`, :func:`switch` D5, :func:`alternating` D6,
  :func:`oblivious`; :func:`replay` of a recorded training run, from
  :mod:`ftrl_adam.regret.replays`) and adaptive (:func:`oppose`,
  :func:`abs_w` of D7, :func:`gradient_of` a user objective,
  :func:`adaptive`);
* bounds and orders (:mod:`ftrl_adam.regret.bounds`): :func:`d3_bound`,
  :func:`d4_bound`, :func:`minimax_order`, :func:`switch_order`,
  :func:`alternating_order`, :func:`oblivious_order`, and the closed forms of
  the switch sequence;
* the beta-grid (:mod:`ftrl_adam.regret.study`): :func:`beta_grid` and
  :func:`run_beta_grid` run thousands of games over (b1, b2) x seeds (x D, c
  or learning rates), against built-in adversaries or your own, with each
  oblivious seed's gradients drawn once for all learner cells, sharded,
  chunked and resumable, and write a CSV, a JSON and heatmaps (the
  ``ftrl-adam regret`` command);
* the worst case, computed (:mod:`ftrl_adam.regret.worst`):
  :func:`worst_case` searches, per (b1, b2), the oblivious sequence in
  [-G, G]^T with the largest discounted regret of the package's own learner
  (``--adversaries worst`` in the beta-grid).

The float64 test oracles (the FTRL form of Algorithm 1, identity D2, the
closed forms of the switch sequence) live in :mod:`ftrl_adam.testing`.

Tags as in docs/theory.md: [P] the papers' prose, [D] derived here (constants ours,
tested), [R] the papers' statement in order with our constants.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from ftrl_adam import regret
  >>> run = jax.jit(jax.vmap(lambda b1, b2, key: regret.game(
  ...     b1, b2, radius=1.0, T=64, d=2, adversary=regret.rademacher(1.0),
  ...     key=key)))
  >>> res = run(jnp.array([0.5, 0.9]), jnp.array([0.9, 0.5]),
  ...           jax.random.split(jax.random.key(0), 2))
  >>> bool(jnp.all(res.regret_box <= res.bound))
  True
"""

# The lab's dependencies first: one line naming the extra, not a traceback.
from ftrl_adam import lab as _lab
_lab.require_extra("ftrl_adam.regret")

from ftrl_adam.lab.regret.adversaries import Adversary
from ftrl_adam.lab.regret.adversaries import abs_w
from ftrl_adam.lab.regret.adversaries import adaptive
from ftrl_adam.lab.regret.adversaries import alternating
from ftrl_adam.lab.regret.adversaries import from_array
from ftrl_adam.lab.regret.adversaries import gaussian
from ftrl_adam.lab.regret.adversaries import gradient_of
from ftrl_adam.lab.regret.adversaries import heavy_tailed
from ftrl_adam.lab.regret.adversaries import oblivious
from ftrl_adam.lab.regret.adversaries import oppose
from ftrl_adam.lab.regret.adversaries import rademacher
from ftrl_adam.lab.regret.adversaries import sparse
from ftrl_adam.lab.regret.adversaries import switch
from ftrl_adam.lab.regret.bounds import BoundStreams
from ftrl_adam.lab.regret.bounds import alternating_order
from ftrl_adam.lab.regret.bounds import d3_bound
from ftrl_adam.lab.regret.bounds import d4_bound
from ftrl_adam.lab.regret.bounds import minimax_order
from ftrl_adam.lab.regret.bounds import oblivious_order
from ftrl_adam.lab.regret.bounds import switch_lengths
from ftrl_adam.lab.regret.bounds import switch_order
from ftrl_adam.lab.regret.rounds import GameResult
from ftrl_adam.lab.regret.rounds import Theory
from ftrl_adam.lab.regret.rounds import Trajectory
from ftrl_adam.lab.regret.games import game
from ftrl_adam.lab.regret.games import play
from ftrl_adam.lab.regret.games import raise_if_nonfinite
from ftrl_adam.lab.regret.games import theory_constants
from ftrl_adam.lab.regret.games import theory_learner
from ftrl_adam.lab.regret.replays import replay
from ftrl_adam.lab.regret.study import BETA_GRID_ADVERSARIES
from ftrl_adam.lab.regret.study import BETA_GRID_COLUMNS
from ftrl_adam.lab.regret.study import BetaGrid
from ftrl_adam.lab.regret.study import BETA_GRID_OPTIONS
from ftrl_adam.lab.regret.study import BetaGridResult
from ftrl_adam.lab.regret.study import beta_grid
from ftrl_adam.lab.regret.study import run_beta_grid
from ftrl_adam.lab.regret.worst import WorstCase
from ftrl_adam.lab.regret.worst import discounted_regret_of
from ftrl_adam.lab.regret.worst import worst_case

__all__ = (
    "BETA_GRID_ADVERSARIES",
    "BETA_GRID_COLUMNS",
    "BETA_GRID_OPTIONS",
    "Adversary",
    "BetaGrid",
    "BetaGridResult",
    "BoundStreams",
    "GameResult",
    "Theory",
    "Trajectory",
    "WorstCase",
    "abs_w",
    "adaptive",
    "alternating",
    "alternating_order",
    "beta_grid",
    "d3_bound",
    "d4_bound",
    "discounted_regret_of",
    "from_array",
    "game",
    "gaussian",
    "gradient_of",
    "heavy_tailed",
    "minimax_order",
    "oblivious",
    "oblivious_order",
    "oppose",
    "play",
    "rademacher",
    "raise_if_nonfinite",
    "replay",
    "run_beta_grid",
    "sparse",
    "switch",
    "switch_lengths",
    "switch_order",
    "theory_constants",
    "theory_learner",
    "worst_case",
)
