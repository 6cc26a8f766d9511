"""The regret monitor (ftrl_adam.regret_monitor, regret_of) as a specification.

* Equivalence: the monitor of ``regret.theory_learner`` fed a gradient
  sequence in a training loop reports what ``regret.game`` reports for the
  same sequence as ``regret.from_array`` (regret, loss, sum of gradients,
  running maximum, the D3 streams and bound), box and ball, both regimes.
  This pins the pairing: the update returned at step t is paid against the
  gradient of step t + 1.
* Pass-through: the wrapped optimizer's trajectory (and its EMA) is identical
  bit for bit with and without the monitor.
* Options: a random subset of coordinates (box) is exactly the game on those
  coordinates; a count-sketch (ball) is the linear map it claims to be, its
  inner products are unbiased, and the ball's D3 streams stay exact.
* The invariant regret <= D3 at every step of a real training run of
  Algorithm 1; ``regret_of`` finds the state by type; bad inputs raise
  ValueErrors that name the argument.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ftrl_adam as fa
from ftrl_adam import _coords
from ftrl_adam import monitor
from ftrl_adam import regret
from helpers import flat
from helpers import gradient_sequence
from ftrl_adam.regret import bounds


def _feed(tx, grads, params):
  """A jitted training loop: params += updates, the gradients given."""
  step = jax.jit(tx.update)
  state = tx.init(params)
  for g in grads:
    updates, state = step(g, state, params)
    params = optax.apply_updates(params, updates)
  return state, params


def _d3_streams(state):
  """(V, E, Sigma) of a monitor's state: rows of the box, entries of the ball's sums."""
  if state.sums.shape[-1] == len(monitor.SUMS) + len(monitor.SETTINGS):
    return state.sums[3], state.sums[4], state.sums[5]
  i = monitor.ROWS.index("v")
  return state.streams[i], state.streams[i + 1], state.streams[i + 2]


def _sequence(T, d, seed=0, scale=1.0):
  rng = np.random.default_rng(seed)
  return (scale * rng.standard_normal((T, d))).astype(np.float32)


# ----------------------------------------------------------------------------
# The monitor equals the game on the same gradients.
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("domain", ["box", "ball"])
@pytest.mark.parametrize("b1,b2", [(0.9, 0.99), (0.9, 0.5), (0.5, 0.9)])
def test_monitor_equals_regret_game_on_the_same_gradients(domain, b1, b2):
  T, d, D = 80, 5, 0.7
  g = _sequence(T, d, seed=1)
  g[:5, 2] = 0.0        # a coordinate that starts with zero gradients
  res = regret.game(b1, b2, radius=D, T=T, d=d, domain=domain,
                    adversary=regret.from_array(g), key=jax.random.key(0))
  learner = regret.theory_learner(b1, b2, D, domain=domain)
  tx = fa.regret_monitor(learner, radius=D, b1=b1, b2=b2, c=D, domain=domain)
  state, _ = _feed(tx, [jnp.asarray(x) for x in g], jnp.zeros(d))
  rep = fa.regret_of(state)
  game_regret = res.regret_box if domain == "box" else res.regret_ball
  game_max = res.max_regret_box if domain == "box" else res.max_regret_ball
  close = lambda a, b: np.testing.assert_allclose(  # noqa: E731
      np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  assert int(rep.step) == T and rep.coords == d
  close(rep.regret, game_regret)
  close(rep.loss, res.loss)
  close(rep.sum_grads, res.sum_grads)
  close(rep.max_regret, game_max)
  close(rep.bound, res.bound)
  v, e, sigma = _d3_streams(state)
  close(v, res.streams.v)
  close(e, res.streams.e)
  close(sigma, res.streams.sigma)
  assert float(rep.regret) <= float(rep.bound)


def test_the_update_of_step_t_is_paid_at_step_t_plus_1():
  # sgd(1): Delta_{t+1} = -g_t.  r_3 = b1 (b1 * 0 + <g_2, -g_1>) + <g_3, -g_2>.
  b1 = 0.5
  g = [jnp.array([1.0, 2.0]), jnp.array([3.0, -1.0]), jnp.array([-2.0, 1.0])]
  tx = fa.regret_monitor(optax.sgd(1.0), radius=1.0, b1=b1)
  state, _ = _feed(tx, g, jnp.zeros(2))
  dot = lambda a, b: float(jnp.dot(a, b))  # noqa: E731
  expect = b1 * dot(g[1], -g[0]) + dot(g[2], -g[1])
  np.testing.assert_allclose(float(fa.regret_of(state).loss), expect, rtol=1e-6)
  m = b1 ** 2 * g[0] + b1 * g[1] + g[2]
  np.testing.assert_allclose(fa.regret_of(state).sum_grads, m, rtol=1e-6)
  np.testing.assert_allclose(float(fa.regret_of(state).regret),
                             expect + float(jnp.sum(jnp.abs(m))), rtol=1e-6)


def test_regret_stays_below_d3_in_a_training_run_of_algorithm_1():
  # Noisy least squares trained by Algorithm 1 (c = D): regret <= D3 each step.
  b1, b2, D = 0.9, 0.95, 0.05
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal((64, 8)), jnp.float32)
  y = a @ jnp.arange(8.0) + 0.1 * jnp.asarray(rng.standard_normal(64), jnp.float32)
  lr = D * (1 - b2) ** 0.5 / (1 - b1)
  learner = fa.ftrl_adam(lr, b1, b2, eps=0.0, radius=D, bias_correction=False)
  tx = fa.regret_monitor(learner, radius=D, b1=b1, b2=b2, lr=lr)
  loss = lambda w, i: jnp.mean((a[i] @ w - y[i]) ** 2)  # noqa: E731

  @jax.jit
  def step(w, state, key):
    i = jax.random.choice(key, 64, (16,))
    updates, state = tx.update(jax.grad(loss)(w, i), state, w)
    rep = fa.regret_of(state)
    return w + updates, state, rep.regret, rep.bound

  w, state = jnp.zeros(8), tx.init(jnp.zeros(8))
  ratios = []
  for t in range(150):
    w, state, r, b = step(w, state, jax.random.key(t))
    ratios.append(float(r) / float(b))
  assert max(ratios) <= 1.0
  assert float(jnp.mean((a @ w - y) ** 2)) < float(jnp.mean(y ** 2)) / 10


# ----------------------------------------------------------------------------
# Updates pass through.
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("options", [
    dict(), dict(coords=4, record_every=3), dict(coords=6, domain="ball")],
    ids=["all", "subset", "sketch"])
def test_the_wrapped_trajectory_is_identical(options):
  params = {"a": jnp.ones((3, 4)), "b": {"c": jnp.full((5,), 0.5)}}
  adam = fa.ftrl_adam(3e-2, 0.9, 0.99, radius=0.05)
  plain = optax.chain(adam, fa.ema_params(0.9))
  watched = optax.chain(
      fa.regret_monitor(adam, radius=0.05, b1=0.9, b2=0.99, lr=3e-2,
                        **options),
      fa.ema_params(0.9))
  loss = lambda p: jnp.sum(jnp.sin(p["a"]) ** 2) + jnp.sum(p["b"]["c"] ** 4)  # noqa: E731

  def run(tx):
    @jax.jit
    def step(p, s):
      u, s = tx.update(jax.grad(loss)(p), s, p)
      return optax.apply_updates(p, u), s
    p, s = params, tx.init(params)
    for _ in range(25):
      p, s = step(p, s)
    return p, fa.ema_params_of(s)

  (p1, e1), (p2, e2) = run(plain), run(watched)
  for x, y in zip(jax.tree.leaves((p1, e1)), jax.tree.leaves((p2, e2)),
                  strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_updates_are_returned_as_the_wrapped_transform_makes_them():
  params = {"w": jnp.zeros(3, jnp.bfloat16), "none": None}
  tx = fa.regret_monitor(optax.adam(0.1), radius=1.0, b1=0.9)
  state = tx.init(params)
  g = {"w": jnp.array([1.0, -2.0, 0.5], jnp.bfloat16), "none": None}
  u, state = tx.update(g, state, params)
  ref, _ = optax.adam(0.1).update(g, optax.adam(0.1).init(params), params)
  assert u["w"].dtype == jnp.bfloat16 and u["none"] is None
  np.testing.assert_array_equal(np.asarray(u["w"], np.float32),
                                np.asarray(ref["w"], np.float32))
  assert fa.regret_of(state).sum_grads["w"].dtype == jnp.float32


# ----------------------------------------------------------------------------
# The options: a subset (box), a count-sketch (ball), recording.
# ----------------------------------------------------------------------------

def _tree_grads(T, seed=0):
  return gradient_sequence(T, {"a": (4, 5), "b": (7,)}, seed)


def _recorded(tx, grads, params, tmp_path):
  """Feeds grads, records the monitored gradients, returns (state, recording)."""
  rec = fa.RegretRecorder(tmp_path, max_rounds=10_000)
  step = jax.jit(tx.update)
  state = tx.init(params)
  for g in grads:
    updates, state = step(g, state, params)
    params = optax.apply_updates(params, updates)
    rec.update(state)
  rec.flush(state)
  return state, fa.recorded_gradients(tmp_path)


def test_a_subset_is_exactly_the_game_on_those_coordinates(tmp_path):
  T, k, D, b1, b2 = 40, 9, 0.3, 0.9, 0.9
  grads = _tree_grads(T)
  params = jax.tree.map(jnp.zeros_like, grads[0])
  learner = regret.theory_learner(b1, b2, D)
  tx = fa.regret_monitor(learner, radius=D, b1=b1, b2=b2, c=D, coords=k,
                         seed=3, record_every=7)
  state, rec = _recorded(tx, grads, params, tmp_path)
  full = np.stack([flat(g) for g in grads])              # (T, 27)
  # The recorded columns are columns of the full sequence: find them.
  idx = [int(np.flatnonzero(np.all(full == rec[:, [j]], axis=0))[0])
         for j in range(k)]
  assert len(idx) == k
  rep = fa.regret_of(state)
  assert rep.coords == k and float(rep.fraction) == pytest.approx(k / 27)
  res = regret.game(b1, b2, radius=D, T=T, d=k, key=jax.random.key(0),
                    adversary=regret.from_array(full[:, idx]))
  for a, b in [(rep.regret, res.regret_box), (rep.loss, res.loss),
               (rep.bound, res.bound), (rep.sum_grads, res.sum_grads)]:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6,
                               atol=1e-7)
  # Another seed, another subset; the same seed, the same subset.
  other = fa.regret_monitor(learner, radius=D, b1=b1, coords=k, seed=4,
                            record_every=7)
  _, rec4 = _recorded(other, grads, params, tmp_path / "seed4")
  same = fa.regret_monitor(learner, radius=D, b1=b1, coords=k, seed=3,
                           record_every=7)
  _, rec3 = _recorded(same, grads, params, tmp_path / "seed3")
  assert not np.array_equal(rec4, rec) and np.array_equal(rec3, rec)


def _sketch_matrix(n, k, seed, tmp_path):
  """S (k x n) of the monitor's sketch, read off by recording basis vectors."""
  tx = fa.regret_monitor(optax.sgd(0.0), radius=1.0, b1=0.5, domain="ball",
                         coords=k, seed=seed, record_every=n)
  basis = [jnp.asarray(e, jnp.float32) for e in np.eye(n)]
  _, rec = _recorded(tx, basis, jnp.zeros(n), tmp_path)
  return rec.T


