"""optax 0.2.8's own adam tests, the cases that apply, run against ftrl_adam.

``optax/_src/alias_test.py`` (test_optimization with its recompilation check,
extra args, inject_hyperparams, explicit mu_dtype, preserved dtypes, state
stability under ``lax.cond``, ``MultiSteps``), ``tree_utils/_state_utils_test.py``
(``tree.get`` / ``tree_get_all_with_path`` / ``tree_set`` of ``count``,
``tree_map_params``) and Python-scalar leaves, with ``optax.adam`` replaced by
``fa.ftrl_adam`` and ``optax.scale_by_adam`` by ``fa.scale_by_ftrl_adam``.  The
cases are rewritten here (no code copied); where they compare numbers, the
reference is ``optax.adam`` itself with the same float32 hyperparameters.

Deliberate differences (docs/conventions.md, "Differences from optax.adam"): the state is
float32 at least (optax keeps bf16 state for bf16 params), ``nu`` is real for
complex params, and the state classes are the package's own.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax._src import test_utils

import ftrl_adam as fa
from helpers import max_rel_diff, normwise_diff, run_updates

f32 = np.float32
VARIANTS = {
    "plain": dict(),
    "global": dict(second_moment="global"),
    "box": dict(radius=0.05),
    "ball": dict(radius=0.05, domain="ball"),
    "ball_global": dict(radius=0.05, domain="ball", second_moment="global"),
    "uncorrected_ftrl_eps": dict(bias_correction=False, eps_mode="ftrl"),
    "nesterov": dict(nesterov=True),
}


# Unclipped, box and ball are rows of tests/test_conformance.py, which checks
# for them, as strictly, what the tests parametrized by this list check.
NOT_CONFORMANCE_ROWS = [v for v in VARIANTS if v not in ("plain", "box", "ball")]


def parabola(dtype):
  x0 = jnp.array([-1.0, 10.0, 1.0], dtype)
  target = jnp.array([1.0, -1.0, 1.0], dtype)
  if jnp.iscomplexobj(x0):
    target = target * (1 + 1j)
  return x0, target, lambda x: jnp.sum(jnp.abs(x - target) ** 2)


def rosenbrock(dtype):
  a = 1.0 + (1j if jnp.issubdtype(dtype, jnp.complexfloating) else 0.0)
  x0 = jnp.zeros(2, dtype)
  target = jnp.array([a, a**2], dtype)
  return x0, target, lambda x: (jnp.abs(a - x[0]) ** 2
                                + 100.0 * jnp.abs(x[1] - x[0] ** 2) ** 2)


def make_step(tx, objective):
  @jax.jit
  def step(params, state):
    grads = jax.tree.map(jnp.conj, jax.grad(objective)(params))  # optax's rule
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state
  return step


# --------------------------------------------------------------------------
# alias_test.test_optimization: convergence, no recompilation on 2nd call.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64])
@pytest.mark.parametrize("target", [parabola, rosenbrock])
def test_optimization_and_no_recompilation(target, dtype):
  tx = fa.ftrl_adam(1e-1)
  x0, want, objective = target(dtype)
  step = make_step(tx, objective)
  params, state = x0, tx.init(x0)
  state = optax.tree.map_params(tx, lambda v: v, state)   # no-op map works
  params, state = step(params, state)
  with test_utils.log_compilations() as logs:
    params, state = step(params, state)
  assert not logs, "recompiled on the second call"
  # The remaining 9,998 of optax's 10,000 steps, in one compiled loop.
  params, state = jax.jit(lambda p, s: jax.lax.fori_loop(
      0, 9998, lambda _, c: step(*c), (p, s)))(params, state)
  np.testing.assert_allclose(params, want, rtol=3e-2, atol=3e-2)


# plain: tests/test_conformance.py's with_ema row is this chain, committed or not.
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "plain"])
@pytest.mark.parametrize("committed", [False, True])
def test_jitted_loop_compiles_once(variant, committed):
  """params, state = step(params, state): committed params or not."""
  tx, step = _chain_and_step(variant)
  x0 = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array(0.5, jnp.float32)}
  if committed:
    x0 = jax.device_put(x0, jax.devices()[0])
  state = tx.init(x0)
  flags = {x.committed for x in jax.tree.leaves((x0, state))}
  assert flags == {committed}       # one placement for params and state
  params, state = step(x0, state)
  with test_utils.log_compilations() as logs:
    params, state = step(params, state)
    params, state = step(params, state)
  assert not logs


@functools.cache
def _chain_and_step(variant):
  """The chain and its jitted step, one per variant: both placements call
  the same step (the first call of each may compile; no later call may)."""
  tx = optax.chain(fa.ftrl_adam(0.1, **VARIANTS[variant]), fa.ema_params(0.9))
  return tx, make_step(tx, lambda p: jnp.sum(p["w"] ** 2) + p["b"] ** 2)


def test_conversion_and_recipe_compile_once_too():
  for tx in (fa.online_to_nonconvex(fa.ftrl_adam(0.1), key=jax.random.key(0)),
             fa.ahn_cutkosky(0.9, 0.1, key=jax.random.key(1))):
    step = make_step(tx, lambda p: jnp.sum(p ** 2))   # one for both
    for x0 in (jnp.ones(3), jax.device_put(jnp.ones(3), jax.devices()[0])):
      params, state = step(x0, tx.init(x0))
      with test_utils.log_compilations() as logs:
        step(params, state)
      assert not logs


# --------------------------------------------------------------------------
# Python-scalar leaves; tree.get / tree_set of count; tree_map_params.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_python_scalar_leaves(variant):
  tx = fa.ftrl_adam(0.1, **VARIANTS[variant])
  params = {"a": 1, "b": 2.0}
  state = tx.init(params)
  assert all(x.dtype in (jnp.float32, jnp.int32)
             for x in jax.tree.leaves(state))
  grads = {"a": jnp.float32(1.0), "b": jnp.float32(-1.0)}
  updates, state = tx.update(grads, state, params)
  assert float(updates["a"]) < 0 < float(updates["b"])


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("lr", ["float", "schedule"])
def test_one_count_found_by_tree_get(variant, lr):
  learning_rate = 0.1 if lr == "float" else optax.linear_schedule(0.1, 0.0, 50)
  tx = fa.ftrl_adam(learning_rate, **VARIANTS[variant])
  params = jnp.array([1.0, 2.0, 3.0])
  state = tx.init(params)
  # The structure does not depend on float vs schedule.
  assert jax.tree.structure(state) == jax.tree.structure(
      fa.ftrl_adam(optax.constant_schedule(0.1), **VARIANTS[variant]).init(
          params))
  for _ in range(3):
    _, state = tx.update(params, state, params)
  assert int(optax.tree.get(state, "count")) == 3
  found = optax.tree.get_all_with_path(state, "count")
  assert len(found) == 1
  assert found[0][0][-1] == optax.tree_utils.NamedTupleKey(
      "ScaleByFtrlAdamState", "count")
  state = optax.tree.set(state, count=jnp.asarray(7, jnp.int32))
  assert int(optax.tree.get(state, "count")) == 7
  with pytest.raises(KeyError):
    optax.tree.set(state, apple=1.0)


def test_schedule_is_evaluated_at_the_count_as_optax_does():
  sched = optax.piecewise_constant_schedule(f32(0.1), {2: 0.5, 4: 0.1})
  params = {"w": jnp.zeros(4)}
  hp = [f32(x) for x in (0.9, 0.99, 1e-8)]
  _, ours = run_updates(fa.ftrl_adam(sched, *hp), params, 8)
  _, ref = run_updates(optax.adam(sched, *hp), params, 8)
  assert max_rel_diff(ours, ref) <= 1e-6
  # Setting the count moves the schedule and the bias corrections with it.
  tx = fa.ftrl_adam(sched, *hp)
  state = optax.tree.set(tx.init(params), count=jnp.asarray(5, jnp.int32))
  u, _ = tx.update({"w": jnp.ones(4)}, state, params)
  b1, b2, n = 0.9, 0.99, 6            # lr at count 5: 0.1 * 0.5 * 0.1
  want = -0.005 * (np.sqrt(1 - b2**n) / (1 - b1**n)) * (1 - b1) / (
      np.sqrt(1 - b2) + 1e-8 * np.sqrt(1 - b2**n))
  np.testing.assert_allclose(u["w"], want, rtol=1e-5)


def test_tree_map_params_reaches_mu_and_nu():
  tx = fa.ftrl_adam(0.1)
  params = {"a": jnp.zeros((1, 2)), "b": jnp.zeros(3)}
  state = optax.tree.map_params(tx, lambda v: v + 1, tx.init(params))
  for moment in (state[0].mu, state[0].nu):
    for leaf in jax.tree.leaves(moment):
      np.testing.assert_array_equal(leaf, 1.0)
  assert int(state[0].count) == 0


# --------------------------------------------------------------------------
# inject_hyperparams (incl. eps_root), eps_root and nesterov against optax.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_inject_hyperparams_equals_direct(variant):
  kw = dict(learning_rate=1e-1, eps_root=1e-6, **VARIANTS[variant])
  params = [-jnp.ones((2, 3)), jnp.ones((2, 5, 2))]
  grads = [jnp.ones((2, 3)), -jnp.ones((2, 5, 2))]
  direct = fa.ftrl_adam(**kw)
  injected = optax.inject_hyperparams(fa.ftrl_adam)(**kw)
  hps = injected.init(params).hyperparams
  assert {"learning_rate", "b1", "b2", "eps", "eps_root"} <= set(hps)
  u1, s1 = jax.jit(direct.update)(grads, jax.jit(direct.init)(params), params)
  u2, s2 = jax.jit(injected.update)(grads, jax.jit(injected.init)(params),
                                    params)
  jax.tree.map(np.testing.assert_array_equal, u1, u2)
  jax.tree.map(np.testing.assert_array_equal, s1, s2.inner_state)


@pytest.mark.parametrize("b1,b2,eps,eps_root", [
    (0.9, 0.999, 1e-8, 1e-8), (0.5, 0.9, 0.0, 1.0)])
@pytest.mark.parametrize("nesterov", [False, True])
def test_eps_root_and_nesterov_equal_optax_adam(params, b1, b2, eps, eps_root,
                                                nesterov):
  hp = [f32(x) for x in (0.05, b1, b2, eps, eps_root)]
  scale = lambda t: 0.01 + (t % 5).astype(jnp.float32)  # noqa: E731
  _, ours = run_updates(fa.ftrl_adam(*hp, nesterov=nesterov), params, 150,
                        scale_fn=scale)
  _, ref = run_updates(optax.adam(*hp, nesterov=nesterov), params, 150,
                       scale_fn=scale)
  # Normwise to float32 rounding; elementwise looser, where m nearly cancels
  # (XLA may fuse the moment update with or without an FMA in each program).
  assert normwise_diff(ours, ref) <= 1e-6
  assert max_rel_diff(ours, ref) <= 2e-4
  _, without = run_updates(fa.ftrl_adam(*hp[:4], nesterov=not nesterov),
                           params, 150, scale_fn=scale)
  assert max_rel_diff(without, ref) > 1e-3       # the options really act


def test_scale_by_ftrl_adam_eps_root_nesterov_equal_scale_by_adam(params):
  hp = [f32(x) for x in (0.8, 0.95, 1e-7, 1e-5)]
  _, ours = run_updates(fa.scale_by_ftrl_adam(*hp, nesterov=True), params, 60)
  _, ref = run_updates(optax.scale_by_adam(*hp, nesterov=True), params, 60)
  assert normwise_diff(ours, ref) <= 1e-6
  assert max_rel_diff(ours, ref) <= 2e-4


def test_eps_root_in_the_uncorrected_and_ftrl_conventions():
  """r_n = eps_root (adam, uncorrected) and eps_root (1-b2) b2^n (ftrl eps)."""
  b1, b2, eps_root = f32(0.9), f32(0.8), f32(0.5)
  g = [1.0, -2.0, 0.5, 3.0]
  for eps_mode in ("adam", "ftrl"):
    tx = fa.scale_by_ftrl_adam(b1, b2, 0.0, eps_root, bias_correction=False,
                               eps_mode=eps_mode)
    state = tx.init(jnp.zeros(()))
    m = v = 0.0
    for n, gn in enumerate(g, start=1):
      u, state = tx.update(jnp.float32(gn), state)
      m = b1 * m + (1 - b1) * gn
      v = b2 * v + (1 - b2) * gn**2
      r = eps_root if eps_mode == "adam" else eps_root * (1 - b2) * b2**n
      assert float(u) == pytest.approx(m / np.sqrt(v + r), rel=1e-5)


# --------------------------------------------------------------------------
# alias_test: extra args, explicit mu_dtype, dtypes, lax.cond, MultiSteps.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("params_dtype", ["bfloat16", "float32", "complex64"])
@pytest.mark.parametrize("state_dtype", ["bfloat16", "float32", "complex64", None])
def test_explicit_mu_dtype(params_dtype, state_dtype):
  tx = fa.ftrl_adam(0.1, mu_dtype=state_dtype)
  state = tx.init(jnp.zeros(2, params_dtype))
  mu = optax.tree.get(state, "mu")
  if state_dtype is None:   # ours: float32 at least (optax: the params dtype)
    want = jnp.promote_types(params_dtype, jnp.float32)
  else:
    want = jnp.dtype(state_dtype)
  assert mu.dtype == want
  nu = optax.tree.get(state, "nu")
  assert not jnp.issubdtype(nu.dtype, jnp.complexfloating)   # |g|**2 is real


@pytest.mark.parametrize("variant", NOT_CONFORMANCE_ROWS)
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32,
                                   jnp.complex64])
def test_dtypes_stable_under_lax_cond_and_extra_args(variant, dtype):
  tx = fa.ftrl_adam(0.1, **VARIANTS[variant])
  x0, _, objective = parabola(dtype)

  @jax.jit
  def step(params, state):
    grads = jnp.conj(jax.grad(objective)(params))
    cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
    updates, state = jax.lax.cond(
        cond, lambda: tx.update(grads, state, params, unexpected_extra_arg=1),
        lambda: (params, state))
    return optax.apply_updates(params, updates), state

  # The types are fixed when the step is traced (lax.cond refuses branches
  # of other types): traced twice, each step's output fed to the next, as a
  # compiled run would, without compiling.
  params, state = x0, tx.init(x0)
  for _ in range(2):
    params, state = jax.eval_shape(step, params, state)
    assert params.dtype == dtype


@pytest.mark.parametrize("variant", NOT_CONFORMANCE_ROWS)
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_multisteps_gives_zero_updates_between_steps(variant, dtype):
  tx = optax.MultiSteps(fa.ftrl_adam(0.1, **VARIANTS[variant]),
                        every_k_schedule=4)
  params = jnp.array([1.0, 2.0], dtype)
  grads = jax.grad(lambda x: jnp.sum(x**2))(params)
  updates, _ = jax.jit(tx.update)(grads, jax.jit(tx.init)(params), params)
  assert updates.dtype == grads.dtype
  np.testing.assert_array_equal(updates, jnp.zeros_like(grads))


# --------------------------------------------------------------------------
# Complex parameters: every mode, against optax where optax has the mode.
# --------------------------------------------------------------------------


def test_complex_per_coordinate_equals_optax_adam():
  rng = np.random.default_rng(0)
  params = {"z": jnp.zeros(6, jnp.complex64)}
  grads = [{"z": jnp.asarray(rng.normal(size=6) + 1j * rng.normal(size=6),
                             jnp.complex64)} for _ in range(40)]
  hp = [f32(x) for x in (0.05, 0.9, 0.99, 1e-8)]
  outs = []
  for tx in (fa.ftrl_adam(*hp), optax.adam(*hp)):
    state, us = tx.init(params), []
    for g in grads:
      u, state = jax.jit(tx.update)(g, state, params)
      us.append(u["z"])
    outs.append(np.stack(us))
  np.testing.assert_allclose(outs[0], outs[1], rtol=2e-6, atol=1e-9)


@pytest.mark.parametrize("domain", [None, "box", "ball"])
def test_complex_global_second_moment_is_the_real_problem_in_r2n(domain):
  """With one scalar second moment, C^n behaves exactly as R^2n.

  ftrl_adam on complex params with gradients g equals ftrl_adam on the real
  params (Re, Im) with gradients (Re g, Im g): the moments are linear in g and
  sum |g_i|**2, the box clips both parts, the ball bounds sum |x_i|**2.
  """
  kw = dict(second_moment="global", bias_correction=False)
  if domain is not None:
    kw.update(radius=0.05, domain=domain)
  rng = np.random.default_rng(1)
  gs = rng.normal(size=(30, 2, 4)) * rng.uniform(0.1, 10, size=(30, 1, 1))
  tx_c, tx_r = fa.ftrl_adam(0.1, 0.9, 0.81, 0.0, **kw), fa.ftrl_adam(
      0.1, 0.9, 0.81, 0.0, **kw)
  sc, sr = tx_c.init(jnp.zeros(4, jnp.complex64)), tx_r.init(jnp.zeros((2, 4)))
  for g in gs:
    uc, sc = tx_c.update(jnp.asarray(g[0] + 1j * g[1], jnp.complex64), sc)
    ur, sr = tx_r.update(jnp.asarray(g, jnp.float32), sr)
    np.testing.assert_allclose(np.stack([uc.real, uc.imag]), ur, rtol=1e-5,
                               atol=1e-8)
  assert float(sc[0].nu) > 0 and sc[0].nu.dtype == jnp.float32


def test_complex_global_purely_imaginary_gradient():
  """g = i [1, 2]: the update is -lr g / ||g|| (was 0 with Re(sum g**2))."""
  tx = fa.ftrl_adam(0.1, second_moment="global")
  u, state = tx.update(1j * jnp.array([1.0, 2.0], jnp.complex64),
                       tx.init(jnp.zeros(2, jnp.complex64)))
  np.testing.assert_allclose(u, -0.1j * np.array([1, 2]) / np.sqrt(5),
                             rtol=1e-6)
  assert float(state[0].nu) == pytest.approx((1 - f32(0.999)) * 5, rel=1e-6)


def test_complex_box_clips_real_and_imaginary_parts():
  hp = [f32(x) for x in (1.0, 0.9, 0.999, 1e-8)]
  tx = fa.ftrl_adam(*hp, radius=0.3)
  ref = optax.adam(*hp)
  g = jnp.array([2.0 - 0.5j, -1.0 + 3.0j, 0.01j], jnp.complex64)
  params = jnp.zeros(3, jnp.complex64)
  u, _ = tx.update(g, tx.init(params))
  v, _ = ref.update(g, ref.init(params))
  np.testing.assert_allclose(u.real, np.clip(v.real, -0.3, 0.3), rtol=1e-6)
  np.testing.assert_allclose(u.imag, np.clip(v.imag, -0.3, 0.3), rtol=1e-6)


def test_complex_per_coordinate_ball_is_the_weighted_argmin():
  """KKT in R^2n: x_i = xt_i h_i / (h_i + lam), one lam, ||x|| = D."""
  D = 0.1
  tx = fa.ftrl_adam(1.0, 0.9, 0.99, 0.0, radius=D, domain="ball",
                    bias_correction=False)
  rng = np.random.default_rng(2)
  state = tx.init(jnp.zeros(5, jnp.complex64))
  update = jax.jit(tx.update)   # one compiled step for the six, not op by op
  for _ in range(6):
    g = jnp.asarray(rng.normal(size=5) * [1, 10, 0.1, 3, 1]
                    + 1j * rng.normal(size=5), jnp.complex64)
    u, state = update(g, state)
  u = np.asarray(u, np.complex128)
  h = np.sqrt(np.asarray(state[0].nu, np.float64))
  xt = -np.asarray(state[0].mu, np.complex128) / h
  assert np.linalg.norm(u) == pytest.approx(D, rel=1e-5)
  lam = h * (xt / u - 1)                       # real and equal for all i
  np.testing.assert_allclose(lam.imag, 0.0, atol=1e-3 * np.max(lam.real))
  np.testing.assert_allclose(lam.real, np.mean(lam.real), rtol=1e-3)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_complex_converges_in_every_mode(variant):
  kw = dict(VARIANTS[variant])
  tx = fa.ftrl_adam(optax.linear_schedule(0.1, 0.0, 3000), 0.9, 0.99, **kw)
  x0, want, objective = parabola(jnp.complex64)
  step = make_step(tx, objective)
  params, _ = jax.jit(lambda p, s: jax.lax.fori_loop(
      0, 3000, lambda _, c: step(*c), (p, s)))(x0, tx.init(x0))
  np.testing.assert_allclose(params, want, atol=3e-2)
