"""Specification of ftrl_adam.online_to_nonconvex and the ahn_cutkosky recipe.

MATH.md section 4: delta_t is the learner's play before g_t (delta_1 = 0),
base = w_{t-1}, y_t = base + s_t delta_t is where the gradient is taken, and
w_t = base + delta_t (uniform) or w_t = y_t (exponential).  The reference loop
below is written literally from those lines, with the learner as a black box.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ftrl_adam as fa

X0 = {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([[0.3, -0.1]])}


def loss(p):
  # A smooth non-convex function of a two-leaf tree.
  return (jnp.sum(jnp.sin(3.0 * p["a"]) + 0.5 * p["a"] ** 2)
          + jnp.sum(jnp.cos(2.0 * p["b"]) * p["b"]))


grad_fn = jax.jit(jax.grad(loss))


def learner():
  return fa.ftrl_adam(0.1, b1=0.9, b2=0.81, radius=0.05)


def run(tx, steps=20, x0=X0):
  """Plain optax loop; returns the params before each update and every state."""
  params, state = x0, tx.init(x0)
  points, states = [params], [state]
  for _ in range(steps):   # eager: every op rounds once, as in the reference
    updates, state = tx.update(grad_fn(params), state, params)
    params = optax.apply_updates(params, updates)
    points.append(params)
    states.append(state)
  return points, states


def assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=False):
    np.testing.assert_array_equal(x, y)


def assert_trees_close(a, b, **kw):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=False):
    np.testing.assert_allclose(x, y, **kw)


@pytest.mark.parametrize("make_learner", [
    learner, lambda: optax.adamw(0.05, weight_decay=0.1)], ids=["ftrl_adam", "adamw"])
def test_scaling_none_reproduces_the_plain_learner_bit_for_bit(make_learner):
  plain, _ = run(make_learner())
  conv, states = run(fa.online_to_nonconvex(
      make_learner(), key=jax.random.key(0), scaling="none"))
  for n, (p, c, st) in enumerate(zip(plain, conv, states, strict=False)):
    assert_trees_equal(p, c)
    assert_trees_equal(fa.nonconvex_iterate(st), c)   # y = w when s = 1
    assert float(st.scale) == 1.0, n


@pytest.mark.parametrize("scaling", ["uniform", "exponential"])
def test_matches_the_literal_algorithm(scaling):
  tx = fa.online_to_nonconvex(learner(), key=jax.random.key(42), scaling=scaling)
  points, states = run(tx)
  ref_learner = learner()
  inner = ref_learner.init(X0)
  w = X0                                              # w_0 = x_0
  delta = jax.tree.map(jnp.zeros_like, X0)            # delta_1 = 0
  for t in range(1, len(points)):
    s = states[t - 1].scale                           # s_t, drawn before g_t
    base = w
    y = jax.tree.map(lambda b, d: b + s * d, base, delta)
    w = (jax.tree.map(lambda b, d: b + d, base, delta) if scaling == "uniform"
         else y)
    assert_trees_close(points[t - 1], y, rtol=1e-6, atol=1e-6)
    # The learner sees g_t at y_t (the loop's point, to stay in lock-step).
    delta, inner = ref_learner.update(grad_fn(points[t - 1]), inner)
    # After update t the state holds w_{t+1} = w_t + c delta_{t+1}.
    c = 1.0 if scaling == "uniform" else states[t].scale
    w_next = jax.tree.map(lambda a, d: a + c * d, w, delta)
    assert_trees_close(fa.nonconvex_iterate(states[t]), w_next, rtol=1e-6,
                       atol=1e-6)
    assert_trees_close(states[t].play, delta, rtol=0, atol=0)


def test_gradient_points_lie_on_the_segment():
  points, states = run(fa.online_to_nonconvex(learner(), key=jax.random.key(7)))
  for n in range(1, len(points)):
    y = points[n]                                     # y_{n+1}
    w_start = fa.nonconvex_iterate(states[n - 1])     # w_n
    w_end = fa.nonconvex_iterate(states[n])           # w_{n+1}
    s = float(states[n].scale)
    assert 0.0 <= s < 1.0
    # One scalar s for every coordinate of every leaf.
    for yl, a, b in zip(jax.tree.leaves(y), jax.tree.leaves(w_start),
                        jax.tree.leaves(w_end), strict=False):
      np.testing.assert_allclose(yl, a + s * (b - a), rtol=1e-6, atol=1e-6)
      lo, hi = np.minimum(a, b), np.maximum(a, b)
      assert np.all((yl >= lo - 1e-6) & (yl <= hi + 1e-6))
  # Not degenerate: the segments have length and the points are interior.
  assert np.ptp([float(st.scale) for st in states]) > 0.3


def test_exponential_gradient_point_is_the_iterate():
  points, states = run(fa.online_to_nonconvex(
      learner(), key=jax.random.key(3), scaling="exponential"))
  for p, st in zip(points, states, strict=False):
    assert_trees_equal(p, fa.nonconvex_iterate(st))


def test_same_key_same_trajectory_other_key_differs():
  make = lambda k: fa.online_to_nonconvex(learner(), key=k)  # noqa: E731
  a, _ = run(make(jax.random.key(5)))
  b, _ = run(make(jax.random.key(5)))
  c, _ = run(make(jax.random.key(6)))
  raw, _ = run(make(jax.random.PRNGKey(5)))           # legacy raw key, same data
  for x, y, z in zip(a, b, raw, strict=False):
    assert_trees_equal(x, y)
    assert_trees_equal(x, z)
  assert not np.array_equal(a[-1]["a"], c[-1]["a"])


def _scales(scaling, steps):
  tx = fa.online_to_nonconvex(optax.sgd(1e-3), key=jax.random.key(11),
                              scaling=scaling)

  def body(carry, _):
    params, state = carry
    updates, state = tx.update(2.0 * params, state, params)
    return (optax.apply_updates(params, updates), state), state.scale

  x0 = jnp.ones(2)
  _, s = jax.lax.scan(jax.jit(body), (x0, tx.init(x0)), None, length=steps)
  return np.asarray(s, np.float64)


def test_mean_of_scales():
  n = 4000
  u = _scales("uniform", n)
  assert u.min() >= 0.0 and u.max() < 1.0
  assert abs(u.mean() - 0.5) < 4 * (12 ** -0.5) / np.sqrt(n)     # 4 std errors
  assert abs(u.var() - 1 / 12) < 0.01
  e = _scales("exponential", n)
  assert e.min() >= 0.0
  assert abs(e.mean() - 1.0) < 4 / np.sqrt(n)
  assert abs(np.median(e) - np.log(2)) < 0.05
  # A fresh, independent draw each step: no repeats, no lag-1 correlation.
  for x in (u, e):
    assert np.all(x[1:] != x[:-1])
    assert abs(np.corrcoef(x[1:], x[:-1])[0, 1]) < 4 / np.sqrt(n)


def _scan_final(tx, steps):
  def body(carry, _):
    params, state = carry
    updates, state = tx.update(grad_fn(params), state, params)
    return (optax.apply_updates(params, updates), state), None

  (params, state), _ = jax.lax.scan(body, (X0, tx.init(X0)), None, length=steps)
  return params, state


def test_vmap_over_keys_equals_single_runs():
  final = lambda key: _scan_final(  # noqa: E731
      fa.online_to_nonconvex(learner(), key=key), 8)[0]
  keys = jax.random.split(jax.random.key(0), 3)
  batched = jax.jit(jax.vmap(final))(keys)
  for i in range(3):
    single = jax.jit(final)(keys[i])
    assert_trees_close(jax.tree.map(lambda v: v[i], batched), single,
                       rtol=1e-6, atol=1e-7)


def test_dtypes_stable_and_bf16_params():
  x0 = jax.tree.map(lambda v: v.astype(jnp.bfloat16), X0)
  tx = fa.online_to_nonconvex(learner(), key=jax.random.key(0))
  state0 = tx.init(x0)
  g = jax.tree.map(lambda v: v.astype(jnp.bfloat16), grad_fn(X0))
  updates, state = tx.update(g, state0, x0)
  assert jax.tree.map(lambda v: v.dtype, state0) == jax.tree.map(
      lambda v: v.dtype, state)
  assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))
  assert state.key.dtype == jnp.uint32 and state.count.dtype == jnp.int32


def test_nonconvex_iterate_lookup():
  tx = optax.named_chain(
      ("conv", fa.online_to_nonconvex(learner(), key=jax.random.key(0))),
      ("ema", fa.ema_params(0.9)))
  _, states = run(tx, steps=3)
  assert_trees_equal(fa.nonconvex_iterate(states[-1]),
                     states[-1]["conv"].iterate)
  with pytest.raises(ValueError, match="No OnlineToNonconvexState"):
    fa.nonconvex_iterate(optax.adam(0.1).init(X0))
  two = optax.chain(
      fa.online_to_nonconvex(learner(), key=jax.random.key(0), name="x"),
      fa.online_to_nonconvex(learner(), key=jax.random.key(1), name="z"))
  state = two.init(X0)
  with pytest.raises(ValueError, match="Found 2 OnlineToNonconvexState"):
    fa.nonconvex_iterate(state)
  assert_trees_equal(fa.nonconvex_iterate(state, name="z"), X0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(key=jax.random.key(0), scaling="gaussian"), "`scaling` must be one of"),
    (dict(key=None), "`key`"),
    (dict(key=jnp.zeros(2)), "`key`"),
    (dict(key=jax.random.split(jax.random.key(0), 2)), "single PRNG key"),
    (dict(key=jax.random.key(0), name=1), "`name`"),
])
def test_bad_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    fa.online_to_nonconvex(learner(), **kwargs)
  with pytest.raises(ValueError, match="`learner`"):
    fa.online_to_nonconvex(0.1, key=jax.random.key(0))


# --------------------------------------------------------------------------
# The Ahn & Cutkosky recipe.
# --------------------------------------------------------------------------


def test_ahn_cutkosky_ema_is_the_papers_output():
  beta = 0.8
  points, states = run(fa.ahn_cutkosky(beta, 0.05, key=jax.random.key(0)))
  ys = [np.concatenate([np.ravel(np.asarray(v, np.float64))
                        for v in jax.tree.leaves(p)]) for p in points]
  for n in range(1, len(points)):
    # ybar_n = (1 - beta) / (1 - beta^n) sum_{s<=n} beta^(n-s) y_s
    weights = np.array([beta ** (n - s) for s in range(1, n + 1)])
    want = (1 - beta) / (1 - beta ** n) * (weights @ np.stack(ys[:n]))
    got = np.concatenate([np.ravel(v) for v in
                          jax.tree.leaves(fa.ema_params_of(states[n]))])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("domain", ["ball", "box"])
def test_ahn_cutkosky_learner_is_scale_free_ftrl_adam(domain):
  # Algorithm 1 of MATH.md section 2, float64: no bias correction, eps = 0,
  # b1 = beta, b2 = beta^2, alpha = D sqrt(1 - beta^2) / (1 - beta); the ball
  # uses one second moment from ||g||^2 and the l2 projection.
  beta, radius = 0.9, 0.05
  points, states = run(fa.ahn_cutkosky(beta, radius, key=jax.random.key(1),
                                       domain=domain), steps=12)
  alpha = radius * np.sqrt(1 - beta ** 2) / (1 - beta)
  m = v = 0.0
  for n in range(1, len(points)):
    g = np.concatenate([np.ravel(np.asarray(x, np.float64))
                        for x in jax.tree.leaves(grad_fn(points[n - 1]))])
    m = beta * m + (1 - beta) * g
    if domain == "ball":
      v = beta ** 2 * v + (1 - beta ** 2) * np.sum(g ** 2)
      d = -alpha * m / np.sqrt(v)
      d = d * min(1.0, radius / np.linalg.norm(d))
    else:
      v = beta ** 2 * v + (1 - beta ** 2) * g ** 2
      d = np.clip(-alpha * m / np.sqrt(v), -radius, radius)
    play = np.concatenate([np.ravel(x) for x in
                           jax.tree.leaves(states[n][0].play)])
    np.testing.assert_allclose(play, d, rtol=2e-4, atol=1e-7)
  # The first play has the full radius: ||delta_2|| = D (ball), |delta| = D (box).
  first = np.concatenate([np.ravel(x) for x in jax.tree.leaves(states[1][0].play)])
  if domain == "ball":
    assert np.linalg.norm(first) == pytest.approx(radius, rel=1e-5)
  else:
    np.testing.assert_allclose(np.abs(first), radius, rtol=1e-5)


def test_ahn_cutkosky_vmaps_over_beta():
  final = lambda beta: fa.ema_params_of(_scan_final(  # noqa: E731
      fa.ahn_cutkosky(beta, 0.05, key=jax.random.key(2)), 6)[1])
  betas = jnp.array([0.5, 0.9, 0.99])
  batched = jax.jit(jax.vmap(final))(betas)
  for i, b in enumerate(betas):
    assert_trees_close(jax.tree.map(lambda v: v[i], batched), jax.jit(final)(b),
                       rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("beta", [-0.1, 1.0, 1.5])
def test_ahn_cutkosky_bad_beta(beta):
  with pytest.raises(ValueError, match="`beta` must lie in"):
    fa.ahn_cutkosky(beta, 0.1, key=jax.random.key(0))
  with pytest.raises(ValueError, match="`domain`"):
    fa.ahn_cutkosky(0.9, 0.1, key=jax.random.key(0), domain="sphere")


def test_ahn_cutkosky_on_complex_params_is_the_problem_in_r2n():
  """Global second moment (sum |g|**2), ball of C^n = R^2n, real random scales.

  The algorithm on complex params z with gradients g equals the algorithm on
  the real params (Re z, Im z) with gradients (Re g, Im g): updates, iterate
  and EMA (it was Re(sum g**2) before: a zero step for imaginary gradients).
  """
  z0 = jnp.array([1.0 + 2.0j, -0.5j, 3.0], jnp.complex64)
  r0 = jnp.stack([z0.real, z0.imag])
  f_c = lambda z: jnp.sum(jnp.abs(z - (1 - 1j)) ** 2 + jnp.abs(z) ** 4 / 10)  # noqa: E731
  f_r = lambda r: f_c(r[0] + 1j * r[1])  # noqa: E731
  txc, txr = (fa.ahn_cutkosky(0.9, 0.1, key=jax.random.key(3)) for _ in "cr")
  z, r = z0, r0
  sc, sr = txc.init(z), txr.init(r)
  # Each step jitted (compiled once; op by op it dispatches hundreds of ops).
  step_c = jax.jit(lambda z, s: txc.update(jnp.conj(jax.grad(f_c)(z)), s, z))
  step_r = jax.jit(lambda r, s: txr.update(jax.grad(f_r)(r), s, r))
  for _ in range(15):
    uc, sc = step_c(z, sc)
    ur, sr = step_r(r, sr)
    np.testing.assert_allclose(np.stack([uc.real, uc.imag]), ur, rtol=2e-5,
                               atol=1e-7)
    z, r = optax.apply_updates(z, uc), optax.apply_updates(r, ur)
  for get in (fa.nonconvex_iterate, fa.ema_params_of):
    c, x = get(sc), get(sr)
    np.testing.assert_allclose(np.stack([c.real, c.imag]), x, rtol=2e-5,
                               atol=1e-6)
  assert float(jnp.linalg.norm(z - z0)) > 0.5       # it moved