def test_the_sketch_is_a_count_sketch_and_the_ball_bound_is_exact(tmp_path):
  n, k, T, b1, b2, D = 40, 8, 30, 0.8, 0.9, 0.4
  S = _sketch_matrix(n, k, 5, tmp_path / "S")
  assert S.shape == (k, n)
  assert np.all(np.sum(S != 0, axis=0) == 1)          # one bucket per coordinate
  assert set(np.unique(S[S != 0])) == {-1.0, 1.0}     # with a sign
  g = _sequence(T, n, seed=2)
  learner = regret.theory_learner(b1, b2, D, domain="ball")
  tx = fa.regret_monitor(learner, radius=D, b1=b1, b2=b2, c=D, domain="ball",
                         coords=k, seed=5)
  state, _ = _feed(tx, [jnp.asarray(x) for x in g], jnp.zeros(n))
  res = regret.game(b1, b2, radius=D, T=T, d=n, domain="ball", record=True,
                    adversary=regret.from_array(g), key=jax.random.key(0))
  plays = np.asarray(res.trajectory.plays)
  gs, ds = g @ S.T, plays @ S.T                        # S g_t, S Delta_t
  w = b1 ** np.arange(T - 1, -1, -1)
  loss = np.sum(w * np.sum(gs * ds, axis=1))
  m = w @ gs
  rep = fa.regret_of(state)
  np.testing.assert_allclose(float(rep.loss), loss, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(rep.sum_grads), m, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(float(rep.regret),
                             loss + D * np.linalg.norm(m), rtol=1e-5)
  np.testing.assert_allclose(float(rep.bound), float(res.bound), rtol=1e-6)
  assert float(rep.fraction) == pytest.approx(k / n)


def _sketched(x, y, seed, k):
  """(S x, S y) for the sketch of ``seed``: two rounds of a monitor, read from
  its ``recent`` rows (un-jitted: the seed is a constant of a jitted program,
  so each seed would compile one; op by op, every seed runs the same ops)."""
  tx = fa.regret_monitor(optax.sgd(0.0), radius=1.0, b1=0.5, domain="ball",
                         coords=k, seed=seed, record_every=2)
  params = jnp.zeros(x.shape)
  state = tx.init(params)
  for g in (x, y):
    _, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
  return np.asarray(state.recent, np.float64)


def test_sketched_inner_products_are_unbiased():
  n, k, seeds = 12, 4, 60
  rng = np.random.default_rng(0)
  x, y = rng.standard_normal(n), rng.standard_normal(n)
  x, y = x.astype(np.float32), y.astype(np.float32)   # what the monitor sees
  est = []
  for s in range(seeds):
    sx, sy = _sketched(x, y, s, k)
    est.append(sx @ sy)
  est = np.array(est)
  # E<Sx, Sy> = <x, y>: the mean is within 4 standard errors.
  assert abs(est.mean() - x @ y) < 4 * est.std() / np.sqrt(seeds)
  assert est.std() > 0                                 # the seeds differ


# ----------------------------------------------------------------------------
# regret_of finds the state; bad inputs.
# ----------------------------------------------------------------------------

def test_regret_of_finds_the_monitor_in_nested_states():
  params = jnp.zeros(2)
  g = jnp.array([1.0, -1.0])
  mon = lambda **kw: fa.regret_monitor(optax.sgd(0.1), radius=1.0, b1=0.5, **kw)  # noqa: E731
  for tx in [optax.chain(optax.clip(1.0), mon(), fa.ema_params(0.9)),
             optax.named_chain(("m", mon())),
             optax.MultiSteps(mon(), every_k_schedule=1)]:
    state = tx.init(params)
    _, state = tx.update(g, state, params)
    assert float(fa.regret_of(state).regret) == 2.0
  two = optax.chain(mon(name="a"), mon(name="b", record_every=2))
  state = two.init(params)
  _, state = two.update(g, state, params)
  assert fa.regret_of(state, "b").step == 1
  with pytest.raises(ValueError, match="pass `name=`"):
    fa.regret_of(state)
  with pytest.raises(ValueError, match="No RegretMonitorState"):
    fa.regret_of(optax.sgd(0.1).init(params))


def test_regret_of_reads_an_nnx_optimizer_and_its_state_dict():
  from flax import nnx  # pylint: disable=import-outside-toplevel
  model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
  opt = nnx.Optimizer(model, fa.regret_monitor(
      fa.ftrl_adam(1e-2, 0.9, 0.99), radius=1e-2, b1=0.9), wrt=nnx.Param)
  x, y = jnp.ones((8, 3)), jnp.zeros((8, 1))
  for _ in range(3):
    grads = nnx.grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
    opt.update(model, grads)
  expect = float(fa.regret_of(opt).regret)
  assert int(fa.regret_of(opt).step) == 3 and expect > 0
  assert float(fa.regret_of(opt.opt_state).regret) == expect
  assert float(fa.regret_of(nnx.state(opt)).regret) == expect


def test_the_bound_is_nan_without_b2_and_c():
  tx = fa.regret_monitor(optax.sgd(0.1), radius=1.0, b1=0.9)
  state = tx.init(jnp.zeros(2))
  _, state = tx.update(jnp.ones(2), state, jnp.zeros(2))
  assert np.isnan(float(fa.regret_of(state).bound))
  assert len(state.streams) == 2 and state.sums.shape == (3 + 5,)   # no D3


def test_the_state_adds_three_buffers_and_keeps_its_settings_exactly():
  # Each buffer costs a small model's step (docs/benchmarks.md): count,
  # streams and sums beside the wrapped state, recent only when recording.
  params = {"w": jnp.zeros((40, 30)), "b": jnp.zeros(30)}
  shapes = [(30,), (40, 30)]                      # jax.tree.leaves order
  inner = fa.ftrl_adam(1e-3, radius=1e-3)
  n_inner = len(jax.tree.leaves(inner.init(params)))
  tx = fa.regret_monitor(inner, coords=64)
  state = tx.init(params)
  assert len(jax.tree.leaves(state)) == n_inner + 3 and state.recent is None
  ids = []
  for seed in range(12):   # 31-bit ids, most above float32's exact 2**24
    st = fa.regret_monitor(inner, coords=64, seed=seed).init(params)
    assert st.coords_id.dtype == jnp.int32
    ids.append(int(st.coords_id))
    assert ids[-1] == _coords.View(shapes, "subset", 64, 8, seed).id
  assert len(set(ids)) == len(ids) and max(ids) > 2 ** 24
  assert float(state.radius) == np.float32(1e-3)
  assert float(state.fraction) == np.float32(64 / 1230)
  _, state = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, params), state,
                                params)
  assert (float(state.radius), int(state.coords_id), int(state.count)) == (
      np.float32(1e-3), ids[0], 1)
  rec = fa.regret_monitor(inner, coords=64, record_every=3).init(params)
  assert len(jax.tree.leaves(rec)) == n_inner + 4
  # The radius may be traced (vmapped over, as a study's axis).
  radii = jax.vmap(lambda r: fa.regret_monitor(
      optax.sgd(0.1), radius=r, b1=0.9).init(params).radius)(
          jnp.float32([0.5, 2.0]))
  np.testing.assert_array_equal(radii, np.float32([0.5, 2.0]))


