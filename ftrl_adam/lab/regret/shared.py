"""K learners against one oblivious gradient stream, in one scan.

The β-grid's fast path for oblivious adversaries (DESIGN.md "Shared
streams"): the stream of a seed does not depend on the learner, so it is
drawn once per block of rounds and every learner cell of that seed plays it,
the learners vmapped inside the scan over rounds.  Each cell is
:func:`ftrl_adam.regret.game` (same rounds, same arithmetic: :mod:`.rounds`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ftrl_adam.lab.engine.progress import report_rounds
from ftrl_adam.lab.regret.games import theory_learner
from ftrl_adam.lab.regret.rounds import GameResult
from ftrl_adam.lab.regret.rounds import Theory
from ftrl_adam.lab.regret.rounds import block_gradients
from ftrl_adam.lab.regret.rounds import finish
from ftrl_adam.lab.regret.rounds import initial_carry
from ftrl_adam.lab.regret.rounds import oblivious_blocks
from ftrl_adam.lab.regret.rounds import play_round
from ftrl_adam.lab.regret.rounds import w0_vec

_f32 = jnp.float32


def shared_stream_games(b1, b2, radius, c, adversary, key, horizon=None, *,
                        T: int, d: int, domain: str = "box",
                        per_cell_adversary: bool = False,
                        tick: bool = False) -> GameResult:
  """K games of Algorithm 1 against one oblivious gradient stream.

  The stream of an oblivious adversary does not depend on the learner, so
  g_t is drawn once per round and every learner cell plays it: one
  ``lax.scan`` over rounds with the learners vmapped inside.  Each cell equals
  :func:`game` with the same (b1, b2, radius, c, adversary, key) to float32
  rounding (bit for bit under :func:`ftrl_adam.grid.compiler_options`), since
  both run :func:`play_round`, the transform's own ``update``.

  Args:
    b1: ``(K,)`` first-moment decays (and the games' discount).
    b2: ``(K,)`` second-moment decays.
    radius: ``(K,)`` radii D.
    c: ``(K,)`` constants c of Algorithm 1.
    adversary: an oblivious :class:`~ftrl_adam.regret.Adversary`; with
      ``per_cell_adversary`` a batch of K adversaries (leaves with a leading
      axis K: e.g. the switch sequence of each cell's own (b1, b2)), whose
      gradients are computed per cell.
    key: the stream's PRNG key (round t uses ``fold_in(key, t)``).
    horizon: optional ``(K,)`` int32 rounds per cell (see :func:`play`).
    T: rounds.
    d: dimension.
    domain: ``"box"`` or ``"ball"``.
    per_cell_adversary: see ``adversary``.
    tick: report the rounds to the running grid's progress line.

  Returns:
    A :class:`GameResult` whose fields have a leading axis K; of
    ``max_regret_box`` and ``max_regret_ball`` only the ``domain``'s is
    tracked (the other is NaN).
  """
  b1, b2, radius, c = jax.lax.optimization_barrier((b1, b2, radius, c))
  w0 = w0_vec(adversary, d) if not per_cell_adversary else jax.vmap(
      lambda a: w0_vec(a, d))(adversary)

  def learner_of(b1, b2, r, c):
    return theory_learner(b1, b2, r, c=c, domain=domain), Theory(b1, b2, c)

  carry0 = jax.vmap(
      lambda b1, b2, r, c, w0: initial_carry(learner_of(b1, b2, r, c)[0], w0,
                                              d, domain),
      in_axes=(0, 0, 0, 0, 0 if per_cell_adversary else None))(
          b1, b2, radius, c, w0)

  def one(carry, g, t, b1, b2, r, c, h):
    learner, theory = learner_of(b1, b2, r, c)
    return play_round(learner, theory, carry, g, t, b1, r, domain, h, False,
                  track=(domain,))[0]

  h_axis = None if horizon is None else 0

  def body(carry, tg):
    t, g = tg
    carry = jax.vmap(one, in_axes=(0, 0 if per_cell_adversary else None, None,
                                   0, 0, 0, 0, h_axis))(
                                       carry, g, t, b1, b2, radius, c, horizon)
    return carry, None

  def block(carry, ts):
    if tick:   # once per block: ts[-1] is a multiple of the block size
      report_rounds(ts[-1], T, times=T // ts.shape[0])
    return jax.lax.scan(
        body, carry,
        (ts, block_gradients(adversary, key, ts, d, per_cell_adversary)))

  # Blocks of rounds: each block's gradients are drawn in one vectorised call
  # (O(block x d) memory), then the learners play them one round at a time.
  ts = oblivious_blocks(jnp.arange(1, T + 1, dtype=jnp.int32))
  (_, _, _, acc), _ = jax.lax.scan(block, carry0, ts)
  zero_u = jnp.zeros((d,), _f32)
  res = jax.vmap(
      lambda acc, r, b1, b2, c: finish(acc, zero_u, r, Theory(b1, b2, c),
                                        domain, d, None))(acc, radius, b1, b2, c)
  # Only the domain's running maximum was tracked.
  nan = jnp.full_like(res.max_regret_box, jnp.nan)
  return res._replace(**{f"max_regret_{'ball' if domain == 'box' else 'box'}":
                         nan})


