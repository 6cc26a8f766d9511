r"""Worst-case regret, computed: an adversary search by projected ascent.

For one learner cell (b1, b2, D, c) of Algorithm 1 (:func:`theory_learner`,
docs/theory.md section 2) the worst oblivious adversary with |g_t| <= G is the
sequence that maximises the b1-discounted regret against the best comparator,

.. math::

   W_T(b_1, b_2) = \sup_{g \in [-G, G]^T} \Big( \sum_{t=1}^T b_1^{T-t} g_t \Delta_t(g_{<t})
       + D \Big|\sum_{t=1}^T b_1^{T-t} g_t\Big| \Big),

(docs/theory.md section 1: the sup over |u| <= D of R_T(u) [D]).  The game is
a differentiable function of the sequence, so :func:`worst_case` searches it
by projected gradient ascent (Adam steps, clipped to the box) through the
scanned game, many restarts at once under ``jax.vmap``; the learner is the
transform's own ``update`` (no second copy of the update rule).

**Why one coordinate suffices.**  For the box domain the learner is separable
(per-coordinate moments and clip), the best box comparator is a sum over
coordinates (D ||M_T||_1) and the constraint set [-G, G]^{T x d} is a product,
so the sup in d dimensions is d times the sup in one, reached by repeating a
worst 1-D sequence in every coordinate [D].  The D3 bound is a per-coordinate
sum as well.  With c = D the regret is also positively homogeneous of degree
one in G and in D (the learner with eps = 0 is scale-free), so W_T = D G
w_T(b1, b2, c/D) [D].

**The maximiser need not be a sign sequence, and the sup need not be
attained.**  The regret is not concave in each g_t (g_t moves every later
play), and the learner (eps = 0) is discontinuous where its second moment is
zero: it plays 0 until it sees a non-zero gradient, and after the first one
it plays -c sign(g_1) clipped to the box, whatever |g_1|.  So (i) a zero
prefix makes a shorter game, exactly: W_T is non-decreasing in T; (ii) a
*primed* game, whose first gradient is tiny (+-2^-16 G here), puts the play
at +-D for free: after [-eps G, +G] the regret is D G (2 - b1 eps), against
D G (2 - b1) for [-G, +G].  The sup is approached as eps -> 0 and not
attained; the search reports a valid sequence and its value, a lower bound
on W_T [D].  On short games the best primed sequence beats every sign
sequence, and interior values can add a little more
(tests/test_worst_case.py: brute force over every sign and primed sign
sequence of T = 12, a fine grid of values for T = 4).

**The search.**  (1) A pool of constructions is evaluated on the cell
(:data:`CONSTRUCTION_KINDS`): the switch sequence at every switch point L
(alternating for L rounds, then -G up to T, L = 0..T: this includes the
alternating sequence D6 and the constant one); the switch sequences D5 of
the cell, kappa in {1/2, 1, 2}, at their own horizon min(L + k, T), plain and
primed; short switch games of every horizon H <= 64 (and about 1.5x apart
beyond), alternating then k rounds of -G or +G, plain and primed; square
waves of blocks of b rounds; the sequences that the adaptive adversaries of
D7 (:func:`oppose`, :func:`abs_w`) produce against this learner (a
deterministic learner's adaptive adversary is one fixed sequence); and the
cell's random-sign sequence (:func:`rademacher` with the cell's key).
(2) ``restarts`` projected ascents (Adam on -R, steps of ``lr * G``
cosine-decayed to 0, clipped to [-G, G]) run for ``steps`` gradient
evaluations, from the best constructions and from primed random signs at
horizons spread from T down to 2; entries up to the first non-zero one stay
fixed (the gradient is undefined there).  (3) ``sweeps`` rounds of a
best-improvement local search over 2T moves of the best sequence (negate one
entry; or start the game at round s with a primed gradient).  The value
returned is the best of everything evaluated, so it is never below the best
construction; ``history`` holds the best value after each ascent step and
each sweep, so a reader can see what the last steps still gained.

Cost per cell: about ``restarts * steps`` gradients (forward and reverse
pass) of a T-round game, ``2 * T * sweeps`` forward games for the polish, and
the pool (T = 1000: 1,717 forward games of T rounds and 3,408 of 64 rounds).
The default budget (16 restarts x 128 steps, 2 sweeps) was chosen on the
default 16 x 24 (b1, b2) map at T = 1000 (about a minute on 2 CPU cores):
against 64 restarts x 512 steps x 4 sweeps it gives the same value to 0.1% in
92 of 96 cells measured; the other four are 3.3% and 1.8% lower (b1 = 0.86,
b2 <= 0.40) and 0.5% and 0.2% lower (b2 >= 0.994).

References:
  Nguyen, *How to Set beta1, beta2 in Adam: An Online Learning Perspective*,
  ALT 2026, https://arxiv.org/abs/2510.03478 (the question: is b1 = sqrt(b2)
  the best choice against an oblivious adversary [P]).
  Kingma & Ba, *Adam*, ICLR 2015, https://arxiv.org/abs/1412.6980 (the ascent
  steps).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ftrl_adam import _checks
from ftrl_adam.lab import engine as grid
from ftrl_adam.lab.regret import adversaries as _adv
from ftrl_adam.lab.regret import constructions as _cons
from ftrl_adam.lab.regret import games

__all__ = (
    "CONSTRUCTION_KINDS",
    "DEFAULT_LR",
    "DEFAULT_RANDOM_FRACTION",
    "DEFAULT_RESTARTS",
    "DEFAULT_STEPS",
    "DEFAULT_SWEEPS",
    "WorstCase",
    "discounted_regret_of",
    "worst_case",
    "worst_case_cell_fn",
)

_f32 = jnp.float32

# The default budget: restarts x steps gradient evaluations of a T-round game
# per cell (chosen so that the default 16 x 24 map at T = 1000 takes about a
# minute on 2 CPU cores; its convergence: module docstring).
DEFAULT_RESTARTS = 16
DEFAULT_STEPS = 128
# Sweeps of the local search that polishes the best sequence (2T games each).
DEFAULT_SWEEPS = 2
# Adam's step size as a fraction of G (cosine-decayed to 0 over the steps).
DEFAULT_LR = 0.05
# Share of the restarts started from fresh random signs (the rest from the
# best constructions).
DEFAULT_RANDOM_FRACTION = 0.5

CONSTRUCTION_KINDS = _cons.CONSTRUCTION_KINDS


class WorstCase(NamedTuple):
  r"""Result of :func:`worst_case` (float32 scalars unless stated).

  Attributes:
    regret: the largest b1-discounted regret found, sup over |u| <= D
      (a lower bound on the worst case W_T, see the module docstring).
    sequence: the gradient sequence that reaches it, shape ``(T,)``, in
      [-G, G].
    bound: the D3 bound of that sequence (worst comparator), >= ``regret``.
    best_construction: the largest regret among the constructions of the
      pool (``regret >= best_construction``).
    best_construction_kind: int32 index into :data:`CONSTRUCTION_KINDS`.
    start: the best value before the first ascent step (pool and random
      starts).
    history: shape ``(steps + sweeps,)``: the best value after each ascent
      step, then after each local-search sweep (non-decreasing;
      ``history[-1] == regret``).
  """

  regret: jax.Array
  sequence: jax.Array
  bound: jax.Array
  best_construction: jax.Array
  best_construction_kind: jax.Array
  start: jax.Array
  history: jax.Array


# ---------------------------------------------------------------- the game


def discounted_regret_of(g: Any, b1: Any, b2: Any, *, radius: Any = 1.0,
                         c: Optional[Any] = None) -> jax.Array:
  r"""The search's objective: b1-discounted regret of Algorithm 1 on a 1-D sequence.

  .. math:: R_T = \sum_t b_1^{T-t} g_t \Delta_t + D \Big|\sum_t b_1^{T-t} g_t\Big|,

  the sup over |u| <= D of the regret [D], with Delta_t the plays of
  :func:`ftrl_adam.regret.theory_learner` (its own ``update`` under
  ``lax.scan``).  Equal to ``regret.game(...,
  adversary=regret.from_array(g[:, None])).regret_box`` to float32 rounding,
  and differentiable in ``g`` (the gradient is NaN only at exact zeros of
  ``g`` before the first non-zero entry, where the learner is discontinuous).
  jit/vmap-friendly: all arguments may be traced.

  Args:
    g: the sequence, shape ``(T,)``.
    b1: in (0, 1).
    b2: in (0, 1).
    radius: D > 0.
    c: the constant of Algorithm 1, default D.

  Returns:
    A float32 scalar.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from ftrl_adam import regret
    >>> from ftrl_adam.regret import worst
    >>> g = jnp.array([-1.0, 1.0, -1.0, 1.0])
    >>> r = worst.discounted_regret_of(g, 0.5, 0.25)
    >>> res = regret.game(0.5, 0.25, radius=1.0, T=4, d=1,
    ...                   adversary=regret.from_array(g[:, None]),
    ...                   key=jax.random.key(0))
    >>> bool(jnp.allclose(r, res.regret_box))
    True
  """
  theory = games.theory_constants(b1, b2, radius, c)
  g = jnp.asarray(g, _f32)
  if g.ndim != 1:
    raise ValueError(f"`g` must have shape (T,), got shape {g.shape}.")
  return _cons.learner_regret(theory.b1, theory.b2, _checks.as_f32("radius", radius),
                         theory.c, g, lambda x: x)


# ---------------------------------------------------------------- the pool


def _ascent(objective, g0, G, lr, *, T, restarts, steps):
  """3. Projected ascent from each start: Adam on -R, clipped to [-G, G],
  cosine-decayed steps; the best sequence of each restart and its value,
  and the best value after each step."""
  # The entries up to the first non-zero one stay fixed: before it the
  # learner is discontinuous (a zero prefix is a shorter game, and the first
  # non-zero gradient only sets the sign of the next play).
  nonzero = g0 != 0
  first = jnp.where(jnp.any(nonzero, axis=1), jnp.argmax(nonzero, axis=1), T)
  free = (jnp.arange(T)[None, :] > first[:, None]).astype(_f32)
  opt = optax.adam(optax.cosine_decay_schedule(1.0, steps))
  value_and_grad = jax.vmap(jax.value_and_grad(objective))

  def step(carry, _):
    g, opt_state, best_v, best_g = carry
    v, grad = value_and_grad(g)
    grad = jnp.where(jnp.isnan(grad), 0.0, grad) * free
    better = v > best_v
    best_v = jnp.where(better, v, best_v)
    best_g = jnp.where(better[:, None], g, best_g)
    updates, opt_state = opt.update(-grad, opt_state, g)
    g = jnp.clip(g + lr * G * updates * free, -G, G)
    return (g, opt_state, best_v, best_g), jnp.max(best_v)

  carry0 = (g0, opt.init(g0), jnp.full((restarts,), -jnp.inf, _f32), g0)
  (g, _, best_v, best_g), seen = jax.lax.scan(step, carry0, None, steps)
  v_last = jax.vmap(objective)(g)
  better = v_last > best_v
  best_v = jnp.where(better, v_last, best_v)
  best_g = jnp.where(better[:, None], g, best_g)
  return best_v, best_g, seen


def _polish(b1, b2, radius, c, G, x, v, *, T, sweeps):
  """4. Best-improvement local search over 2T moves of the best sequence
  (negate one entry; or zero the prefix before round s and prime round s),
  each move valued by a whole game."""
  ts = jnp.arange(1, T + 1, dtype=jnp.int32)

  def move(x, i, t, xt):
    pos = i % T + 1
    flip = jnp.where(t == pos, -xt, xt)
    sign = jnp.where(xt < 0, -1.0, 1.0)
    prime = jnp.where(t < pos, 0.0, jnp.where(t == pos, _cons.PRIME * G * sign, xt))
    return jnp.where(i < T, flip, prime)

  def sweep(carry, _):
    x, v = carry
    vals = jax.vmap(lambda i: _cons.learner_regret(
        b1, b2, radius, c, (ts, x),
        lambda tx: move(x, i, tx[0], tx[1])))(jnp.arange(2 * T))
    j = jnp.argmax(vals)
    better = vals[j] > v
    cand = jax.vmap(lambda t, xt: move(x, j, t, xt))(ts, x)
    x = jnp.where(better, cand, x)
    v = jnp.where(better, vals[j], v)
    return (x, v), v

  return jax.lax.scan(sweep, (x, v), None, sweeps)


def _search(b1, b2, radius, c, G, lr, key, *, T, restarts, steps, n_random,
            sweeps):
  b1, b2, radius, c, G, lr = jax.lax.optimization_barrier(
      (b1, b2, radius, c, G, lr))
  objective = lambda g: _cons.learner_regret(  # noqa: E731
      b1, b2, radius, c, g, lambda x: x)
  pool = _cons.pool(b1, b2, radius, c, G, key, T)
  best_pool = jnp.argmax(pool.values)
  best_construction = pool.values[best_pool]

  # 2. Restarts: the best constructions and primed random signs.
  n_pool = min(restarts - n_random, pool.values.shape[0])
  n_random = restarts - n_pool
  starts = []
  if n_pool:
    _, top = jax.lax.top_k(pool.values, n_pool)
    starts.append(jax.vmap(pool.sequence)(top))
  if n_random:
    # (the rounds of the cell's Rademacher sequence use fold_in(key, t >= 1))
    starts.append(_cons.random_starts(G, T, n_random, jax.random.fold_in(key, 0)))
  best_v, best_g, seen = _ascent(objective, jnp.concatenate(starts), G, lr,
                                 T=T, restarts=restarts, steps=steps)

  i = jnp.argmax(best_v)
  from_pool = best_construction >= best_v[i]
  x = jnp.where(from_pool, pool.sequence(best_pool), best_g[i])
  v = jnp.maximum(best_construction, best_v[i])
  (sequence, regret), polished = _polish(b1, b2, radius, c, G, x, v, T=T,
                                         sweeps=sweeps)
  history = jnp.maximum(
      jnp.concatenate([seen[1:], jnp.max(best_v)[None], polished]),
      best_construction)
  start = jnp.maximum(seen[0], best_construction)

  bound = games.game(b1, b2, radius=radius, c=c, T=T, d=1,
                     adversary=_adv.from_array(sequence[:, None]),
                     key=key).bound
  return WorstCase(
      regret=regret, sequence=sequence, bound=bound,
      best_construction=best_construction,
      best_construction_kind=pool.kinds[best_pool], start=start,
      history=history)


@functools.lru_cache(maxsize=1)
def _search_jit():
  # Compiled with the grid engine's options, so that a single search equals
  # the same cell of a grid run by :func:`ftrl_adam.grid.run_grid`.
  return jax.jit(
      _search, static_argnames=("T", "restarts", "steps", "n_random", "sweeps"),
      compiler_options=grid.compiler_options())


# ---------------------------------------------------------------- validation


def _check_budget(T, restarts, steps, sweeps, random_fraction, lr, G):
  T = _checks.check_positive_int("T", T, 2)
  restarts = _checks.check_positive_int("restarts", restarts)
  steps = _checks.check_positive_int("steps", steps)
  sweeps = _checks.check_positive_int("sweeps", sweeps, 0)
  _checks.check_in_range("random_fraction", random_fraction, low=0.0,
                         high=1.0, high_closed=True)
  _checks.check_in_range("lr", lr, low=0.0, low_closed=False)
  _checks.check_in_range("G", G, low=0.0, low_closed=False)
  n_random = int(round(float(random_fraction) * restarts))
  return T, restarts, steps, sweeps, n_random


def worst_case(
    b1: Any,
    b2: Any,
    *,
    T: int,
    key: jax.Array,
    radius: Any = 1.0,
    c: Optional[Any] = None,
    G: Any = 1.0,
    restarts: int = DEFAULT_RESTARTS,
    steps: int = DEFAULT_STEPS,
    sweeps: int = DEFAULT_SWEEPS,
    lr: float = DEFAULT_LR,
    random_fraction: float = DEFAULT_RANDOM_FRACTION,
) -> WorstCase:
  r"""Searches the worst oblivious sequence in [-G, G]^T for one learner cell.

  Maximises the b1-discounted regret of Algorithm 1 (Nguyen 2026; the
  learner of :func:`ftrl_adam.regret.theory_learner`, c = D by default)
  against the best comparator |u| <= D,

  .. math:: \max_{g \in [-G, G]^T} \sum_t b_1^{T-t} g_t \Delta_t(g_{<t})
            + D \Big|\sum_t b_1^{T-t} g_t\Big|,

  over one coordinate (enough for the box, module docstring [D]): the pool of
  constructions is evaluated, then ``restarts`` projected ascents (Adam steps
  of size ``lr * G``, cosine-decayed to 0, clipped to the box) run for
  ``steps`` gradient evaluations each, ``round(random_fraction * restarts)``
  of them from primed random signs and the rest from the best constructions,
  then ``sweeps`` sweeps of a local search polish the best sequence (module
  docstring).  The result is a lower bound on the worst case (the sup may
  not be attained); ``history`` shows what the last steps still gained.
  Pure: the same arguments give the same result, equal bit for bit to the
  same cell of :func:`worst_case_cell_fn` run by
  :func:`ftrl_adam.grid.run_grid`.  Everything but T and the budget may be
  traced.  The constructions, the D3 bound and the learner's equivalence with
  FTRL are this project's [D]; the question (is b2 = b1^2 best against an
  oblivious adversary?) is Nguyen's [P].

  Args:
    b1: in (0, 1), the learner's first decay and the regret's discount.
    b2: in (0, 1).
    T: rounds, an int >= 2.
    key: a PRNG key (random-sign starts, and the cell's Rademacher sequence).
    radius: D > 0.
    c: c > 0, the constant of Algorithm 1, default D (the theory's [R]).
    G: the bound on |g_t|, > 0.
    restarts: ascent restarts, an int >= 1.
    steps: ascent steps per restart, an int >= 1.
    sweeps: local-search sweeps after the ascent, an int >= 0.
    lr: Adam's initial step as a fraction of G, > 0.
    random_fraction: share of the restarts from random signs, in [0, 1].

  Returns:
    A :class:`WorstCase`.

  Raises:
    ValueError: naming a bad argument.

  Example:
    >>> import jax
    >>> from ftrl_adam import regret
    >>> from ftrl_adam.regret import worst
    >>> res = worst.worst_case(0.9, 0.81, T=12, key=jax.random.key(0),
    ...                        restarts=8, steps=32)
    >>> bool(res.best_construction <= res.regret <= res.bound)
    True
    >>> res.sequence.shape, res.history.shape   # 32 steps + 2 sweeps
    ((12,), (34,))

  References:
    Nguyen, ALT 2026, https://arxiv.org/abs/2510.03478.
  """
  T, restarts, steps, sweeps, n_random = _check_budget(
      T, restarts, steps, sweeps, random_fraction, lr, G)
  _checks.check_key(key)
  theory = games.theory_constants(b1, b2, radius, c)
  radius = _checks.as_f32("radius", radius, low=0.0, low_closed=False)
  return _search_jit()(theory.b1, theory.b2, radius, theory.c,
                       jnp.asarray(G, _f32), jnp.asarray(lr, _f32), key, T=T,
                       restarts=restarts, steps=steps, n_random=n_random,
                       sweeps=sweeps)


def worst_case_cell_fn(
    *,
    T: int,
    restarts: int = DEFAULT_RESTARTS,
    steps: int = DEFAULT_STEPS,
    sweeps: int = DEFAULT_SWEEPS,
    G: float = 1.0,
    lr: float = DEFAULT_LR,
    random_fraction: float = DEFAULT_RANDOM_FRACTION,
) -> Callable[[dict[str, jax.Array]], dict[str, jax.Array]]:
  r"""The per-cell function of a worst-case map, for :func:`ftrl_adam.grid.run_grid`.

  ``cell`` holds scalars ``b1``, ``b2``, ``radius``, ``c`` (NaN means c = D,
  the theory's choice) and an integer ``seed`` (the key is
  :func:`ftrl_adam.grid.key_from_seed`); other columns are ignored.  The
  cell runs :func:`worst_case` with the given budget.  Cached: the same
  arguments give the same function object, so the engine reuses its compiled
  program.  The arguments are the run's configuration (they belong in
  ``run_grid``'s ``config``).

  Args:
    T: rounds, an int >= 2.
    restarts: ascent restarts per cell.
    steps: ascent steps per restart.
    sweeps: local-search sweeps after the ascent.
    G: the bound on |g_t|, > 0.
    lr: Adam's initial step as a fraction of G.
    random_fraction: share of random-sign restarts, in [0, 1].

  Returns:
    ``cell -> dict`` with float32 ``worst_regret``, ``worst_bound`` (D3 of
    the worst sequence), ``best_construction``, ``search_start`` (best value
    before the ascent), ``gain_history`` (shape ``(steps + sweeps,)``, the
    best value after each ascent step and each sweep), ``worst_sequence``
    (shape ``(T,)``), and int32 ``best_construction_kind`` (index into
    :data:`CONSTRUCTION_KINDS`), ``search_restarts``, ``search_steps`` and
    ``search_sweeps`` (the budget, recorded per row).

  Raises:
    ValueError: naming a bad argument.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from ftrl_adam.regret import worst
    >>> cell_fn = worst.worst_case_cell_fn(T=60, restarts=2, steps=8)
    >>> out = jax.jit(cell_fn)({"b1": jnp.float32(0.9), "b2": jnp.float32(0.81),
    ...                         "radius": jnp.float32(1.0),
    ...                         "c": jnp.float32(jnp.nan), "seed": jnp.int32(0)})
    >>> out["worst_sequence"].shape, int(out["search_steps"])
    ((60,), 8)
  """
  T, restarts, steps, sweeps, n_random = _check_budget(
      T, restarts, steps, sweeps, random_fraction, lr, G)
  G32, lr32 = np.float32(G), np.float32(lr)

  def cell_fn(cell):
    b1 = jnp.asarray(cell["b1"], _f32)
    b2 = jnp.asarray(cell["b2"], _f32)
    radius = jnp.asarray(cell["radius"], _f32)
    c = jnp.asarray(cell["c"], _f32)
    c = jnp.where(jnp.isnan(c), radius, c)
    res = _search(b1, b2, radius, c, jnp.asarray(G32), jnp.asarray(lr32),
                  grid.key_from_seed(cell["seed"]), T=T, restarts=restarts,
                  steps=steps, n_random=n_random, sweeps=sweeps)
    return {
        "worst_regret": res.regret,
        "worst_bound": res.bound,
        "best_construction": res.best_construction,
        "best_construction_kind": res.best_construction_kind,
        "search_start": res.start,
        "gain_history": res.history,
        "worst_sequence": res.sequence,
        "search_restarts": jnp.int32(restarts),
        "search_steps": jnp.int32(steps),
        "search_sweeps": jnp.int32(sweeps),
    }

  return cell_fn
