"""The constructions a worst-case search starts from, and the value of a sequence.

For one learner cell of Algorithm 1 (d = 1), :func:`pool` values every
construction of :data:`CONSTRUCTION_KINDS` by a whole game of the
transform's own ``update`` (:func:`learner_regret`): switch sequences at
every switch point, the switch sequences D5 of the cell, short switch games,
square waves, the sequences the adaptive adversaries of D7 produce against
this learner, and the cell's random signs (docs/theory.md section 3;
constructions [D]).  :mod:`ftrl_adam.lab.regret.worst` searches from them.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ftrl_adam import _d3
from ftrl_adam.lab.regret import adversaries as _adv
from ftrl_adam.lab.regret import bounds
from ftrl_adam.lab.regret import games

_f32 = jnp.float32

# Codes of ``best_construction_kind``.
CONSTRUCTION_KINDS = ("switch_point", "switch_d5", "short_switch", "blocks",
                      "oppose", "abs_w", "random_signs")

_KAPPAS = (0.5, 1.0, 2.0)
_BLOCKS = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
_ABS_W_W0 = 5.0   # the |w| adversary's start, as in the lab (docs/theory.md D7)
# A "primed" sequence starts with a tiny gradient +-PRIME G: it sets the sign
# of the learner's next play (-c sign(g), clipped) at almost no cost in the
# regret's sums or in V_t.  A power of two, so that scaling is exact.
PRIME = 2.0 ** -16
# Games of up to this many rounds are in the pool at every horizon.
_SHORT = 64



def learner_regret(b1, b2, radius, c, xs, grad_of):
  """r_T + D |M_T| of Algorithm 1 (d = 1) on g_t = grad_of(xs[t - 1]).

  The learner is :func:`ftrl_adam.regret.theory_learner`: its own ``update``
  under ``lax.scan``.  Only the two running sums of docs/theory.md section 1
  are kept (no ball regret, no max over t, no bound streams), so that the
  gradient with respect to the sequence stays cheap and finite.
  """
  learner = games.theory_learner(b1, b2, radius, c=c)
  w = jnp.zeros((1,), _f32)
  zero = jnp.zeros((1,), _f32)

  def body(carry, x):
    state, delta, loss, m = carry
    g = jnp.reshape(jnp.asarray(grad_of(x), _f32), (1,))
    loss = b1 * loss + jnp.sum(g * delta)
    m = b1 * m + g
    updates, state = learner.update(g, state, w)
    return (state, jnp.asarray(updates, _f32), loss, m), None

  carry0 = (learner.init(w), zero, jnp.zeros([], _f32), zero)
  (_, _, loss, m), _ = jax.lax.scan(body, carry0, xs)
  return _d3.sup_regret(loss, m, radius, "box")


def _geometric(lo: int, hi: int) -> list[int]:
  """Integers lo..hi, about 1.5x apart (both ends included)."""
  out, x = [], lo
  while x < hi:
    out.append(x)
    x = max(x + 1, int(round(x * 1.5)))
  return out + [hi]


def parametric_pool(b1, b2, T):
  """The constructions' (horizon H, pattern length L, block b, primed, tail, kind).

  A construction is a game of H rounds (a zero prefix of T - H rounds: the
  learner plays 0 until it sees a non-zero gradient), optionally primed (its
  first round is -PRIME G for primed = 1, +PRIME G for primed = 2), then the
  pattern: G (-1)^ceil(s / b) for its rounds s = 1..L, then tail * G (tail =
  -1 or +1) up to round H.  Returns the six columns, the number of short
  games (first rows, H <= window) and the window.
  """
  short, rows = [], []   # (h, l, b, primed, tail, kind), static
  window = min(T, _SHORT)
  # short games of every horizon H <= window, alternating then k rounds of
  # -G or +G, plain and primed (the four phases of prime, pattern and tail);
  # evaluated on a window of the last rounds only (a zero prefix is exact)
  for h in range(2, window + 1):
    for k in (range(1, h + 1) if h <= 16 else _geometric(1, h)):
      for primed in (0, 1, 2):
        for tail in (-1, 1):
          if h - k - (primed > 0) >= 0:
            short.append((h, h - k - (primed > 0), 1, primed, tail, 2))
  # switch at every switch point L (L = T: alternating; L = 0: constant)
  rows += [(T, big_l, 1, 0, -1, 0) for big_l in range(T + 1)]
  # longer games, horizons about 1.5x apart
  for h in _geometric(window, T)[1:]:
    for k in _geometric(1, h):
      for primed in (0, 1, 2):
        for tail in (-1, 1):
          if h - k - (primed > 0) >= 0:
            rows.append((h, h - k - (primed > 0), 1, primed, tail, 2))
  # square waves of blocks of b rounds, two phases
  for b in _BLOCKS:
    if b >= T:
      break
    for off in sorted({0, b // 2}):
      for primed in (0, 1, 2):
        rows.append((T - off, T, b, primed, -1, 3))
  # the switch sequences D5 of the cell (traced: they depend on b1, b2), at
  # their own horizon min(L + k, T)
  d5 = []
  for kappa in _KAPPAS:
    big_l, k = bounds.switch_lengths(b1, b2, kappa)
    for primed in (0, 1, 2):
      h = jnp.minimum(big_l + k + (primed > 0), T)
      d5.append(jnp.stack([h, big_l] + [jnp.int32(x) for x in
                                        (1, primed, -1, 1)]))
  static = np.asarray(short + rows, np.int32)
  pool = jnp.concatenate([jnp.asarray(static), jnp.stack(d5).astype(jnp.int32)])
  return tuple(pool[:, i] for i in range(6)), len(short), window


def construction_grad(h, big_l, b, primed, tail, G, T, t):
  """g_t of the parametric construction (see :func:`parametric_pool`)."""
  s = t - (T - h)
  q = s - (primed > 0)                  # round of the pattern
  block = (q - 1) // b + 1
  pattern = jnp.where(block % 2 == 0, G, -G)
  g = jnp.where(q <= big_l, pattern, tail * G)
  prime = PRIME * jnp.where(primed == 2, G, -G)
  g = jnp.where(s <= 0, 0.0, jnp.where((primed > 0) & (s == 1), prime, g))
  return g.astype(_f32)


def adaptive_sequences(b1, b2, radius, c, G, T, key):
  """The sequences that oppose and |w| (D7) produce against this learner."""
  out = []
  for adv in (_adv.oppose(G), _adv.abs_w(G, _ABS_W_W0)):
    res = games.game(b1, b2, radius=radius, c=c, T=T, d=1, adversary=adv,
                     key=key, record=True)
    out.append(res.trajectory.grads[:, 0])
  return jnp.stack(out)


def rademacher_stream(G, T, key):
  """g_t of :func:`ftrl_adam.regret.rademacher` with ``key`` at d = 1."""
  ts = jnp.arange(1, T + 1, dtype=jnp.int32)
  adv = _adv.rademacher(G)
  return jax.vmap(lambda t: adv.gradient(t, jax.random.fold_in(key, t), 1))(
      ts)[:, 0]


def random_starts(G, T, n, key):
  """n primed random-sign games, horizons spread geometrically from T down to 2."""
  if n == 1:
    horizons = np.array([T])
  else:
    horizons = np.round(T * (2.0 / T) ** (np.arange(n) / (n - 1)))
  horizons = jnp.asarray(np.maximum(horizons, 2), jnp.int32)
  signs = G * jax.random.rademacher(key, (n, T), _f32)
  t = jnp.arange(1, T + 1, dtype=jnp.int32)
  s = t[None, :] - (T - horizons[:, None])
  return jnp.where(s <= 0, 0.0, jnp.where(s == 1, PRIME * signs, signs))


# ---------------------------------------------------------------- the search


class Pool(NamedTuple):
  """The constructions and explicit sequences a search starts from."""
  values: jax.Array        # the regret of each
  kinds: jax.Array         # CONSTRUCTION_KINDS index of each
  sequence: Callable       # i -> the i-th sequence, (T,)


def pool(b1, b2, radius, c, G, key, T) -> Pool:
  """1. Parametric constructions (generated inside the scan, never stored as
  a (P, T) array) and explicit sequences, each valued by a whole game."""
  ts = jnp.arange(1, T + 1, dtype=jnp.int32)
  pool, n_short, window = parametric_pool(b1, b2, T)
  kinds = pool[-1]
  n_par = kinds.shape[0]

  def values(rows, length):
    steps_ = jnp.arange(1, length + 1, dtype=jnp.int32)
    return jax.vmap(lambda *row: learner_regret(
        b1, b2, radius, c, steps_,
        lambda t: construction_grad(*row, G, length, t)))(*rows)

  par_values = jnp.concatenate(
      [values([x[:n_short] for x in pool[:-1]], window),
       values([x[n_short:] for x in pool[:-1]], T)])
  explicit = jnp.concatenate(
      [adaptive_sequences(b1, b2, radius, c, G, T, key),
       rademacher_stream(G, T, key)[None]])
  exp_values = jax.vmap(lambda g: learner_regret(
      b1, b2, radius, c, g, lambda x: x))(explicit)

  def sequence(i):
    j = jnp.minimum(i, n_par - 1)
    built = construction_grad(*(x[j] for x in pool[:-1]), G, T, ts)
    return jnp.where(i < n_par, built,
                     explicit[jnp.clip(i - n_par, 0, explicit.shape[0] - 1)])

  return Pool(values=jnp.concatenate([par_values, exp_values]),
               kinds=jnp.concatenate([kinds, jnp.asarray([4, 5, 6], jnp.int32)]),
               sequence=sequence)


