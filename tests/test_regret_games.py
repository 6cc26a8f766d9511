"""Specification of ftrl_adam.regret games (MATH.md sections 1-3).

* identity D2 and the literal FTRL argmin, in float64;
* the streamed regret equals a NumPy recomputation from the trajectory;
* D3 (all b1, b2) and D4 (b1 <= sqrt(b2)) hold on many random sequences;
* the switch sequence D5, the alternating sequence D6, the adaptive
  adversaries of D7;
* adaptive adversaries really see the learner's plays; vmapped grids equal
  single games bit for bit; bad input raises clear errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings, strategies as st
from scipy import optimize

import ftrl_adam as fa
from ftrl_adam import regret
from ftrl_adam import testing

# ------------------------------------------------------------------ helpers


def _np(x):
  return np.asarray(x, np.float64)


def mixture(advs, w0=0.0):
  """One adaptive adversary that plays ``advs[params['which']] * params['G']``.

  ``which`` and ``G`` are data, so one compiled game covers every adversary
  of the list (and a vmapped grid can mix them).
  """

  def fn(p, t, key, play, w):
    d = play.shape[0]
    branches = [lambda a=a: a.gradient(t, key, d, play, w) for a in advs]
    return p["G"] * jax.lax.switch(p["which"], branches)

  return regret.Adversary(kind="adaptive", fn=fn, name="mixture",
                          params={"which": jnp.int32(0), "G": jnp.float32(1.0)},
                          w0=jnp.float32(w0))


def with_params(adv, **params):
  return regret.Adversary(kind=adv.kind, fn=adv.fn, name=adv.name,
                          params={**adv.params, **params}, w0=adv.w0)


def _noisy_quadratic(w, key):
  return 0.5 * jnp.sum(jnp.square(w - 1.0)) + jnp.dot(
      jax.random.normal(key, w.shape), w)


ADVERSARIES = {
    "gaussian": regret.gaussian(1.0),
    "rademacher": regret.rademacher(1.0),
    "sparse": regret.sparse(1.0, 0.2),
    "heavy_tailed": regret.heavy_tailed(1.0, 1.5),
    "alternating": regret.alternating(1.0),
    "switch": regret.switch(1.0, 0.9, 0.95, 1.0),
    "oppose": regret.oppose(1.0),
    "abs_w": regret.abs_w(1.0, 5.0),
    "gradient_of": regret.gradient_of(_noisy_quadratic, stochastic=True),
}
MIX = mixture(list(ADVERSARIES.values()), w0=5.0)


def _random_cells(n, seed):
  """(b1, b2) log-uniform in 1 - b: b1 in [0.5, 0.999], b2 in [0.25, 0.9999]."""
  rng = np.random.default_rng(seed)
  b1 = 1 - 10 ** rng.uniform(-3, np.log10(0.5), n)
  b2 = 1 - 10 ** rng.uniform(-4, np.log10(0.75), n)
  # make sure both regimes and the extremes are there
  b1[:4] = [0.5, 0.999, 0.5, 0.999]
  b2[:4] = [0.25, 0.9999, 0.9999, 0.25]
  return np.float32(b1), np.float32(b2)


# ---------------------------------------------- identity D2, literal FTRL argmin


def literal_ftrl_plays(g, b1, b2, c, D, domain):
  """x_t = argmin_{x in domain} <H_{t-1}, x> + ||x||^2 / (2 eta_t), float64.

  Algorithm 2 of MATH.md on the scaled losses h_s = b1^{-s} g_s with
  S_t = sum_s b2^{-s} g_s^2 and eta_t = c beta^{t-1} / sqrt(S_{t-1}), solved
  numerically (scipy), not by the clip formula.
  """
  T, d = g.shape
  beta = b1 / np.sqrt(b2)
  x = np.zeros((T, d))
  H, S = np.zeros(d), np.zeros(d) if domain == "box" else 0.0
  for t in range(1, T + 1):
    if t > 1:
      if domain == "box":
        for i in range(d):
          if S[i] == 0.0:     # eta = inf and H = 0: the argmin is 0
            continue
          inv_eta = np.sqrt(S[i]) / (c * beta ** (t - 1))
          scale = abs(H[i]) + inv_eta   # a positive factor: same argmin
          res = optimize.minimize_scalar(
              lambda z: (H[i] * z + z * z * inv_eta / 2) / scale,
              bounds=(-D, D), method="bounded", options={"xatol": 1e-12})
          x[t - 1, i] = res.x
      elif S > 0:
        inv_eta = np.sqrt(S) / (c * beta ** (t - 1))
        scale = np.linalg.norm(H) + inv_eta
        res = optimize.minimize(
            lambda z: (H @ z + z @ z * inv_eta / 2) / scale, np.zeros(d),
            jac=lambda z: (H + z * inv_eta) / scale, method="SLSQP",
            constraints=[{"type": "ineq", "fun": lambda z: D ** 2 - z @ z,
                          "jac": lambda z: -2 * z}],
            options={"ftol": 1e-15, "maxiter": 200})
        x[t - 1] = res.x
    H = H + b1 ** (-t) * g[t - 1]
    S = S + b2 ** (-t) * (g[t - 1] ** 2 if domain == "box"
                          else np.sum(g[t - 1] ** 2))
  return x


@pytest.mark.parametrize("domain", ["box", "ball"])
@pytest.mark.parametrize("b1,b2", [(0.9, 0.99), (0.95, 0.6)])
def test_identity_d2_and_literal_ftrl_float64(domain, b1, b2):
  T, d, D, c = 24, 3, 0.8, 0.5
  rng = np.random.default_rng(1)
  g = rng.standard_normal((T, d)) * (rng.random((T, d)) < 0.6)
  g[:3, 1] = 0.0
  g = np.float32(g).astype(np.float64)
  b1f, b2f = float(np.float32(b1)), float(np.float32(b2))
  u = np.array([0.3, -0.8, 0.1])
  if domain == "ball":
    u = u * min(1.0, D / np.linalg.norm(u))
  res = regret.game(b1, b2, radius=D, c=c, T=T, d=d, domain=domain,
                    adversary=regret.from_array(g), key=jax.random.key(0),
                    u=u, record=True)
  x = literal_ftrl_plays(g, b1f, b2f, c, D, domain)
  # the package's float64 oracle is the literal argmin ...
  np.testing.assert_allclose(
      testing.ftrl_plays(g, b1f, b2f, c=c, radius=D, domain=domain), x,
      atol=1e-7)
  # ... and Adam (the transform, float32) plays it.
  np.testing.assert_allclose(_np(res.trajectory.plays), x, atol=2e-5 * D)
  np.testing.assert_array_equal(_np(res.trajectory.grads), g)

  # Identity D2 in float64: R_T(u) = b1^T sum_t <h_t, x_t - u>, by hand ...
  t = np.arange(1, T + 1)[:, None]
  lhs = np.sum(b1f ** (T - t) * g * (x - u))
  rhs = b1f ** T * np.sum(b1f ** (-t) * g * (x - u))
  np.testing.assert_allclose(lhs, rhs, rtol=1e-12)
  # ... with the reference functions, for u and for the best comparator ...
  kw = dict(domain=domain)
  for cmp in (dict(u=u), dict(radius=D)):
    np.testing.assert_allclose(
        testing.discounted_regret(g, x, b1f, **cmp, **kw),
        b1f ** T * testing.scaled_ftrl_regret(g, x, b1f, **cmp, **kw),
        rtol=1e-12)
  np.testing.assert_allclose(testing.discounted_regret(g, x, b1f, u=u), lhs,
                             rtol=1e-12)
  # ... and the game's streamed values (float32) agree.
  best = b1f ** T * testing.scaled_ftrl_regret(g, x, b1f, radius=D, **kw)
  got = res.regret_box if domain == "box" else res.regret_ball
  np.testing.assert_allclose(float(got), best, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(float(res.regret_u), lhs, rtol=1e-5, atol=1e-6)


def test_scaled_reference_refuses_overflowing_horizons():
  g = np.ones((8000, 1))
  with pytest.raises(ValueError, match="overflows float64"):
    testing.scaled_ftrl_regret(g, g, 0.9, radius=1.0)
  with pytest.raises(ValueError, match="overflows float64"):
    testing.ftrl_plays(g, 0.9, 0.99, c=1.0, radius=1.0)


def test_streamed_regret_equals_numpy_from_trajectory():
  """The O(d) running sums equal sum_t lam^{T-t} <g_t, Delta_t - u> recomputed."""
  T, d, D = 300, 4, 0.6
  u = np.array([0.6, -0.2, 0.0, 0.6])
  f = jax.jit(jax.vmap(lambda b1, b2, which, key: regret.game(
      b1, b2, radius=D, T=T, d=d, adversary=with_params(MIX, which=which),
      key=key, u=u, record=True)))
  n = len(ADVERSARIES)
  b1, b2 = _random_cells(n, seed=2)
  res = f(b1, b2, jnp.arange(n, dtype=jnp.int32),
          jax.random.split(jax.random.key(2), n))
  for i in range(n):
    lam = float(b1[i])
    gs, xs = _np(res.trajectory.grads[i]), _np(res.trajectory.plays[i])
    w = lam ** (T - np.arange(1, T + 1))[:, None]
    loss = np.sum(w * gs * xs)
    M = np.sum(w * gs, axis=0)
    scale = np.sum(np.abs(w * gs * xs)) + D * np.sum(np.abs(M)) + 1e-3
    ref = lambda **kw: testing.discounted_regret(gs, xs, lam, **kw)  # noqa
    assert ref(u=0.0) == pytest.approx(loss, rel=1e-9, abs=1e-12)
    for got, want in [(res.loss, loss), (res.regret_u, ref(u=u)),
                      (res.regret_box, ref(radius=D)),
                      (res.regret_ball, ref(radius=D, domain="ball"))]:
      assert abs(float(got[i]) - want) <= 2e-5 * scale, (i, got[i], want)
    np.testing.assert_allclose(_np(res.sum_grads[i]), M, rtol=1e-4,
                               atol=2e-5 * np.max(np.abs(M)))
    # iterates are w_0 + the cumulated plays, w_0 = 5
    np.testing.assert_allclose(_np(res.trajectory.iterates[i]),
                               5.0 + np.cumsum(xs, axis=0), rtol=1e-5,
                               atol=1e-4)


# --------------------------------------------------------------- D3 and D4

_CELLS = 96
_T_BOUND = 512


def _bound_run(domain):
  return jax.jit(jax.vmap(lambda b1, b2, which, G, u, key: regret.game(
      b1, b2, radius=1.0, T=_T_BOUND, d=3, domain=domain,
      adversary=with_params(MIX, which=which, G=G), key=key, u=u)))


@pytest.mark.parametrize("domain", ["box", "ball"])
def test_d3_and_d4_hold_on_random_sequences(domain):
  n = _CELLS
  b1, b2 = _random_cells(n, seed=3 if domain == "box" else 4)
  rng = np.random.default_rng(5)
  which = np.arange(n, dtype=np.int32) % len(ADVERSARIES)
  G = np.float32(10 ** rng.uniform(-1, 1, n))
  u = np.float32(rng.uniform(-1, 1, (n, 3)))
  if domain == "ball":
    u /= np.maximum(1.0, np.linalg.norm(u, axis=1, keepdims=True))
  res = _bound_run(domain)(b1, b2, which, G, u,
                           jax.random.split(jax.random.key(6), n))
  worst = _np(res.regret_box if domain == "box" else res.regret_ball)
  bound, bound_u, d4 = _np(res.bound), _np(res.bound_u), _np(res.bound_d4)
  assert np.all(np.isfinite(bound)) and np.all(res.first_nonfinite_round == 0)
  ratio = worst / bound
  assert np.all(worst <= bound * (1 + 1e-5)), ratio.max()
  assert np.all(_np(res.regret_u) <= bound_u * (1 + 1e-5) + 1e-6)
  small_beta = b1 <= np.sqrt(b2)
  assert small_beta.sum() >= 10 and (~small_beta).sum() >= 10  # both regimes
  assert np.all(worst[small_beta] <= d4[small_beta] * (1 + 1e-5))
  # the bound is not vacuous: some sequences come within a factor 2 of it
  assert ratio.max() > 0.5
  print(f"\n{domain}: max regret / D3 = {ratio.max():.3f}, "
        f"max regret / D4 = {(worst / d4)[small_beta].max():.3f}")


_single_box = jax.jit(lambda b1, b2, which, G, key: regret.game(
    b1, b2, radius=1.0, T=128, d=2,
    adversary=with_params(MIX, which=which, G=G), key=key))


@settings(max_examples=30, deadline=None)
@given(b1=st.floats(0.5, 0.999), b2=st.floats(0.25, 0.9999),
       which=st.integers(0, len(ADVERSARIES) - 1),
       G=st.floats(0.01, 100.0), seed=st.integers(0, 2**31 - 1))
def test_d3_property(b1, b2, which, G, seed):
  res = _single_box(jnp.float32(b1), jnp.float32(b2), jnp.int32(which),
                    jnp.float32(G), jax.random.key(seed))
  assert float(res.regret_box) <= float(res.bound) * (1 + 1e-5)
  assert float(res.max_regret_box) >= float(res.regret_box)
  if np.float32(b1) <= np.sqrt(np.float32(b2)):
    assert float(res.regret_box) <= float(res.bound_d4) * (1 + 1e-5)
    assert float(jnp.max(res.streams.e)) == 0.0


# ------------------------------------------------- switch D5, alternating D6


def test_switch_sequence_reaches_its_order():
  """Regret / (DG min(1/sqrt(1-b2), 1/(1-b1))) in [0.3, 2] (MATH.md D5).

  Over b2 >= b1^2 (where the switch order is the worst case; below it the
  alternating phase dominates, see D6) and kappa in {1/2, 1}.
  """
  cells = [(b1, b2, kappa) for b1 in (0.5, 0.9, 0.95, 0.99, 0.999)
           for b2 in (0.9, 0.99, 0.999) for kappa in (0.5, 1.0)
           if b2 >= b1 ** 2]
  b1, b2, kappa = (np.float32(x) for x in zip(*cells, strict=False))
  L, k = regret.switch_lengths(b1, b2, kappa)
  T = int(jnp.max(L + k))

  def one(b1, b2, kappa, h):
    adv = regret.switch(1.0, b1, b2, kappa)
    return regret.game(b1, b2, radius=1.0, T=T, d=1, adversary=adv,
                       key=jax.random.key(0), u=1.0, horizon=h)

  res = jax.jit(jax.vmap(one))(b1, b2, kappa, L + k)
  ratio = _np(res.regret_u) / _np(regret.switch_order(1.0, 1.0, b1, b2))
  print("\nswitch ratios:", dict(zip(cells, np.round(ratio, 3), strict=False)))
  assert np.all((ratio >= 0.3) & (ratio <= 2.0)), ratio
  np.testing.assert_allclose(_np(res.regret_u), _np(res.regret_box), rtol=1e-5)


def test_switch_closed_forms_equal_simulated_plays():
  """switch_pre_clip_play = the unclipped transform's plays; clipped = Algorithm 1."""
  cells = [(b1, b2) for b1 in (0.3, 0.5, 0.9, 0.99) for b2 in (0.5, 0.75, 0.9)]
  b1, b2 = (np.float32(x) for x in zip(*cells, strict=False))
  L, k = regret.switch_lengths(b1, b2)
  T = int(jnp.max(L + k))
  c, D = 0.6, 0.5

  def one(b1, b2, h):
    adv = regret.switch(2.0, b1, b2)
    lr = c * jnp.sqrt(1.0 - b2) / (1.0 - b1)
    unclipped = fa.ftrl_adam(lr, b1, b2, 0.0, radius=None,
                             bias_correction=False)
    pre = regret.play(unclipped, adv, T=T, d=1, key=jax.random.key(0),
                      radius=D, discount=b1, horizon=h, record=True)
    alg1 = regret.game(b1, b2, radius=D, c=c, T=T, d=1, adversary=adv,
                       key=jax.random.key(0), horizon=h, record=True)
    return pre.trajectory.plays[:, 0], alg1.trajectory.plays[:, 0]

  pre, alg1 = jax.jit(jax.vmap(one))(b1, b2, L + k)
  t = np.arange(1, T + 1)
  for i in range(len(cells)):
    n = int(L[i] + k[i])
    closed = _np(testing.switch_pre_clip_play(t[:n], c=c, b1=b1[i], b2=b2[i],
                                             L=L[i]))
    np.testing.assert_allclose(_np(pre[i, :n]), closed, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(_np(alg1[i, :n]), np.clip(closed, -D, D),
                               rtol=2e-5, atol=1e-6)
    assert np.any(np.abs(closed) > D) or b1[i] < 0.9  # the clip is exercised


def test_alternating_sequence_order():
  """D6: regret ~ DG sqrt(1-b2)/(1-b1^2) (ratio in [0.9, 2]) when b2 <= b1^2."""
  cells = [(0.5, 0.25), (0.7, 0.25), (0.9, 0.25), (0.9, 0.5), (0.9, 0.81),
           (0.99, 0.5), (0.99, 0.9), (0.99, 0.98)]
  b1, b2 = (np.float32(x) for x in zip(*cells, strict=False))
  res = jax.jit(jax.vmap(lambda b1, b2: regret.game(
      b1, b2, radius=1.0, T=2000, d=1, adversary=regret.alternating(1.0),
      key=jax.random.key(0))))(b1, b2)
  ratio = _np(res.regret_box) / _np(regret.alternating_order(1, 1, b1, b2))
  print("\nalternating ratios:", dict(zip(cells, np.round(ratio, 3), strict=False)))
  assert np.all((ratio >= 0.9) & (ratio <= 2.0)), ratio


# ---------------------------------------------------------------- D7


def test_d7_non_oblivious_adversaries_prefer_b2_above_b1_squared():
  """D7, c = D = G = 1, T = 30/(1 - b1); A: b2 = b1^2, B: b2 > b1^2.

  Against "oppose": R_B < R_A.  Against "oppose" and "|w|":
  R_B <= sqrt((1 - b2_B)/(1 - b1^2)) R_A + 2DG.  (Against "|w|" R_B < R_A is
  not asserted: its regret oscillates with T, and at b1 = 0.9, T = 300,
  b2_B = 0.905 it is R_B = 2.80 > R_A = 2.70.)
  """
  rows = []
  for b1 in (0.9, 0.95, 0.99):
    for which in (0, 1):
      for b2 in (b1 ** 2, 1 - (1 - b1 ** 2) / 2, 1 - (1 - b1 ** 2) / 10, 0.9999):
        rows.append((b1, b2, which, round(30 / (1 - b1))))
  b1, b2, which, h = (np.asarray(x) for x in zip(*rows, strict=False))
  adv = mixture([regret.oppose(1.0), regret.abs_w(1.0)], w0=5.0)
  T = int(h.max())
  res = jax.jit(jax.vmap(lambda b1, b2, which, h: regret.game(
      b1, b2, radius=1.0, T=T, d=1,
      adversary=with_params(adv, which=which), key=jax.random.key(0),
      horizon=h)))(np.float32(b1), np.float32(b2), np.int32(which),
                   np.int32(h))
  R = _np(res.regret_box).reshape(-1, 4)
  for (b1_, _, which_, _), r_a, r_bs in zip(rows[::4], R[:, 0], R[:, 1:], strict=False):
    b2_bs = np.float32([1 - (1 - b1_ ** 2) / 2, 1 - (1 - b1_ ** 2) / 10,
                        0.9999])
    print(f"\nD7 {('oppose', '|w|')[which_]} b1={b1_}: R_A={r_a:.3f} "
          f"R_B={np.round(r_bs, 3)}")
    if which_ == 0:
      assert np.all(r_bs < r_a)
    assert np.all(r_bs <= np.sqrt((1 - b2_bs) / (1 - b1_ ** 2)) * r_a + 2.0)
  # MATH.md's reference figure: b1 = 0.99, oppose: R_A = 7.59 and
  # R_B = 2.75 at b2_B = 0.998.
  np.testing.assert_allclose(R[4, [0, 2]], [7.59, 2.75], atol=0.01)


# --------------------------------------------- adaptive adversaries see plays


def test_oppose_sees_the_plays():
  run = jax.jit(jax.vmap(lambda b2: regret.game(
      0.9, b2, radius=1.0, T=200, d=2, adversary=regret.oppose(2.0),
      key=jax.random.key(0), record=True)))
  res = run(jnp.float32([0.81, 0.999]))
  plays, grads = _np(res.trajectory.plays), _np(res.trajectory.grads)
  # g_t = G sign(Delta_t) with sign(0) = +1: it depends on the play ...
  np.testing.assert_array_equal(grads, np.where(plays < 0, -2.0, 2.0))
  assert np.any(plays < 0) and np.any(plays > 0)
  # ... so every round costs the learner G |Delta_t| ...
  np.testing.assert_allclose(np.sum(grads * plays, axis=2),
                             2.0 * np.sum(np.abs(plays), axis=2))
  # (If the adversary were fed a fixed play, e.g. Delta_1 = 0, it would
  # answer +G every round and the two assertions above would fail.)


def test_gradient_of_is_evaluated_at_the_iterate_with_the_round_key():
  key = jax.random.key(7)
  adv = regret.gradient_of(_noisy_quadratic, w0=np.array([3.0, -2.0, 0.5]),
                           stochastic=True)
  res = regret.game(0.9, 0.99, radius=0.2, T=50, d=3, adversary=adv, key=key,
                    record=True)
  plays, grads, w = (_np(x) for x in res.trajectory)
  np.testing.assert_allclose(w, [3.0, -2.0, 0.5] + np.cumsum(plays, axis=0),
                             atol=1e-5)
  noise = jax.vmap(lambda t: jax.random.normal(jax.random.fold_in(key, t),
                                               (3,)))(jnp.arange(1, 51))
  np.testing.assert_allclose(grads, w - 1.0 + _np(noise), atol=1e-5)
  # the learner descends: the iterate ends near the minimiser 1 (+ noise)
  assert np.all(np.abs(w[-1] - 1.0) < np.abs(w[0] - 1.0))
  # another learner, same key: other iterates, hence other gradients
  other = regret.game(0.5, 0.99, radius=0.2, T=50, d=3, adversary=adv,
                      key=key, record=True)
  assert not np.array_equal(_np(other.trajectory.grads), grads)


def test_abs_w_uses_the_iterate():
  res = regret.game(0.9, 0.81, radius=1.0, T=40, d=1,
                    adversary=regret.abs_w(1.0, w0=5.0),
                    key=jax.random.key(0), record=True)
  w, grads = _np(res.trajectory.iterates), _np(res.trajectory.grads)
  np.testing.assert_array_equal(grads, np.where(w < 0, -1.0, 1.0))
  assert w[0, 0] == 5.0 and np.any(w < 0)   # it reached and crossed 0


# -------------------------------------------------- purity, vmap, bit-identity


def _five_games(name):
  """Five random (b1, b2) cells, their keys, and the game of adversary ``name``."""
  n = 5
  b1, b2 = _random_cells(n, seed=8)
  keys = jax.random.split(jax.random.key(8), n)
  adv = ADVERSARIES[name]
  game = lambda b1, b2, key: regret.game(  # noqa: E731
      b1, b2, radius=0.5, T=100, d=3, adversary=adv, key=key, record=True)
  return n, b1, b2, keys, game


@pytest.mark.parametrize("name", ["gaussian", "sparse"])
def test_vmapped_grid_equals_single_games_bit_for_bit(name):
  """A grid cell is the single game (same compiled arithmetic, same bits).

  Bit-identity across batch shapes is the reproducible compiler options'
  promise (``grid.compiler_options()``, DESIGN.md); with XLA's defaults a
  cell equals the single game to float32 rounding
  (test_vmapped_grid_equals_single_games_to_float32_rounding).  An adaptive
  game (``oppose``) can amplify a 1-ulp fused multiply-add difference of a
  plain ``jax.vmap`` (see regret.games), so it is compared with a tolerance
  there, and bit for bit only through the engine (tests/test_regret_cli.py).
  """
  from ftrl_adam import grid as engine
  n, b1, b2, keys, game = _five_games(name)
  opts = engine.compiler_options()
  grid = jax.jit(jax.vmap(game), compiler_options=opts)(b1, b2, keys)
  single = jax.jit(game, compiler_options=opts)
  for i in range(n):
    for a, b in zip(jax.tree.leaves(single(b1[i], b2[i], keys[i])),
                    jax.tree.leaves(grid), strict=False):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[i])


