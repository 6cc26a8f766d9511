"""Specification of ftrl_adam.regret.worst: the worst-case adversary search.

* the search's objective is the lab's own game (regret.game on the sequence);
* the value found is >= every built-in construction of the cell and <= the
  D3 bound of its sequence, and that sequence really gives that value;
* brute force: over all sign sequences (T = 12) the search is never below
  the best one and strictly above it where a tiny first gradient pays (the
  maximiser need not be a sign sequence); over a grid of values (step 0.1,
  T = 4) it finds the grid's maximum;
* one coordinate suffices (separability), and the value scales with G and D;
* a vmapped batch of cells equals single searches bit for bit, a search is
  reproducible, and bad input raises a ValueError naming the argument.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ftrl_adam import grid
from ftrl_adam import regret
from ftrl_adam.regret import worst

KEY = jax.random.key(0)
PRIME = 2.0 ** -16
# Both regimes (b2 < b1^2, b2 = b1^2, b2 > b1^2) and both ends of the axes.
CELLS = [(0.5, 0.25), (0.9, 0.81), (0.9, 0.5), (0.7, 0.99), (0.99, 0.999)]
SMALL = dict(restarts=8, steps=32, sweeps=2)


def _lab_game(g, b1, b2, radius=1.0, c=None):
  """The lab's game of Algorithm 1 on a fixed 1-D sequence (an independent path)."""
  return regret.game(b1, b2, radius=radius, c=c, T=g.shape[0], d=1,
                     adversary=regret.from_array(g[:, None]), key=KEY)


_lab_regrets = jax.jit(jax.vmap(lambda g, b1, b2: _lab_game(g, b1, b2).regret_box,
                                (0, None, None)))


def _all_sign_sequences(T):
  return np.array(list(itertools.product([-1.0, 1.0], repeat=T)), np.float32)


def _all_primed_sign_sequences(T):
  """Every game of H <= T rounds (zero prefix) whose first round is +-PRIME."""
  out = []
  for h in range(1, T + 1):
    for signs in itertools.product([-1.0, 1.0], repeat=h):
      g = np.zeros(T, np.float32)
      g[T - h:] = signs
      g[T - h] *= PRIME
      out.append(g)
  return np.array(out)


# ------------------------------------------------------------- the objective


def test_objective_is_the_lab_game():
  rng = np.random.default_rng(0)
  g = rng.uniform(-1, 1, (6, 40)).astype(np.float32)
  g[1, :7] = 0.0                            # a zero prefix (a shorter game)
  g[2, 3] = 0.0                             # a zero inside
  g[3] = np.sign(g[3])                      # a sign sequence
  g[4, 0] = PRIME                           # primed
  for b1, b2 in CELLS:
    ours = jax.vmap(lambda x: worst.discounted_regret_of(
        x, b1, b2, radius=1.5, c=0.7))(jnp.asarray(g))
    lab = [float(_lab_game(jnp.asarray(x), b1, b2, radius=1.5, c=0.7).regret_box)
           for x in g]
    np.testing.assert_allclose(np.asarray(ours), lab, rtol=1e-5, atol=1e-6)


def test_objective_gradient_is_finite_after_the_first_non_zero_gradient():
  g = jnp.asarray([0.0, 0.0, 0.3, -1.0, 0.0, 1.0, -0.2], jnp.float32)
  grad = jax.grad(worst.discounted_regret_of)(g, 0.9, 0.99)
  assert np.all(np.isfinite(np.asarray(grad[2:])))


# ------------------------------------------- constructions, D3, the sequence


def _builtin_constructions(b1, b2, T, seed, G=1.0):
  """Regret of every built-in sequence in [-G, G]^T of the lab on the cell.

  (The Gaussian, sparse and heavy-tailed adversaries are not in the box.)
  """
  key = jax.random.key(seed)
  out = {}
  for kappa in (0.5, 1.0, 2.0):
    big_l, k = regret.switch_lengths(b1, b2, kappa)
    res = regret.game(b1, b2, radius=1.0, T=T, d=1, key=key,
                      adversary=regret.switch(G, b1, b2, kappa),
                      horizon=jnp.minimum(big_l + k, T).astype(jnp.int32))
    out[f"switch(kappa={kappa})"] = float(res.regret_box)
  for name, adv in [("alternating", regret.alternating(G)),
                    ("rademacher", regret.rademacher(G)),
                    ("oppose", regret.oppose(G)), ("abs_w", regret.abs_w(G))]:
    out[name] = float(regret.game(b1, b2, radius=1.0, T=T, d=1, key=key,
                                  adversary=adv).regret_box)
  return out


