"""Specification of post-hoc EMA (ftrl_adam.posthoc and ftrl_adam._synthesis; Karras et al. 2024).

The central check: the EMA synthesised post hoc from stored snapshots for a
width sigma_rel equals the power EMA of that width run directly (a literal
float64 NumPy recursion, written independently of the package) on the same
recorded training trajectory, to a tolerance the test computes from the
float64 weights and states (the module docstring derives it), for widths
inside and outside the stored pair.  ``python tests/test_posthoc.py`` prints
the measured table.

The references here are literal float64 formulas: the recursion
g_n = (1 - 1/n)^(p + 1), its telescoped weights, the inner products by
numerical quadrature.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ftrl_adam as fa
from ftrl_adam import _synthesis as ph

T = 400            # steps of the recorded trajectory
EVERY = 10         # snapshot period
PAIR = (0.05, 0.10)
INSIDE = (0.06, 0.07, 0.085)
OUTSIDE = (0.03, 0.04, 0.15, 0.20)
# ||e||_1, the l1 distance between the synthesised and the direct EMA's
# weights on the iterates, for this setting (T = 400, snapshots every 10,
# the pair 0.05 / 0.10), as measured by `python tests/test_posthoc.py`
# (rounded up to the next 1-2-5 step): the tolerance the synthesis meets.
WEIGHT_L1_TOL = {0.03: 1e-2, 0.04: 2e-3, 0.05: 1e-10, 0.06: 1e-3,
                 0.07: 1e-3, 0.085: 5e-4, 0.10: 1e-10, 0.15: 2e-3, 0.20: 5e-3}


# ----------------------------------------------------------------------------
# Float64 references.
# ----------------------------------------------------------------------------


def _power_ema_ref(xs, p):
  """Literal power EMA in float64: all states xhat_1..xhat_n, shape [n, d]."""
  xs = np.asarray(xs, np.float64)
  out, z = [], np.zeros_like(xs[0])
  for n, x in enumerate(xs, start=1):
    g = (1.0 - 1.0 / n) ** (p + 1.0)
    z = g * z + (1.0 - g) * x
    out.append(z)
  return np.stack(out)


def _weights_ref(t, p, n_total):
  """Weights of x_1..x_{n_total} in xhat_t (0 after t), telescoped."""
  i = np.arange(1, n_total + 1, dtype=np.float64)
  a = np.clip(i / t, 0.0, 1.0) ** (p + 1.0)
  b = np.clip((i - 1.0) / t, 0.0, 1.0) ** (p + 1.0)
  return a - b


def _flat(tree):
  return np.concatenate([np.ravel(np.asarray(v, np.float64))
                         for v in jax.tree.leaves(tree)])


# ----------------------------------------------------------------------------
# A recorded training trajectory with snapshots.
# ----------------------------------------------------------------------------


def _params0():
  rng = np.random.default_rng(0)
  return {"a": jnp.asarray(rng.normal(size=(4,)), jnp.float32),
          "b": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)}


@functools.lru_cache(maxsize=None)
def _recorded(directory=None, every=EVERY):
  """ftrl_adam on a noisy quadratic for T steps with posthoc_ema_params (and
  an ema_params of sigma_rel 0.07 run directly) and a keeper; returns
  (iterates [T, d] float32, snapshots, final state)."""
  params = _params0()
  rng = np.random.default_rng(1)
  target = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape),
                                              jnp.float32), params)
  noise = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=(T,) + p.shape),
                                             jnp.float32), params)
  tx = optax.chain(fa.ftrl_adam(0.05, b1=0.9, b2=0.999),
                   fa.ema_params(power=fa.power_from_sigma_rel(0.07)),
                   fa.posthoc_ema_params(PAIR))

  @jax.jit
  def step(params, state, n):
    grads = jax.tree.map(lambda p, c, z: (p - c) + 0.5 * z[n], params,
                         target, noise)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  keeper = fa.PosthocSnapshotKeeper(every, directory)
  xs = []
  for n in range(T):
    params, state = step(params, state, n)
    keeper.update(state)
    xs.append(_flat(params))
  snaps = keeper.snapshots()
  keeper.close()
  return np.stack(xs), snaps, state


def _measure(sigma_rel):
  """(||e||_1, ||c||_1, rho, bound factor, |synth - direct| / span) for one
  target width on the recorded trajectory."""
  xs, snaps, _ = _recorded()
  p_r = fa.power_from_sigma_rel(sigma_rel)
  w, rho = fa.posthoc_ema_weights(snaps.steps, snaps.powers, sigma_rel)
  w_snap = np.stack([_weights_ref(t, p, T)
                     for t, p in zip(snaps.steps, snaps.powers, strict=True)])
  e = w @ w_snap - _weights_ref(T, p_r, T)
  synth = _flat(fa.posthoc_ema(snaps, sigma_rel))
  direct = _power_ema_ref(xs, p_r)[-1]
  span = np.abs(xs - xs[-1]).max(axis=0)
  return dict(e1=np.abs(e).sum(), c1=np.abs(w).sum(), rho=float(rho),
              factor=(p_r + 1.0) / math.sqrt(2.0 * p_r + 1.0),
              err=np.abs(synth - direct), span=span, e=e, w=w,
              synth=synth, direct=direct, xs=xs)


# ----------------------------------------------------------------------------
# The transform.
# ----------------------------------------------------------------------------


def _drive(tx, steps=60, seed=0):
  rng = np.random.default_rng(seed)
  params = _params0()
  state = tx.init(params)
  xs, states = [], []
  for _ in range(steps):
    g = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape),
                                           jnp.float32), params)
    u, state = tx.update(g, state, params)
    params = optax.apply_updates(params, u)
    xs.append(_flat(params))
    states.append(state)
  return np.stack(xs), states


def test_each_ema_is_the_literal_power_ema():
  tx = optax.chain(optax.sgd(0.1), fa.posthoc_ema_params(powers=(0.0, 2.5, 16.97)))
  xs, states = _drive(tx)
  for j, p in enumerate((0.0, 2.5, 16.97)):
    want = _power_ema_ref(xs, p)
    for n, st in enumerate(states):
      got = _flat(fa.posthoc_emas_of(st)[j])
      np.testing.assert_allclose(got, want[n], rtol=2e-6, atol=2e-6,
                                 err_msg=f"power {p}, step {n + 1}")


def test_agrees_with_ema_params_power():
  powers = (fa.power_from_sigma_rel(0.05), fa.power_from_sigma_rel(0.10))
  tx = optax.chain(optax.sgd(0.1),
                   fa.ema_params(power=powers[0], name="p0"),
                   fa.ema_params(power=powers[1], name="p1"),
                   fa.posthoc_ema_params(PAIR))
  _, states = _drive(tx)
  for n, st in enumerate(states):
    for j in range(2):
      np.testing.assert_allclose(
          _flat(fa.posthoc_emas_of(st)[j]),
          _flat(fa.ema_params_of(st, name=f"p{j}")), rtol=2e-6, atol=2e-6,
          err_msg=f"step {n + 1}, EMA {j}")
  np.testing.assert_array_equal(states[-1][-1].powers,
                                np.asarray(powers, np.float32))


def test_decay_is_accurate_at_large_step_counts():
  # 1 - g_n at n = 10**6 is about (p + 1) 1e-6; computed as (1 - 1/n)**(p+1)
  # in float32 it would be off by percents, the state must hold it to 1e-6.
  p = 6.94
  tx = fa.posthoc_ema_params(powers=(p,))
  x0 = {"w": jnp.zeros(3)}
  state = tx.init(x0)
  n = 10 ** 6
  state = state._replace(count=jnp.asarray(n - 1, jnp.int32))
  _, state = tx.update({"w": jnp.ones(3)}, state, x0)   # x_n = 1, xhat = 0
  want = 1.0 - (1.0 - 1.0 / n) ** (p + 1.0)             # float64
  got = np.asarray(fa.posthoc_emas_of(state)[0]["w"], np.float64)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_source_gradient_point_averages_the_params_given():
  tx = fa.posthoc_ema_params(powers=(1.0,), source="gradient_point")
  params = {"w": jnp.array([3.0])}
  state = tx.init(params)
  _, state = tx.update({"w": jnp.array([100.0])}, state, params)
  assert float(fa.posthoc_emas_of(state)[0]["w"][0]) == 3.0


def test_vmap_over_configurations_equals_single_runs():
  tx = optax.chain(optax.sgd(0.1), fa.posthoc_ema_params())
  params = jnp.stack([jnp.ones(3), 2 * jnp.ones(3)])   # 2 configurations

  def run(p):
    st = tx.init(p)
    for _ in range(5):
      u, st = tx.update(p, st, p)
      p = optax.apply_updates(p, u)
    return st
  batched = jax.vmap(run)(params)
  for c in range(2):
    single = run(params[c])
    for j in range(2):
      np.testing.assert_allclose(fa.posthoc_emas_of(batched)[j][c],
                                 fa.posthoc_emas_of(single)[j], rtol=1e-6)


# ----------------------------------------------------------------------------
# The weights.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("ta,pa,tb,pb", [(100, 3.0, 100, 3.0),
                                          (40, 16.97, 100, 6.94),
                                          (100, 16.97, 40, 6.94),
                                          (7, 0.0, 9, 2.5)])
def test_closed_form_inner_product_matches_quadrature(ta, pa, tb, pb):
  from scipy import integrate  # pylint: disable=import-outside-toplevel

  def f(t, p, s):
    return (p + 1.0) * s ** p / t ** (p + 1.0) if s <= t else 0.0
  want, _ = integrate.quad(lambda s: f(ta, pa, s) * f(tb, pb, s), 0.0,
                           min(ta, tb), epsabs=0, epsrel=1e-12, limit=200)
  np.testing.assert_allclose(ph._inner(ta, pa, tb, pb), want, rtol=1e-9)


def test_weights_reproduce_a_stored_profile_and_sum_to_one():
  p1, p2 = (fa.power_from_sigma_rel(s) for s in PAIR)
  steps = [20 * (k // 2 + 1) for k in range(20)]
  powers = [p1, p2] * 10
  w, rho = fa.posthoc_ema_weights(steps, powers, 0.05, step=120)
  want = np.zeros(20)
  want[steps.index(120)] = 1.0           # (120, p1) is snapshot 10
  np.testing.assert_allclose(w, want, atol=1e-9)
  assert rho < 1e-6
  w, rho = fa.posthoc_ema_weights(steps, powers, [0.03, 0.07, 0.2],
                                  max_residual=float("inf"))
  assert w.shape == (3, 20) and rho.shape == (3,)
  np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)
  # snapshots after the target step get no weight
  w, _ = fa.posthoc_ema_weights(steps, powers, 0.07, step=100)
  assert np.all(w[np.asarray(steps) > 100] == 0.0)


def test_residual_bounds_the_weight_error():
  # ||e||_1 <= rho (p + 1) / sqrt(2p + 1), the module docstring's [D] bound,
  # with e from the telescoped discrete weights (exact, float64).
  p1, p2 = (fa.power_from_sigma_rel(s) for s in PAIR)
  steps = [25 * (k // 2 + 1) for k in range(16)]
  powers = [p1, p2] * 8
  w_snap = np.stack([_weights_ref(t, p, 200)
                     for t, p in zip(steps, powers, strict=True)])
  for s in (0.03, 0.07, 0.15, 0.25):
    p_r = fa.power_from_sigma_rel(s)
    w, rho = fa.posthoc_ema_weights(steps, powers, s, max_residual=1.0)
    e = w @ w_snap - _weights_ref(200, p_r, 200)
    assert abs(e.sum()) < 1e-12
    assert np.abs(e).sum() <= rho * (p_r + 1) / math.sqrt(2 * p_r + 1) + 1e-12


# ----------------------------------------------------------------------------
# Synthesised vs direct: the equality the module promises.
# ----------------------------------------------------------------------------


def test_snapshots_hold_the_telescoped_profiles():
  xs, snaps, _ = _recorded()
  got = np.stack([_flat(jax.tree.map(lambda v, k=k: v[k], snaps.params))
                  for k in range(len(snaps))])
  for k, (t, p) in enumerate(zip(snaps.steps, snaps.powers, strict=True)):
    want = _weights_ref(t, p, T) @ xs
    np.testing.assert_allclose(got[k], want, rtol=2e-6, atol=2e-6,
                               err_msg=f"snapshot {k}: step {t}, power {p}")
  assert snaps.steps == tuple(s for s in range(EVERY, T + 1, EVERY)
                              for _ in PAIR)


@pytest.mark.parametrize("sigma_rel", PAIR + INSIDE + OUTSIDE)
def test_synthesised_equals_direct_ema(sigma_rel):
  m = _measure(sigma_rel)
  # the weights: as close as measured, and within the a-priori bound
  assert m["e1"] <= WEIGHT_L1_TOL[sigma_rel], m["e1"]
  assert m["e1"] <= m["rho"] * m["factor"] + 1e-12
  # the parameters: |synth - direct| <= ||e||_1 max_i |x_i - x_T| + rounding
  rounding = 4e-7 * (m["c1"] + 1.0) * np.abs(m["xs"]).max()
  bound = m["e1"] * m["span"] + rounding
  assert np.all(m["err"] <= bound), (m["err"] - bound).max()
  if sigma_rel in PAIR:   # a stored width is the stored EMA, to rounding
    assert m["err"].max() <= rounding


def test_synthesis_matches_an_ema_params_run_on_the_same_trajectory():
  # the same comparison against the package's own direct EMA (float32),
  # ema_params(power=p(0.07)) in the recorded run's chain
  _, snaps, state = _recorded()
  direct = _flat(fa.ema_params_of(state))
  synth = _flat(fa.posthoc_ema(snaps, 0.07))
  m = _measure(0.07)
  np.testing.assert_allclose(synth, direct,
                             atol=m["e1"] * m["span"].max() + 2e-6)
  assert np.abs(synth - direct).max() > 0    # two computations, not one


# ----------------------------------------------------------------------------
# jit, lists of widths, non-finite values.
# ----------------------------------------------------------------------------


def test_synthesis_is_jit_compatible_and_does_not_retrace_on_new_values():
  _, snaps, _ = _recorded()
  traces = []

  @jax.jit
  def synth(s):
    traces.append(1)
    return fa.posthoc_ema(s, 0.07)

  eager = fa.posthoc_ema(snaps, 0.07)
  jitted = synth(snaps)
  for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  shifted = jax.tree.map(lambda v: v + 1.0, snaps)   # same steps, new values
  out = synth(shifted)
  assert len(traces) == 1
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(eager), strict=True):
    np.testing.assert_allclose(a, b + 1.0, rtol=1e-5)  # weights sum to one
  # sigma_rel as a static argument
  static = jax.jit(fa.posthoc_ema, static_argnames="sigma_rel")
  for a, b in zip(jax.tree.leaves(static(snaps, sigma_rel=0.07)),
                  jax.tree.leaves(eager), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_list_of_widths_stacks_the_single_results():
  _, snaps, _ = _recorded()
  many = fa.posthoc_ema(snaps, [0.04, 0.07, 0.15])
  for i, s in enumerate((0.04, 0.07, 0.15)):
    one = fa.posthoc_ema(snaps, s)
    for a, b in zip(jax.tree.leaves(many), jax.tree.leaves(one), strict=True):
      np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-7)


def test_nonfinite_snapshot_poisons_where_it_reaches_only():
  steps = [10, 10, 20, 20, 30, 30]
  p1, p2 = (fa.power_from_sigma_rel(s) for s in PAIR)
  trees = [{"w": np.full(2, float(k), np.float32)} for k in range(6)]
  trees[5]["w"][0] = np.nan          # the last snapshot, coordinate 0
  snaps = fa.PosthocSnapshots.from_trees(steps, [p1, p2] * 3, trees)
  out = np.asarray(fa.posthoc_ema(snaps, 0.07, max_residual=1.0)["w"])
  assert np.isnan(out[0]) and np.isfinite(out[1])
  # synthesised at step 20, the NaN of step 30 is never read
  early = np.asarray(fa.posthoc_ema(snaps, 0.07, step=20,
                                    max_residual=1.0)["w"])
  assert np.all(np.isfinite(early))


# ----------------------------------------------------------------------------
# The keeper: memory, a folder, Flax, vmapped states.
# ----------------------------------------------------------------------------


def test_folder_snapshots_restore_bit_identically_and_a_keeper_resumes(tmp_path):
  _, mem, _ = _recorded()
  every = 4 * EVERY                          # fewer files, same trajectory
  _, disk, _ = _recorded(str(tmp_path / "snaps"), every)
  keep = [k for k, t in enumerate(mem.steps) if t % every == 0]
  assert disk.steps == tuple(mem.steps[k] for k in keep)
  assert disk.powers == tuple(mem.powers[k] for k in keep)
  for a, b in zip(jax.tree.leaves(disk.params), jax.tree.leaves(mem.params),
                  strict=True):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b[keep])
  # restored into a given structure
  like = fa.posthoc_emas_of(_recorded()[2])[0]
  typed = fa.PosthocSnapshots.load(tmp_path / "snaps", like=like)
  assert jax.tree.structure(typed.params) == jax.tree.structure(like)
  np.testing.assert_array_equal(fa.posthoc_ema(typed, 0.07)["b"],
                                fa.posthoc_ema(disk, 0.07)["b"])
  # a new keeper on the directory knows what is stored, and adds to it
  keeper = fa.PosthocSnapshotKeeper(every, tmp_path / "snaps")
  assert keeper.steps == tuple(range(every, T + 1, every))
  state = _recorded()[2]
  assert not keeper.update(state)                # step T is stored already
  more = state[:-1] + (state[-1]._replace(count=state[-1].count + every),)
  assert keeper.update(more)
  keeper.close()
  assert fa.PosthocSnapshots.load(tmp_path / "snaps").steps[-1] == T + every


def test_keeper_save_every_and_memory():
  tx = optax.chain(optax.sgd(0.1), fa.posthoc_ema_params())
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  keeper = fa.PosthocSnapshotKeeper(every=4)
  with pytest.raises(ValueError, match="step 0"):
    keeper.save(state)
  saved = []
  for _ in range(10):
    u, state = tx.update(params, state, params)
    params = optax.apply_updates(params, u)
    saved.append(keeper.update(state))
  assert saved == [False, False, False, True] * 2 + [False, False]
  assert keeper.save(state) and not keeper.save(state)
  snaps = keeper.snapshots()
  assert snaps.steps == (4, 4, 8, 8, 10, 10)
  np.testing.assert_allclose(snaps.sigma_rels, PAIR * 3, rtol=1e-6)
  np.testing.assert_array_equal(snaps.params["w"][-1],
                                fa.posthoc_emas_of(state)[1]["w"])


def test_keeper_with_nnx_optimizer_linen_train_state_and_vmap():
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from flax.training import train_state  # pylint: disable=import-outside-toplevel

  model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
  opt = nnx.Optimizer(model, optax.chain(optax.sgd(0.1),
                                         fa.posthoc_ema_params()), wrt=nnx.Param)
  keeper = fa.PosthocSnapshotKeeper(every=2)
  x = jnp.ones((4, 3))
  for _ in range(4):
    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
    opt.update(model, grads)
    keeper.update(opt)
  snaps = keeper.snapshots()
  assert snaps.steps == (2, 2, 4, 4)
  ema = fa.posthoc_ema(snaps, 0.07, max_residual=1.0)
  assert ema["kernel"].shape == (3, 2)
  nnx.update(nnx.clone(model), ema)         # a usable model state

  state = train_state.TrainState.create(
      apply_fn=None, params={"w": jnp.ones(3)},
      tx=optax.chain(optax.sgd(0.1), fa.posthoc_ema_params()))
  keeper = fa.PosthocSnapshotKeeper(every=1)
  for _ in range(3):
    state = state.apply_gradients(grads={"w": jnp.ones(3)})
    keeper.update(state)
  assert keeper.snapshots().steps == (1, 1, 2, 2, 3, 3)

  # a vmapped state: the snapshots keep the configuration axis
  tx = optax.chain(optax.sgd(0.1), fa.posthoc_ema_params())
  params = jnp.stack([jnp.ones(3), 2 * jnp.ones(3)])
  st = jax.vmap(tx.init)(params)
  keeper = fa.PosthocSnapshotKeeper(every=1)
  for _ in range(3):
    u, st = jax.vmap(tx.update)(params, st, params)
    params = optax.apply_updates(params, u)
    keeper.update(st)
  out = fa.posthoc_ema(keeper.snapshots(), 0.07, max_residual=1.0)
  assert out.shape == (2, 3)


# ----------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------


def _small_snaps():
  p1, p2 = (fa.power_from_sigma_rel(s) for s in PAIR)
  steps = [10 * (k // 2 + 1) for k in range(20)]
  trees = [{"w": np.full(3, float(k), np.float32)} for k in range(20)]
  return fa.PosthocSnapshots.from_trees(steps, [p1, p2] * 10, trees)


@pytest.mark.parametrize("sigma_rel", [0.0, -0.1, 0.3, float("nan"),
                                       float("inf"), [0.05, 0.0]])
def test_bad_sigma_rel_is_refused(sigma_rel):
  with pytest.raises(ValueError, match=r"`sigma_rel` must lie in \(0, 0.288675\]"):
    fa.posthoc_ema(_small_snaps(), sigma_rel)


def test_other_bad_sigma_rel_forms_are_refused():
  snaps = _small_snaps()
  with pytest.raises(ValueError, match="`sigma_rel` must be concrete"):
    jax.jit(lambda s: fa.posthoc_ema(snaps, s))(0.07)
  with pytest.raises(ValueError, match="`sigma_rel` must be a float"):
    fa.posthoc_ema(snaps, True)
  with pytest.raises(ValueError, match="`sigma_rel` must be a float or a "
                     "non-empty 1-D"):
    fa.posthoc_ema(snaps, [[0.05]])
  with pytest.raises(ValueError, match="`sigma_rels` must lie in"):
    fa.posthoc_ema_params([0.05, 0.0])


def test_too_few_snapshots_are_refused():
  p1 = fa.power_from_sigma_rel(0.05)
  with pytest.raises(ValueError, match="Too few snapshots: post-hoc EMA needs "
                     "at least 2 at or before step 10, got 1"):
    fa.posthoc_ema(fa.PosthocSnapshots.from_trees(
        [10], [p1], [{"w": np.ones(2)}]), 0.07)
  with pytest.raises(ValueError, match="needs at least 2, got none"):
    fa.posthoc_ema_weights([], [], 0.07)
  with pytest.raises(ValueError, match="Too few snapshots: `trees` is empty"):
    fa.PosthocSnapshots.from_trees([], [], [])
  with pytest.raises(ValueError, match="Too few snapshots: the keeper has "
                     "stored none"):
    fa.PosthocSnapshotKeeper(every=5).snapshots()
  # two snapshots, but they cannot represent the target: the residual guard
  with pytest.raises(ValueError, match=r"Too few snapshots for sigma_rel 0.2 "
                     r"\(rho=.*max_residual=0.05"):
    fa.posthoc_ema(fa.PosthocSnapshots.from_trees(
        [10, 10], [p1, fa.power_from_sigma_rel(0.1)],
        [{"w": np.ones(2)}] * 2), 0.2)


def test_target_step_must_be_a_snapshot_step():
  with pytest.raises(ValueError, match=r"`step` must be one of the snapshot "
                     r"steps \[10, 20"):
    fa.posthoc_ema(_small_snaps(), 0.07, step=15)


def test_mismatched_trees_are_refused(tmp_path):
  p1, p2 = (fa.power_from_sigma_rel(s) for s in PAIR)
  with pytest.raises(ValueError, match=r"Snapshot trees do not match: tree 1 "
                     r"has leaf \['v'\] where \['w'\] belongs"):
    fa.PosthocSnapshots.from_trees([10, 10], [p1, p2],
                                   [{"w": np.ones(2)}, {"v": np.ones(2)}])
  with pytest.raises(ValueError, match=r"Snapshot trees do not match: tree 1 "
                     r"has leaf \['w'\] of float32\[3\], not float32\[2\]"):
    fa.PosthocSnapshots.from_trees(
        [10, 10], [p1, p2], [{"w": np.ones(2, np.float32)},
                             {"w": np.ones(3, np.float32)}])
  with pytest.raises(ValueError, match="leading axis of size 2"):
    fa.PosthocSnapshots([10, 10], [p1, p2], {"w": np.ones((3, 4))})
  with pytest.raises(ValueError, match="one entry per snapshot, got 2 and 1"):
    fa.PosthocSnapshots([10, 10], [p1], {"w": np.ones((2, 4))})
  with pytest.raises(ValueError, match="`steps` must be non-decreasing"):
    fa.PosthocSnapshots([20, 10], [p1, p2], {"w": np.ones((2, 4))})
  with pytest.raises(ValueError, match="a snapshot is repeated"):
    fa.posthoc_ema_weights([10, 10, 20], [p1, p1, p2], 0.07)
  with pytest.raises(ValueError, match="`snapshots` must be a PosthocSnapshots"):
    fa.posthoc_ema({"w": np.ones((2, 3))}, 0.07)
  # a keeper fed another model mid-run
  tx = fa.posthoc_ema_params()
  keeper = fa.PosthocSnapshotKeeper(every=1)
  st = tx.init({"w": jnp.ones(2)})
  _, st = tx.update({"w": jnp.ones(2)}, st, {"w": jnp.ones(2)})
  keeper.update(st)
  other = tx.init({"w": jnp.ones(3)})
  _, other = tx.update({"w": jnp.ones(3)}, other, {"w": jnp.ones(3)})
  other = other._replace(count=other.count + 1)
  with pytest.raises(ValueError, match=r"the EMAs at step 2 have leaf \['w'\] "
                     r"of float32\[3\], not float32\[2\]"):
    keeper.update(other)
  # a directory restored into a tree it does not match
  disk = fa.PosthocSnapshotKeeper(every=1, directory=tmp_path / "d")
  disk.update(st)
  disk.close()
  with pytest.raises(ValueError, match=r"Snapshot trees do not match: .* do "
                     r"not restore into `like`: it has leaf \['v'\] where "
                     r"\['w'\] belongs"):
    fa.PosthocSnapshots.load(tmp_path / "d", like={"v": jnp.ones(2)})
  with pytest.raises(ValueError, match="does not exist"):
    fa.PosthocSnapshots.load(tmp_path / "missing")


@pytest.mark.parametrize("kwargs,match", [
    (dict(sigma_rels=(0.05,), powers=(1.0,)), "not both"),
    (dict(sigma_rels=(0.05, 0.05)), "`sigma_rels` must be distinct"),
    (dict(powers=(-1.0,)), "`powers` must be finite and >= 0"),
    (dict(source="iterate"), "`source` must be one of"),
])
def test_bad_transform_arguments_are_refused(kwargs, match):
  with pytest.raises(ValueError, match=match):
    fa.posthoc_ema_params(**kwargs)


def test_other_bad_inputs_are_refused():
  tx = fa.posthoc_ema_params()
  st = tx.init({"w": jnp.ones(2)})
  with pytest.raises(ValueError, match="needs `params`"):
    tx.update({"w": jnp.ones(2)}, st)
  for every in (0, 2.0, True):
    with pytest.raises(ValueError, match="`every` must be an integer >= 1"):
      fa.PosthocSnapshotKeeper(every)
  with pytest.raises(ValueError, match="No PosthocEmaState found .*posthoc_ema_params"):
    fa.PosthocSnapshotKeeper(1).update(optax.sgd(0.1).init({"w": jnp.ones(2)}))
  with pytest.raises(ValueError, match="`max_residual` must be a float > 0"):
    fa.posthoc_ema(_small_snaps(), 0.07, max_residual=0.0)
  with pytest.raises(ValueError, match=r"`steps` must be integers >= 1"):
    fa.posthoc_ema_weights([0, 10], [1.0, 2.0], 0.07)


# ----------------------------------------------------------------------------
# `python tests/test_posthoc.py`: the measured tolerance table.
# ----------------------------------------------------------------------------


if __name__ == "__main__":
  print(f"T = {T}, snapshots every {EVERY} steps, pair {PAIR}; errors are "
        "relative to max_i |x_i - x_T| (the bound is ||e||_1)")
  print(f"{'sigma_rel':>9} {'||e||_1':>9} {'rho*fac':>9} {'||c||_1':>8} "
        f"{'max err/span':>12}")
  for s in sorted(PAIR + INSIDE + OUTSIDE):
    r = _measure(s)
    print(f"{s:9.3f} {r['e1']:9.2e} {r['rho'] * r['factor']:9.2e} "
          f"{r['c1']:8.2f} {(r['err'] / r['span']).max():12.2e}")
