"""The regret monitor's subset of coordinates (``coords=k``, box) as a specification.

* The draw (``_coords.draw_subset``): k entries on at most ``leaves`` leaves,
  and every coordinate taken k / n times in expectation over the seed,
  whatever the size of its leaf (the mean over many seeds is within its
  standard error of k / n); the reads (``_gather.take``: one gather per
  leaf) return exactly those entries.
* The monitor on a subset reports exactly the regret of those entries: equal
  to a float64 recomputation from the gradients and the updates of the run.
* Unbiased for the whole model: the mean over many seeds of the subset's
  ``regret / fraction`` equals the all-coordinates regret of the same run
  within its standard error.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ftrl_adam as fa
from ftrl_adam import _coords
from ftrl_adam import _gather
from helpers import gradient_sequence

# A model-shaped tree: a matrix, a bias smaller than its share of entries, a
# layer norm, an embedding; a few leaves of very different sizes.
SHAPES = {"emb": (12, 4), "w": (6, 5), "b": (5,), "ln": (3,)}
B1, D = 0.8, 0.05


def _shapes():
  """The leaves' shapes in ``jax.tree.leaves`` order (the monitor's)."""
  return jax.tree.leaves(SHAPES, is_leaf=lambda x: isinstance(x, tuple))


def _sizes():
  return [int(np.prod(s)) for s in _shapes()]


def _n():
  return sum(_sizes())


@pytest.mark.parametrize("k,leaves", [(9, 2), (20, 3), (86, 4)])
def test_the_draw_takes_k_entries_from_few_leaves_each_coordinate_k_over_n_times(
    k, leaves):
  sizes = _sizes()
  n, seeds = sum(sizes), 1500
  counts = np.zeros((seeds, n))
  starts = np.cumsum([0] + sizes[:-1])
  for seed in range(seeds):
    local = _coords.draw_subset(_shapes(), k, leaves, seed)
    assert sum(x.size for x in local) == k
    assert sum(x.size > 0 for x in local) <= leaves
    for lo, size, idx in zip(starts, sizes, local, strict=True):
      assert np.all((idx >= 0) & (idx < size))
      np.add.at(counts[seed], lo + idx, 1)
  mean, se = counts.mean(0), counts.std(0) / np.sqrt(seeds)
  assert np.all(np.abs(mean - k / n) <= 4.5 * se + 1e-12), (mean, k / n)
  assert np.all(counts.std(0) > 0) or k == n
  for seed in range(6):   # the reads: exactly the entries' bits, in order
    for shape, idx in zip(_shapes(), _coords.draw_subset(_shapes(), k, leaves,
                                                        seed), strict=True):
      x = np.arange(int(np.prod(shape)), dtype=np.float32) - 2.0
      x[2] = -0.0
      got = jax.jit(lambda a, idx=idx: _gather.take(a, idx))(jnp.asarray(x))
      np.testing.assert_array_equal(np.asarray(got).view(np.int32),
                                    x[idx].view(np.int32))


def _run(grads, **options):
  """A jitted run of ftrl_adam under the monitor; (state, updates per step)."""
  params = jax.tree.map(jnp.zeros_like, grads[0])
  tx = fa.regret_monitor(fa.ftrl_adam(0.03, B1, 0.9), radius=D, **options)
  step = jax.jit(tx.update)
  state, ups = tx.init(params), []
  for g in grads:
    u, state = step(g, state, params)
    params = optax.apply_updates(params, u)
    ups.append(u)
  return state, ups


def _flat(tree):
  return np.concatenate([np.asarray(x, np.float64).ravel()
                         for x in jax.tree.leaves(tree)])


def _per_coordinate_regret(grads, ups):
  """float64: r_i + D |M_i| of every coordinate (leaves in tree order)."""
  r = m = play = 0.0
  for g, u in zip(grads, ups, strict=True):
    g = _flat(g)
    r, m, play = B1 * r + g * play, B1 * m + g, _flat(u)
  return r + D * np.abs(m)


def _entries(seed, k, leaves):
  sizes = _sizes()
  starts = np.cumsum([0] + sizes[:-1])
  return np.concatenate([lo + idx for lo, idx in zip(
      starts, _coords.draw_subset(_shapes(), k, leaves, seed), strict=True)])


@functools.lru_cache(maxsize=1)
def _whole_run():
  """A fixed run, every coordinate monitored: (grads, its regret, per coordinate)."""
  grads = gradient_sequence(20, SHAPES, seed=3)
  state, ups = _run(grads)
  return grads, float(fa.regret_of(state).regret), _per_coordinate_regret(
      grads, ups)


def test_a_subset_reports_the_float64_regret_of_its_entries():
  grads, whole, per = _whole_run()
  np.testing.assert_allclose(whole, per.sum(), rtol=2e-5)
  for seed, k, leaves in [(5, 33, 3), (9, 12, 8)]:
    state, _ = _run(grads, coords=k, leaves=leaves, seed=seed)
    rep = fa.regret_of(state)
    # The same trajectory (updates pass through): the entries' regrets, with
    # their multiplicity, are the monitored regret.
    np.testing.assert_allclose(float(rep.regret),
                               per[_entries(seed, k, leaves)].sum(),
                               rtol=2e-5, atol=1e-7)
    assert rep.coords == k and float(rep.fraction) == pytest.approx(k / _n())


def test_the_subsets_estimate_of_the_whole_models_regret_is_unbiased():
  # A fixed run; its all-coordinates regret R.  Over many seeds the subset's
  # regret / fraction (as the monitor reports it) averages to R.
  grads, whole, per = _whole_run()
  k, leaves, seeds = 16, 3, 400
  # The monitor's own report for a few seeds (one compile each) ...
  for seed in range(2):
    rep = fa.regret_of(_run(grads, coords=k, leaves=leaves, seed=seed)[0])
    np.testing.assert_allclose(
        float(rep.regret / rep.fraction),
        per[_entries(seed, k, leaves)].sum() * _n() / k, rtol=2e-5, atol=1e-6)
  # ... so for many, the same report from the per-coordinate regrets.
  est = np.array([per[_entries(s, k, leaves)].sum() * _n() / k
                  for s in range(seeds)])
  se = est.std() / np.sqrt(seeds)
  assert se > 0
  assert abs(est.mean() - whole) <= 4 * se, (est.mean(), whole, se)


def test_leaves_bounds_the_leaves_read():
  params = {"a": jnp.zeros((40,)), "b": jnp.zeros((30,)), "c": jnp.zeros((20,)),
            "d": jnp.zeros((10,))}
  g = {k: jnp.full(v.shape, i + 1.0) for i, (k, v) in enumerate(params.items())}
  for leaves in (1, 3):
    tx = fa.regret_monitor(optax.sgd(0.1), radius=1.0, b1=0.5, coords=10,
                           leaves=leaves, record_every=1)
    _, state = jax.jit(tx.update)(g, tx.init(params), params)
    assert len(set(np.asarray(state.recent[0]).tolist())) <= leaves
  with pytest.raises(ValueError, match="`leaves`"):
    fa.regret_monitor(optax.sgd(0.1), radius=1.0, b1=0.5, coords=3, leaves=0)