def test_init_on_shape_dtype_structs():
  spec = {"w": jax.ShapeDtypeStruct((4, 3), jnp.float32)}
  tx = fa.regret_monitor(optax.adam(0.1), radius=1.0, b1=0.9, b2=0.99, c=1.0,
                         coords=5, record_every=2)
  state = tx.init(spec)
  assert state.streams.shape == (5, 5) and state.recent.shape == (2, 5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(radius=0.0), "`radius`"),
    (dict(b1=1.0), "`b1`"),
    (dict(b2=1.0, c=1.0), "`b2`"),
    (dict(b2=0.9), "give `c`"),
    (dict(c=1.0), "needs `b2`"),
    (dict(b2=0.9, c=1.0, lr=0.1), "`c` or `lr`"),
    (dict(b2=0.9, lr=optax.constant_schedule(0.1)), "`lr` must be a constant"),
    (dict(b2=0.9, c=-1.0), "`c`"),
    (dict(domain="cube"), "`domain`"),
    (dict(coords=0), "`coords`"),
    (dict(seed=-1), "`seed`"),
    (dict(record_every=0), "`record_every`"),
    (dict(name=3), "`name`"),
])
def test_bad_arguments_name_themselves(kwargs, match):
  args = dict(radius=1.0, b1=0.9) | kwargs
  with pytest.raises(ValueError, match=match):
    fa.regret_monitor(optax.sgd(0.1), **args)