def test_search_beats_every_construction_stays_below_d3_and_equals_single_searches():
  T = 150
  budget = dict(restarts=4, steps=16, sweeps=1)
  table = {"b1": np.float32([c[0] for c in CELLS]),
           "b2": np.float32([c[1] for c in CELLS]),
           "radius": np.ones(len(CELLS), np.float32),
           "c": np.full(len(CELLS), np.nan, np.float32),
           "seed": np.arange(len(CELLS), dtype=np.int32)}
  cell_fn = worst.worst_case_cell_fn(T=T, **budget)
  batch = jax.jit(jax.vmap(cell_fn), compiler_options=grid.compiler_options())(
      table)
  assert batch["gain_history"].shape == (len(CELLS), 17)
  assert batch["worst_sequence"].shape == (len(CELLS), T)
  np.testing.assert_array_equal(batch["search_restarts"], 4)
  np.testing.assert_array_equal(batch["search_steps"], 16)
  np.testing.assert_array_equal(batch["search_sweeps"], 1)
  for i, (b1, b2) in enumerate(CELLS):
    res = worst.worst_case(b1, b2, T=T, key=jax.random.key(i), **budget)
    # cells equal single searches, bit for bit
    for name, field in [("worst_regret", res.regret), ("worst_bound", res.bound),
                        ("best_construction", res.best_construction),
                        ("gain_history", res.history),
                        ("worst_sequence", res.sequence)]:
      np.testing.assert_array_equal(np.asarray(batch[name][i]),
                                    np.asarray(field), err_msg=name)
    value = float(res.regret)
    built = _builtin_constructions(b1, b2, T, seed=i)
    for name, r in built.items():
      assert value >= r * (1 - 1e-6), (b1, b2, name, r, value)
    assert float(res.best_construction) >= max(built.values()) * (1 - 1e-6)
    # the sequence is in the box, and the lab's game on it agrees: same
    # regret, and its D3 bound holds
    seq = jnp.asarray(res.sequence)
    assert float(jnp.max(jnp.abs(seq))) <= 1.0
    lab = _lab_game(seq, b1, b2)
    np.testing.assert_allclose(float(lab.regret_box), value, rtol=1e-5)
    assert float(lab.bound) == float(res.bound)
    assert value <= float(res.bound)
    # the history is the best value so far: non-decreasing, ends at the value
    hist = np.asarray(res.history)
    assert np.all(np.diff(hist) >= 0)
    assert hist[-1] == value
    assert float(res.start) <= hist[0]
    assert float(res.best_construction) <= float(res.start)
    assert 0 <= int(res.best_construction_kind) < len(worst.CONSTRUCTION_KINDS)


# ------------------------------------------------------------- brute force


def test_brute_force_over_every_sign_sequence_t12():
  """The search never loses to a sign sequence, and beats them all when a
  tiny first gradient pays: the learner's first play is -c sign(g_1) clipped,
  whatever |g_1|, so [tiny, then signs] costs more than any sign sequence.
  The natural brute force is therefore over the primed sign sequences of every
  horizon (a zero prefix is a shorter game), which the search also matches
  or beats (interior values can add a little, e.g. 0.88 at b1 = 0.9)."""
  T = 12
  signs = jnp.asarray(_all_sign_sequences(T))
  primed = jnp.asarray(_all_primed_sign_sequences(T))
  for b1, b2 in CELLS:
    found = float(worst.worst_case(b1, b2, T=T, key=KEY, **SMALL).regret)
    best_sign = float(jnp.max(_lab_regrets(signs, b1, b2)))
    best_primed = float(jnp.max(_lab_regrets(primed, b1, b2)))
    assert found >= best_primed * (1 - 1e-6), (b1, b2, found, best_primed)
    assert found > best_sign + 0.1, (b1, b2, found, best_sign)


def test_fine_grid_t4_finds_the_same_maximum():
  """All 23^4 sequences of values {-1, -0.9, ..., 1} and +-2^-16: the grid's
  maximum is the search's, up to where the tiny first gradient sits (its
  weight in the regret is at most D |g| / (1 - b1), with |g| = 2^-16).
  Without the tiny values the grid stays below."""
  T = 4
  # (a 0.05 step, 43^4 sequences, gives the same maxima on these cells at
  # 12 times the evaluations)
  levels = np.concatenate([np.linspace(-1, 1, 21), [PRIME, -PRIME]])
  seqs = jnp.asarray(np.array(list(itertools.product(levels, repeat=T)),
                              np.float32))
  coarse = jnp.all((jnp.abs(seqs) != PRIME), axis=1)
  evaluate = jax.jit(jax.vmap(worst.discounted_regret_of, (0, None, None)))
  for b1, b2 in CELLS:
    vals = evaluate(seqs, b1, b2)
    found = float(worst.worst_case(b1, b2, T=T, key=KEY, **SMALL).regret)
    np.testing.assert_allclose(found, float(jnp.max(vals)), rtol=1e-6,
                               atol=PRIME / (1 - b1))
    assert found > float(jnp.max(jnp.where(coarse, vals, -jnp.inf))) + 1e-3


