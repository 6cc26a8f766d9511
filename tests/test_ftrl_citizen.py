"""The optax good-citizen checks of ftrl_adam that tests/test_conformance.py
(the one matrix of every transform) does not make: its other modes, injected
hyperparameters (bit for bit over 30 jitted steps, changed mid-run, given in
bfloat16), mu/nu dtypes, masked and partitioned values, convergence."""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ftrl_adam as fa
from helpers import make_params, random_grads, run_updates

VARIANTS = {
    "plain": dict(),
    "box": dict(radius=0.01),
    "ball": dict(radius=0.01, domain="ball"),
    "ball_global": dict(radius=0.01, domain="ball", second_moment="global"),
    "ftrl_eps": dict(bias_correction=False, eps_mode="ftrl"),
}


# Unclipped, box and ball are rows of tests/test_conformance.py, which checks
# for them what the tests of this fixture check (extra arguments and no
# recompilation, dtypes, abstract init, lax.cond): here, the other modes.
@pytest.fixture(params=["ball_global", "ftrl_eps"])
def tx(request):
  return fa.ftrl_adam(0.05, 0.9, 0.99, 1e-6, **VARIANTS[request.param])


def test_extra_args_ignored_and_no_recompilation(tx, params):
  traces = []

  @jax.jit
  def step(g, state, p):
    traces.append(1)
    return tx.update(g, state, p, some_unused_arg=jnp.ones(3), loss=1.0)

  state = tx.init(params)
  for seed in range(3):
    u, state = step(random_grads(jax.random.key(seed), params), state, params)
  assert len(traces) == 1
  assert jax.tree.structure(state) == jax.tree.structure(tx.init(params))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_inject_hyperparams_gives_identical_result(params, variant):
  # jnp arrays (not NumPy scalars, which optax keeps static) are injected.
  kw = dict(learning_rate=jnp.float32(0.05), b1=jnp.float32(0.9),
            b2=jnp.float32(0.99), eps=jnp.float32(1e-6))
  for extra in (VARIANTS[variant],):
    direct = fa.ftrl_adam(**kw, **extra)
    injected = optax.inject_hyperparams(fa.ftrl_adam, hyperparam_dtype=jnp.float32)(
        **kw, **extra)
    hps = injected.init(params).hyperparams
    assert set(kw) <= set(hps)  # really injected into the state
    if "radius" in extra:
      assert "radius" in hps
    _, a = run_updates(direct, params, 30)
    _, b = run_updates(injected, params, 30)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_injected_hyperparameters_can_change_mid_run(params):
  tx = optax.inject_hyperparams(fa.ftrl_adam, hyperparam_dtype=jnp.float32)(
      learning_rate=0.1, radius=0.05)
  state = tx.init(params)
  g = jax.tree.map(jnp.ones_like, params)
  u, state = tx.update(g, state, params)
  assert float(jnp.max(jnp.abs(u["scalar"]))) == pytest.approx(0.05)
  state.hyperparams["radius"] = jnp.float32(0.01)
  u, state = tx.update(g, state, params)
  assert float(jnp.max(jnp.abs(u["scalar"]))) == pytest.approx(0.01)


def test_bfloat16_hyperparameters_are_accepted_and_computed_in_float32():
  params = {"w": jnp.zeros(3, jnp.bfloat16)}
  tx = optax.inject_hyperparams(fa.ftrl_adam)(learning_rate=0.1, b1=0.9, b2=0.99)
  state = tx.init(params)  # optax injects bf16 values for bf16 params
  u, state = tx.update({"w": jnp.ones(3, jnp.bfloat16)}, state, params)
  assert u["w"].dtype == jnp.bfloat16 and np.isfinite(np.asarray(u["w"], np.float32)).all()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtypes_preserved(tx, dtype):
  params = make_params(dtype=dtype)
  state0 = tx.init(params)
  state, us = run_updates(tx, params, 5)
  for u, p in zip(jax.tree.leaves(us), jax.tree.leaves(params), strict=False):
    assert u.dtype == p.dtype
  assert jax.tree.map(lambda x: x.dtype, state) == jax.tree.map(
      lambda x: x.dtype, state0)
  # default state is never below float32 (bf16 would round b2 = 0.999 to 1)
  assert all(x.dtype in (jnp.float32, jnp.int32) for x in jax.tree.leaves(state0))