@pytest.mark.parametrize("name", ["gaussian", "oppose"])
def test_vmapped_grid_equals_single_games_to_float32_rounding(name):
  """With XLA's default options (and eagerly, with Python floats)."""
  _, b1, b2, keys, game = _five_games(name)
  adv = ADVERSARIES[name]
  grid = jax.jit(jax.vmap(game))(b1, b2, keys)
  eager = regret.game(float(b1[1]), float(b2[1]), radius=0.5, T=100, d=3,
                      adversary=adv, key=keys[1], record=True)
  for i, one in ((0, jax.jit(game)(b1[0], b2[0], keys[0])), (1, eager)):
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(grid), strict=True):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b)[i], rtol=1e-6,
                                 atol=1e-6)


def test_games_compile_once_per_adversary_structure():
  """Hyperparameters and adversary parameters are data: no recompilation."""
  from ftrl_adam.regret import games
  quad = lambda w: jnp.sum(w ** 2)  # noqa: E731
  for make in (lambda G: regret.gaussian(G), lambda G: regret.switch(G, 0.9),
               lambda G: regret.gradient_of(quad, w0=G)):
    regret.game(0.9, 0.99, radius=1.0, T=16, d=2, adversary=make(1.0),
                key=jax.random.key(0))
    n = games._game_jit._cache_size()
    regret.game(0.5, 0.9, radius=2.0, T=16, d=2, adversary=make(3.0),
                key=jax.random.key(1), u=0.5, c=0.3)
    assert games._game_jit._cache_size() == n