# ----------------------------------------------------- structure and scaling


def test_one_coordinate_suffices_for_the_box():
  b1, b2, T = 0.9, 0.81, 12
  res = worst.worst_case(b1, b2, T=T, key=KEY, **SMALL)
  # the 1-D worst sequence repeated in d = 3 coordinates: 3 times the regret
  tiled = jnp.tile(res.sequence[:, None], (1, 3))
  d3 = regret.game(b1, b2, radius=1.0, T=T, d=3, key=KEY,
                   adversary=regret.from_array(tiled))
  np.testing.assert_allclose(float(d3.regret_box), 3 * float(res.regret),
                             rtol=1e-6)
  # and any d-dimensional sequence is a sum of 1-D games (so none does better)
  rng = np.random.default_rng(1)
  g = rng.uniform(-1, 1, (T, 3)).astype(np.float32)
  whole = regret.game(b1, b2, radius=1.0, T=T, d=3, key=KEY,
                      adversary=regret.from_array(g)).regret_box
  parts = sum(float(worst.discounted_regret_of(g[:, i], b1, b2))
              for i in range(3))
  np.testing.assert_allclose(float(whole), parts, rtol=1e-6)


def test_worst_case_scales_with_g_and_d():
  b1, b2, T = 0.7, 0.99, 12
  base = worst.worst_case(b1, b2, T=T, key=KEY, **SMALL)
  twice_g = worst.worst_case(b1, b2, T=T, key=KEY, G=2.0, **SMALL)
  np.testing.assert_array_equal(np.asarray(twice_g.regret),
                                2 * np.asarray(base.regret))
  np.testing.assert_array_equal(np.asarray(twice_g.sequence),
                                2 * np.asarray(base.sequence))
  twice_d = worst.worst_case(b1, b2, T=T, key=KEY, radius=2.0, **SMALL)
  np.testing.assert_allclose(float(twice_d.regret), 2 * float(base.regret),
                             rtol=1e-5)


def test_reproducible():
  a = worst.worst_case(0.9, 0.5, T=12, key=jax.random.key(3), **SMALL)
  b = worst.worst_case(0.9, 0.5, T=12, key=jax.random.key(3), **SMALL)
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("bad,match", [
    (dict(b1=1.0), "`b1` must lie in"),
    (dict(b2=0.0), "`b2` must lie in"),
    (dict(radius=0.0), "`radius` must lie in"),
    (dict(c=-1.0), "`c` must lie in"),
    (dict(G=0.0), "`G` must lie in"),
    (dict(T=1), "`T` must be an integer >= 2"),
    (dict(T=12.0), "`T` must be an integer >= 2"),
    (dict(restarts=0), "`restarts` must be an integer >= 1"),
    (dict(steps=True), "`steps` must be an integer >= 1"),
    (dict(sweeps=-1), "`sweeps` must be an integer >= 0"),
    (dict(lr=0.0), "`lr` must lie in"),
    (dict(random_fraction=1.5), "`random_fraction` must lie in"),
    (dict(key=0), "`key` must be one PRNG key"),
])
def test_bad_input_raises_clear_errors(bad, match):
  kwargs = dict(b1=0.9, b2=0.99, T=12, key=KEY, **SMALL)
  kwargs.update(bad)
  b1, b2 = kwargs.pop("b1"), kwargs.pop("b2")
  with pytest.raises(ValueError, match=match):
    worst.worst_case(b1, b2, **kwargs)


def test_bad_cell_fn_arguments_raise_clear_errors():
  with pytest.raises(ValueError, match="`T` must be an integer >= 2"):
    worst.worst_case_cell_fn(T=0)
  with pytest.raises(ValueError, match="`restarts` must be an integer >= 1"):
    worst.worst_case_cell_fn(T=10, restarts=2.5)
  with pytest.raises(ValueError, match="`G` must lie in"):
    worst.worst_case_cell_fn(T=10, G=-1.0)
  with pytest.raises(ValueError, match="`g` must have shape"):
    worst.discounted_regret_of(jnp.ones((3, 2)), 0.9, 0.99)