def test_bad_params_and_transform():
  with pytest.raises(ValueError, match="`tx`"):
    fa.regret_monitor(lambda g: g, radius=1.0, b1=0.9)
  tx = fa.regret_monitor(optax.sgd(0.1), radius=1.0, b1=0.9, coords=10)
  with pytest.raises(ValueError, match=r"`coords` = 10 exceeds .* \(6\)"):
    tx.init(jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match="complex"):
    fa.regret_monitor(optax.sgd(0.1), radius=1.0, b1=0.9).init(
        jnp.zeros(2, jnp.complex64))


def test_the_optimizer_layer_check_of_streams_is_the_labs():
  # The D3 recurrence is one copy: regret.bounds.update_streams and the
  # monitor agree on an arbitrary sequence (here with a zero first gradient).
  g = _sequence(12, 3, seed=7)
  g[0] = 0.0
  s = bounds.init_streams(3)
  for x in g:
    s = bounds.update_streams(s, jnp.asarray(x), b1=0.7, b2=0.3, c=2.0,
                              radius=0.5)
  tx = fa.regret_monitor(optax.sgd(0.0), radius=0.5, b1=0.7, b2=0.3, c=2.0)
  state, _ = _feed(tx, [jnp.asarray(x) for x in g], jnp.zeros(3))
  for a, b in zip(_d3_streams(state), s, strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
  np.testing.assert_allclose(float(fa.regret_of(state).bound),
                             float(regret.d3_bound(s, c=2.0, radius=0.5)),
                             rtol=1e-6)


# ----------------------------------------------------------------------------
# Reading k entries of the update under jit (the gather pushed into the step).
# ----------------------------------------------------------------------------

def _monitored_indices(params, **options):
  """The global indices of a subset's entries (in their order, repeats allowed).

  Read off a recording, independently of how the subset is drawn: one step
  whose gradient is each coordinate's index (leaves ravelled and concatenated
  in ``jax.tree.leaves`` order).
  """
  leaves, treedef = jax.tree.flatten(params)
  starts = np.cumsum([0] + [x.size for x in leaves])
  g = treedef.unflatten([
      jnp.arange(lo, lo + x.size, dtype=jnp.float32).reshape(x.shape)
      .astype(x.dtype) for lo, x in zip(starts, leaves, strict=False)])
  tx = fa.regret_monitor(optax.sgd(0.0), radius=1.0, b1=0.5, record_every=1,
                         **options)
  _, state = tx.update(g, tx.init(params), params)
  return np.asarray(state.recent[0]).astype(np.int64)


_PUSHED = {
    "ftrl_adam": lambda: fa.ftrl_adam(1e-2, 0.9, 0.99),
    "ftrl_adam box": lambda: fa.ftrl_adam(1e-2, 0.9, 0.99, radius=0.01),
    "ftrl_adam ball": lambda: fa.ftrl_adam(1e-2, 0.9, 0.99, radius=0.01,
                                           domain="ball"),
    "optax.adam": lambda: optax.adam(1e-2),
    "clip + adamw": lambda: optax.chain(optax.clip_by_global_norm(0.5),
                                        optax.adamw(1e-2, weight_decay=0.1)),
    "nesterov sgd": lambda: optax.sgd(1e-2, momentum=0.9, nesterov=True),
    "inject adam": lambda: optax.inject_hyperparams(optax.adam)(
        learning_rate=1e-2),
    # a lax.cond on the way: the push stops there (the whole update, gathered)
    "apply_if_finite": lambda: optax.apply_if_finite(optax.adam(1e-2), 3),
    "MultiSteps": lambda: optax.MultiSteps(
        optax.adam(1e-2), 2).gradient_transformation(),
    # a side effect in the update: the monitor gathers from the update itself
    "with a callback": lambda: optax.chain(
        optax.adam(1e-2), optax.stateless(
            lambda u, p: (jax.debug.callback(lambda *a: None, u), u)[1])),
}


@pytest.mark.parametrize("name", sorted(_PUSHED))
def test_the_subset_of_the_update_read_under_jit_is_the_updates_entries(name):
  # Under jit the monitor computes the k entries through the traced update
  # instead of gathering them from it: they must be the update's entries, bit
  # for bit, for any transform (element-wise or not, with params, schedules).
  params = {"a": jnp.linspace(-1.0, 1.0, 30).reshape(5, 6),
            "b": jnp.linspace(0.5, 2.0, 11).astype(jnp.bfloat16)}
  k, seed = 12, 5
  tx = fa.regret_monitor(_PUSHED[name](), radius=0.01, b1=0.9, coords=k,
                         seed=seed, domain="box")   # the box's subset

  @jax.jit
  def step(g, s, p):
    u, s = tx.update(g, s, p)
    return u, s

  state = tx.init(params)
  idx = _monitored_indices(params, coords=k, seed=seed)
  assert idx.size == k
  for t in range(4):
    g = jax.tree.map(lambda x, t=t: jnp.cos(x * (t + 1.0) + 3.0 * t)
                     .astype(x.dtype), params)
    u, state = step(g, state, params)
    full = np.concatenate([np.asarray(x, np.float32).ravel()
                           for x in jax.tree.leaves(u)])
    play = np.asarray(state.streams[monitor.ROWS.index("play")])
    ref = full[idx]
    f32 = idx < params["a"].size                      # the float32 leaf
    np.testing.assert_array_equal(play[f32], ref[f32])
    # bfloat16: XLA may keep intermediates in float32 ("excess precision")
    # differently in the two programs; the entries agree to one bf16 step.
    np.testing.assert_allclose(play[~f32], ref[~f32], rtol=2.0 ** -7)
    params = optax.apply_updates(params, u)


def test_the_pushed_gather_stops_only_at_inputs_and_the_new_state():
  # For these transforms no whole array is made just to read k entries of
  # the update: the push reaches the inputs or the new state (which the step
  # writes anyway), so XLA's fusion of the step is left as it is.
  from ftrl_adam import _gather
  params = {"a": jnp.ones((5, 6)), "b": jnp.ones((7,))}
  for name in ["ftrl_adam", "ftrl_adam box", "ftrl_adam ball", "optax.adam",
               "clip + adamw", "nesterov sgd", "inject adam"]:
    tx = _PUSHED[name]()
    state = tx.init(params)
    args, tree = jax.tree.flatten((params, state, params))

    def fn(*leaves, tx=tx, tree=tree):
      g, s, p = jax.tree.unflatten(tree, leaves)
      u, s = tx.update(g, s, p)
      return jax.tree.leaves(u) + jax.tree.leaves(s)

    frontier = []
    parts = _gather.gather_outputs(fn, args, [np.array([0, 3]),
                                              np.array([1, 6])], frontier)
    assert [p.shape for p in parts] == [(2,), (2,)]
    assert set(frontier) <= {"input", "output"}, (name, frontier)
    # Not pushed through a reduction: a frontier says which primitive.
    frontier = []
    _gather.gather_outputs(lambda x: [jnp.cumsum(x) * 2.0], [jnp.ones(4)],
                           [np.array([1, 2])], frontier)
    assert frontier == ["cumsum"]


@pytest.mark.parametrize("name", ["ftrl_adam", "optax.adam", "clip + adamw"])
def test_a_monitored_step_copies_no_buffer_the_plain_step_does_not(name):
  # A training step donates the parameters and the state. Reading k entries
  # of the old state, or of parameters that the caller overwrites in place,
  # makes XLA copy the whole buffer first unless the write is ordered after
  # the read; the monitor reads the new state and orders its reads.
  import re
  params = {"a": jnp.ones((64, 32)), "b": jnp.ones((1000,))}
  sized = re.compile(r"f32\[(64,32|1000)\]\{[0-9,]*\} copy\(")

  def copies(tx):
    def step(p, s, g):
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s
    text = jax.jit(step, donate_argnums=(0, 1)).lower(
        params, tx.init(params), params).compile().as_text()
    return len(sized.findall(text))

  plain = _PUSHED[name]()
  watched = fa.regret_monitor(_PUSHED[name](), radius=0.1, b1=0.9, coords=16,
                              b2=0.99, lr=1e-2)
  assert copies(watched) <= copies(plain)