def test_same_key_same_numbers_and_discount_default():
  args = dict(radius=1.0, T=64, d=3, adversary=regret.gaussian(1.0),
              key=jax.random.key(3))
  a = regret.game(0.9, 0.99, **args)
  b = regret.game(0.9, 0.99, **args)
  c = regret.game(0.9, 0.99, discount=0.9, **args)
  for x, y, z in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(c), strict=False):
    np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(x, z)
  other = regret.game(0.9, 0.99, **{**args, "key": jax.random.key(4)})
  assert float(other.loss) != float(a.loss)


def test_play_any_optax_transform():
  """A generic learner (SGD), undiscounted regret, horizon semantics."""
  g = np.float32(np.random.default_rng(0).standard_normal((40, 2)))
  res = regret.play(optax.sgd(0.1), regret.from_array(g), T=40, d=2,
                    key=jax.random.key(0), radius=2.0, discount=1.0,
                    record=True)
  plays = np.concatenate([np.zeros((1, 2)), -0.1 * g[:-1]])  # Delta_1 = 0
  np.testing.assert_allclose(_np(res.trajectory.plays), plays, atol=1e-6)
  want = np.sum(g * plays) + 2.0 * np.sum(np.abs(g.sum(0)))
  np.testing.assert_allclose(float(res.regret_box), want, rtol=1e-5)
  assert np.isnan(float(res.bound))          # no theory given
  # horizon = 10 is the same as a game of 10 rounds
  short = regret.play(optax.sgd(0.1), regret.from_array(g[:10]), T=10, d=2,
                      key=jax.random.key(0), radius=2.0, discount=1.0)
  cut = regret.play(optax.sgd(0.1), regret.from_array(g), T=40, d=2,
                    key=jax.random.key(0), radius=2.0, discount=1.0,
                    horizon=10)
  for f in ("regret_box", "regret_ball", "loss", "max_regret_box"):
    np.testing.assert_allclose(float(getattr(cut, f)), float(getattr(short, f)),
                               rtol=1e-6)