def test_mu_nu_dtype_options(params):
  tx = fa.ftrl_adam(0.1, mu_dtype=jnp.bfloat16, nu_dtype=jnp.float32)
  state, _ = run_updates(tx, params, 3)
  assert state[0].mu["dense"]["w"].dtype == jnp.bfloat16
  assert state[0].nu["dense"]["w"].dtype == jnp.float32


def test_init_on_shape_dtype_struct(tx, params):
  abstract = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
  state = tx.init(abstract)
  concrete = tx.init(params)
  assert jax.tree.structure(state) == jax.tree.structure(concrete)
  assert jax.eval_shape(tx.init, params) == jax.eval_shape(tx.init, abstract)


def test_works_under_lax_cond(tx, params):
  state = tx.init(params)
  g = random_grads(jax.random.key(0), params)

  @jax.jit
  def maybe_step(pred, state):
    return jax.lax.cond(
        pred, lambda s: tx.update(g, s, params),
        lambda s: (jax.tree.map(jnp.zeros_like, g), s), state)

  u_yes, s_yes = maybe_step(True, state)
  u_no, s_no = maybe_step(False, state)
  u_ref, s_ref = jax.jit(tx.update)(g, state, params)
  jax.tree.map(np.testing.assert_array_equal, u_yes, u_ref)
  assert int(s_no[0].count) == 0 and int(s_yes[0].count) == 1


def test_masked_and_partition():
  params = {"a": jnp.ones(3), "b": jnp.ones(2), "c": None}
  g = {"a": jnp.ones(3), "b": jnp.ones(2), "c": None}
  masked = optax.masked(fa.ftrl_adam(0.1, radius=0.05),
                        {"a": True, "b": False, "c": False})
  u, _ = masked.update(g, masked.init(params), params)
  np.testing.assert_allclose(u["a"], -0.05)  # clipped step on the masked-in leaf
  np.testing.assert_array_equal(u["b"], g["b"])  # passed through
  part = optax.partition(
      {"fast": fa.ftrl_adam(0.1), "slow": fa.ftrl_adam(0.01)},
      {"a": "fast", "b": "slow", "c": "slow"})
  u, _ = part.update(g, part.init(params), params)
  np.testing.assert_allclose(u["a"], -0.1, rtol=1e-6)
  np.testing.assert_allclose(u["b"], -0.01, rtol=1e-6)
  assert u["c"] is None


def _minimise(tx, f, x0, steps):
  @jax.jit
  def go(x):
    def body(carry, _):
      x, s = carry
      u, s = tx.update(jax.grad(f)(x), s, x)
      return (optax.apply_updates(x, u), s), None
    return jax.lax.scan(body, (x, tx.init(x)), None, length=steps)[0][0]
  return go(x0)


@pytest.mark.parametrize("extra", list(VARIANTS.values()))
def test_converges_on_parabola(extra):
  target = jnp.array([1.0, -2.0, 3.0])
  f = lambda x: jnp.sum((x - target) ** 2)  # noqa: E731
  kw = dict(extra)
  if "radius" in kw:
    kw["radius"] = 0.1
  x = _minimise(fa.ftrl_adam(0.1, 0.9, 0.99, 1e-8, **kw), f, jnp.zeros(3), 2000)
  np.testing.assert_allclose(x, target, atol=2e-2)


def test_converges_on_rosenbrock():
  f = lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2  # noqa: E731
  x = _minimise(fa.ftrl_adam(optax.cosine_decay_schedule(0.02, 5000, 0.01),
                             0.9, 0.999), f, jnp.array([-1.2, 1.0]), 5000)
  np.testing.assert_allclose(x, [1.0, 1.0], atol=2e-2)


def test_both_regimes_are_the_same_learner():
  """beta = b1/sqrt(b2) > 1 is allowed and converges too (Nguyen's second regime)."""
  f = lambda x: jnp.sum((x - 1.0) ** 2)  # noqa: E731
  lr = optax.linear_schedule(0.05, 0.0, 3000)
  for b1, b2 in [(0.9, 0.999), (0.99, 0.5), (0.95, 0.81)]:
    assert (b1 / np.sqrt(b2) > 1) == (b2 < 0.9)
    x = _minimise(fa.ftrl_adam(lr, b1, b2, radius=0.05), f, jnp.zeros(2), 3000)
    np.testing.assert_allclose(x, 1.0, atol=2e-2)