# ---------------------------------------------------------------- bad input


def _sqrt_objective(w):
  return jnp.sum(jnp.sqrt(w))


def test_non_finite_gradient_names_the_round():
  adv = regret.gradient_of(_sqrt_objective, w0=1.0)
  # w_t = 1, 0.7, 0.4, 0.1, -0.2: the gradient 1/(2 sqrt(w)) is NaN at t = 5
  with pytest.raises(ValueError, match=r"non-finite.*round t = 5\b"):
    regret.game(0.9, 0.99, radius=0.3, T=20, d=1, adversary=adv,
                key=jax.random.key(0))
  # under jit the round is a field; vmapped games report their own rounds
  run = jax.jit(jax.vmap(lambda D: regret.game(
      0.9, 0.99, radius=D, T=20, d=1, adversary=adv, key=jax.random.key(0))))
  res = run(jnp.float32([0.3, 0.45, 0.01]))
  assert res.first_nonfinite_round.tolist() == [5, 4, 0]
  with pytest.raises(ValueError, match=r"round t = 4 \(in 2 of 3 games\)"):
    regret.raise_if_nonfinite(res)
  nan_at_7 = regret.adaptive(
      lambda t, key, play, w: jnp.where(t == 7, jnp.nan, 1.0) * jnp.ones_like(w))
  with pytest.raises(ValueError, match=r"round t = 7\b"):
    regret.play(optax.sgd(0.1), nan_at_7, T=9, d=2, key=jax.random.key(0),
                radius=1.0, discount=0.5)


@pytest.mark.parametrize("bad,match", [
    (dict(T=0), "`T` must be an integer >= 1"),
    (dict(T=-3), "`T` must be an integer >= 1"),
    (dict(T=10.0), "`T` must be an integer >= 1"),
    (dict(T=True), "`T` must be an integer >= 1"),
    (dict(d=0), "`d` must be an integer >= 1"),
    (dict(key=0), "`key` must be one PRNG key"),
    (dict(adversary="gaussian"), "`adversary` must be a regret.Adversary"),
    (dict(adversary=regret.oblivious(lambda t, key, d: jnp.ones((d + 1,)))),
     r"shape \(3,\), got float32\[4\]"),
    (dict(adversary=regret.oblivious(lambda t, key, d: jnp.ones((d,), jnp.int32))),
     "must return a float32 array"),
    (dict(adversary=regret.adaptive(lambda t, key, p, w: (w + p).astype(jnp.float16))),
     "must return a float32 array"),
    (dict(adversary=regret.gradient_of(lambda w: w)),
     r"`adversary` \(gradient_of\(<lambda>\)\) failed"),
    (dict(adversary=regret.from_array(np.ones((7, 3)))), "has 7 rounds but T = 10"),
    (dict(adversary=regret.from_array(np.ones((10, 2)))), r"shape \(3,\)"),
    (dict(adversary=regret.abs_w(1.0, w0=np.zeros(2))), r"`adversary.w0`"),
    (dict(method="fast"), "`method` must be one of"),
    (dict(method="parallel", adversary=regret.oppose()), "oblivious adversary"),
    (dict(domain="simplex"), "`domain` must be one of"),
    (dict(horizon=11), r"`horizon` must be an integer in \[1, T = 10\]"),
    (dict(horizon=0), r"`horizon` must be an integer in \[1, T = 10\]"),
    (dict(u=np.zeros(2)), "`u` must be a scalar or have shape"),
    (dict(discount=1.5), "`discount` must lie in"),
    (dict(radius=0.0), "`radius` must lie in"),
    (dict(b1=1.0), "`b1` must lie in"),
    (dict(b2=0.0), "`b2` must lie in"),
])
def test_bad_input_raises_clear_errors(bad, match):
  kwargs = dict(b1=0.9, b2=0.99, radius=1.0, T=10, d=3,
                adversary=regret.gaussian(1.0), key=jax.random.key(0))
  kwargs.update(bad)
  b1, b2 = kwargs.pop("b1"), kwargs.pop("b2")
  with pytest.raises(ValueError, match=match):
    regret.game(b1, b2, **kwargs)


def test_bad_adversary_arrays_and_play_arguments():
  with pytest.raises(ValueError, match="floating-point"):
    regret.from_array(np.ones((4, 2), np.int32))
  with pytest.raises(ValueError, match=r"shape \(T, d\)"):
    regret.from_array(np.ones(4))
  with pytest.raises(ValueError, match=r"g\[2, 1\] = nan \(round t = 3\)"):
    g = np.ones((4, 2))
    g[2, 1] = np.nan
    regret.from_array(g)
  with pytest.raises(ValueError, match="`p` must lie in"):
    regret.sparse(1.0, p=1.5)
  with pytest.raises(ValueError, match="`G` must lie in"):
    regret.gaussian(-1.0)
  with pytest.raises(ValueError, match="`F` must be a callable"):
    regret.gradient_of(3.0)
  common = dict(T=5, d=2, key=jax.random.key(0), radius=1.0)
  with pytest.raises(ValueError, match="`discount` is required"):
    regret.play(optax.sgd(0.1), regret.gaussian(), **common)
  with pytest.raises(ValueError, match="`learner` must be an optax"):
    regret.play("adam", regret.gaussian(), discount=0.9, **common)
  with pytest.raises(ValueError, match="`theory` must be a regret.Theory"):
    regret.play(optax.sgd(0.1), regret.gaussian(), theory=(0.9, 0.99, 1.0),
                **common)
