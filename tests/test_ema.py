"""Specification of ftrl_adam.ema_params / ema_params_of (MATH.md section 5).

The references are literal float64 NumPy formulas, written independently of the
transform: zero start divided by 1 - prod(gamma) ("debias"), copy start with no
division, the ema-pytorch warm-up, every-k subsampling and the closed form of the
Karras power-profile weights.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ftrl_adam as fa

T = 25


def _random_run(seed=0, steps=T, dtype=jnp.float32):
  """Random params/updates sequences over a two-leaf tree (and x0)."""
  rng = np.random.default_rng(seed)
  def tree():
    return {"a": rng.normal(size=(3,)).astype(np.float32),
            "b": rng.normal(size=(2, 2)).astype(np.float32)}
  x0 = tree()
  params_seq = [tree() for _ in range(steps)]
  updates_seq = [tree() for _ in range(steps)]
  cast = lambda t: jax.tree.map(lambda v: jnp.asarray(v, dtype), t)  # noqa: E731
  return cast(x0), [cast(p) for p in params_seq], [cast(u) for u in updates_seq]


def _drive(tx, x0, params_seq, updates_seq):
  """Runs tx.update on each (updates, params); returns the EMA after each step."""
  state = tx.init(x0)
  out = []
  for p, u in zip(params_seq, updates_seq, strict=False):
    u_out, state = tx.update(u, state, p)
    out.append(fa.ema_params_of(state))
    for a, b in zip(jax.tree.leaves(u_out), jax.tree.leaves(u), strict=False):
      np.testing.assert_array_equal(a, b)            # updates pass through
  return out, state


def _gamma_ref(n, m, decay=None, power=None, warmup=None, after=None,
               min_decay=0.0):
  """gamma at optimizer step n, EMA update m (both 1-based)."""
  if power is not None:
    return (1.0 - 1.0 / m) ** (1.0 + power)
  a = 0 if after is None else after
  epoch = n - a - 1
  if warmup is not None:
    if epoch <= 0:
      return 0.0
    p, g = warmup
    return float(np.clip(1.0 - (1.0 + epoch / g) ** (-p), min_decay, decay))
  if after is not None and epoch <= 0:
    return 0.0
  return decay


def _ema_ref(xs, x0, *, decay=None, power=None, warmup=None, debias=True,
             every=1, after=None, min_decay=0.0):
  """Literal MATH.md section 5, float64: zero start / (1 - prod gamma), or copy start.

  The warm-up and ``after`` count optimizer steps t; the power profile counts
  EMA updates m.  gamma = 0 restarts the average (a copy), both starts.
  """
  z = np.zeros_like(x0) if debias else x0.copy()
  prod, m, out = 1.0, 0, []
  for t, x in enumerate(xs, start=1):
    if (t - 1) % every == 0:
      m += 1
      g = _gamma_ref(t, m, decay, power, warmup, after, min_decay)
      z = g * z + (1.0 - g) * x
      prod *= g
    out.append(z / (1.0 - prod) if debias else z.copy())
  return out


def _flat(tree):
  return np.concatenate([np.ravel(np.asarray(v, np.float64))
                         for v in jax.tree.leaves(tree)])


CASES = {
    "zero_start_debiased": dict(decay=0.8),
    "copy_start": dict(decay=0.8, debias=False),
    "warmup_debiased": dict(decay=0.9, warmup=(2 / 3, 1.0)),
    "warmup_copy_start": dict(decay=0.9, warmup=(0.75, 2.0), debias=False),
    "every_3_debiased": dict(decay=0.7, every=3),
    "every_4_copy_start": dict(decay=0.7, every=4, debias=False),
    "every_2_warmup": dict(decay=0.95, warmup=(2 / 3, 1.0), every=2),
    "every_3_warmup_after_4": dict(decay=0.95, warmup=(0.75, 2.0), every=3,
                                   after=4),
    "warmup_min_decay": dict(decay=0.9, warmup=(2 / 3, 1.0), min_decay=0.5),
    "constant_after_3": dict(decay=0.8, after=3),
    "constant_after_0_copy_start": dict(decay=0.8, after=0, debias=False),
    "power_3": dict(power=3.0),
    "power_0_is_mean": dict(power=0.0),
    "power_every_2": dict(power=6.94, every=2),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("source", ["updated", "gradient_point"])
def test_matches_numpy_reference(case, source):
  kw = dict(CASES[case])
  warmup = kw.pop("warmup", None)
  tx_kw = dict(kw)
  if warmup is not None:
    tx_kw.update(warmup_power=warmup[0], warmup_gamma=warmup[1])
  if "after" in tx_kw:
    tx_kw["update_after_step"] = tx_kw.pop("after")
  tx = fa.ema_params(tx_kw.pop("decay", None), source=source, **tx_kw)
  x0, ps, us = _random_run(seed=list(CASES).index(case))  # stable seed
  got, _ = _drive(tx, x0, ps, us)
  if source == "updated":   # the loop's rounding: float32 p + u
    xs = [_flat(jax.tree.map(lambda p, u: np.float32(p) + np.float32(u), p, u))
          for p, u in zip(ps, us, strict=False)]
  else:
    xs = [_flat(p) for p in ps]
  want = _ema_ref(xs, _flat(x0), warmup=warmup, **kw)
  for n, (g, w) in enumerate(zip(got, want, strict=False), start=1):
    np.testing.assert_allclose(_flat(g), w, rtol=2e-5, atol=2e-6,
                               err_msg=f"step {n}")


@pytest.mark.parametrize("power", [0.0, 1.5, 6.94])
def test_power_profile_closed_form_weights(power):
  # prod_{j>i} (1 - 1/j)^(1+p) telescopes: weight of x_i is
  # (i/n)^(1+p) - ((i-1)/n)^(1+p), a discretised t^p profile summing to one.
  x0, ps, us = _random_run(seed=3, steps=12)
  got, _ = _drive(fa.ema_params(power=power, source="gradient_point"), x0, ps, us)
  xs = np.stack([_flat(p) for p in ps])
  for n in range(1, len(ps) + 1):
    i = np.arange(1, n + 1)
    c = (i / n) ** (1 + power) - ((i - 1) / n) ** (1 + power)
    np.testing.assert_allclose(_flat(got[n - 1]), c @ xs[:n], rtol=2e-5,
                               atol=2e-6)


def _constant_loop(tx, c, steps=40):
  """Loop starting at zeros and holding the constant c from step 1 on."""
  params = {"w": jnp.zeros_like(c)}
  state = tx.init(params)
  out = []
  for _ in range(steps):
    updates = {"w": c - params["w"]}
    _, state = tx.update(updates, state, params)
    params = optax.apply_updates(params, updates)
    out.append(fa.ema_params_of(state)["w"])
  return out


@pytest.mark.parametrize("kw", [
    dict(decay=0.0), dict(decay=0.5), dict(decay=0.9), dict(decay=0.9999),
    dict(decay=0.99, warmup_power=2 / 3), dict(decay=0.9, every=3),
    dict(power=6.94)], ids=str)
def test_debiased_ema_of_constant_params_is_exact_from_step_1(kw):
  c = jnp.array([1.5, -3.25, 1e-3, 7e4], jnp.float32)
  for n, e in enumerate(_constant_loop(fa.ema_params(**kw), c), start=1):
    np.testing.assert_array_equal(e, c, err_msg=f"step {n}")


def test_copy_start_is_not_debiased():
  # Copy start keeps gamma^n of x_0 = 0; dividing it by 1 - gamma^n too (the
  # forbidden combination) would give c at step 1 and overshoot after.
  c = jnp.array([2.0], jnp.float32)
  got = _constant_loop(fa.ema_params(0.5, debias=False), c, steps=3)
  np.testing.assert_allclose([float(g[0]) for g in got], [1.0, 1.5, 1.75])


def test_decay_one_freezes_at_initial_params():
  params = {"w": jnp.array([1.0, 2.0])}
  for debias in (True, False):
    tx = fa.ema_params(1.0, debias=debias)
    state = tx.init(params)
    for _ in range(3):
      _, state = tx.update({"w": jnp.ones(2)}, state, params)
    np.testing.assert_array_equal(fa.ema_params_of(state)["w"], params["w"])


def _scan_run(decay, steps=30):
  tx = fa.ema_params(decay, warmup_power=0.75)
  rng = np.random.default_rng(1)
  ps = jnp.asarray(rng.normal(size=(steps, 5)), jnp.float32)
  us = jnp.asarray(rng.normal(size=(steps, 5)), jnp.float32)

  def body(state, pu):
    p, u = pu
    _, state = tx.update(u, state, p)
    return state, None

  state, _ = jax.lax.scan(body, tx.init(ps[0]), (ps, us))
  return fa.ema_params_of(state)


def test_vmap_over_decay_equals_scalar_runs():
  decays = jnp.array([0.0, 0.5, 0.9, 0.99, 1.0], jnp.float32)
  batched = jax.jit(jax.vmap(_scan_run))(decays)
  for i, d in enumerate(decays):
    single = jax.jit(_scan_run)(d)
    np.testing.assert_array_equal(batched[i], single)   # bit for bit
  assert not np.allclose(batched[1], batched[3])


def test_bf16_params_keep_float32_ema_and_stable_state_dtypes():
  x0, ps, us = _random_run(seed=7, steps=6, dtype=jnp.bfloat16)
  tx = fa.ema_params(0.9)
  state0 = tx.init(x0)
  got, state = _drive(tx, x0, ps, us)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(got[-1]))
  assert (jax.tree.map(lambda v: v.dtype, state0)
          == jax.tree.map(lambda v: v.dtype, state))
  assert state.count.dtype == jnp.int32 and int(state.count) == 6
  # The float32 EMA averages the bf16 parameters the loop holds.
  xs = [_flat(jax.tree.map(lambda p, u: (p + u).astype(jnp.bfloat16), p, u))
        for p, u in zip(ps, us, strict=False)]
  np.testing.assert_allclose(_flat(got[-1]), _ema_ref(xs, _flat(x0), decay=0.9)[-1],
                             rtol=2e-5, atol=2e-6)
  low = fa.ema_params(0.9, ema_dtype=jnp.bfloat16).init(x0)
  assert all(v.dtype == jnp.bfloat16 for v in jax.tree.leaves(low.ema))


def test_bf16_params_under_jit_average_the_rounded_params():
  """Under jit XLA may keep params + updates unrounded; the EMA must not."""
  rng = np.random.default_rng(11)
  params = jnp.asarray(rng.normal(size=512), jnp.bfloat16)
  grads = jnp.asarray(rng.normal(size=(30, 512)), jnp.bfloat16)
  tx = optax.chain(optax.sgd(1e-2), fa.ema_params(0.9))

  @jax.jit
  def step(carry, g):
    params, state = carry
    updates, state = tx.update(g, state, params)
    unrounded = (params.astype(jnp.float32)
                 + updates.astype(jnp.float32))    # what XLA may keep
    params = optax.apply_updates(params, updates)
    return (params, state), (params, unrounded)

  (_, state), (held, unrounded) = jax.lax.scan(step, (params, tx.init(params)),
                                               grads)
  held = np.asarray(held, np.float64)
  want = _ema_ref(list(held), np.zeros(512), decay=0.9)[-1]
  got = np.asarray(fa.ema_params_of(state), np.float64)
  np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)
  # The difference is real: the EMA of the unrounded sums is far off.
  off = _ema_ref(list(np.asarray(unrounded, np.float64)), np.zeros(512),
                 decay=0.9)[-1]
  assert np.max(np.abs(off - want)) > 1e-3


def test_init_on_shape_dtype_structs_and_python_scalars():
  params = {"w": jnp.ones((3, 2), jnp.bfloat16), "b": jnp.zeros(2), "n": None}
  abstract = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype),
                          params)
  for kw in (dict(decay=0.9), dict(power=3.0), dict(decay=0.9, debias=False)):
    tx = fa.ema_params(**kw)
    concrete, shapes = tx.init(params), tx.init(abstract)
    assert jax.tree.structure(concrete) == jax.tree.structure(shapes)
    assert (jax.tree.map(lambda x: (x.shape, x.dtype), concrete)
            == jax.tree.map(lambda x: (x.shape, x.dtype), shapes))
    assert jax.eval_shape(tx.init, abstract) == jax.eval_shape(tx.init, params)
  # Python-scalar leaves (optax accepts them): a float32 EMA of them.
  tx = optax.chain(optax.sgd(0.5), fa.ema_params(0.5))
  scalars = {"a": 1, "b": 2.0}
  state = tx.init(scalars)
  assert fa.ema_params_of(state) == {"a": 1.0, "b": 2.0}
  _, state = tx.update({"a": jnp.float32(2.0), "b": jnp.float32(2.0)}, state,
                       {"a": 1.0, "b": 2.0})
  np.testing.assert_allclose(fa.ema_params_of(state)["b"], 1.0)


def test_warmup_and_update_after_step_count_optimizer_steps():
  """gamma at step n is the library formula in n, whatever every is."""
  c = jnp.arange(1.0, 41.0)                        # x_n = n (a scalar param)
  for every, after in ((1, None), (3, None), (2, 5), (4, 0)):
    tx = fa.ema_params(0.99, warmup_power=1.0, update_after_step=after,
                       every=every)
    state, params, got = tx.init(jnp.zeros(())), jnp.zeros(()), []
    for n in range(1, 41):
      _, state = tx.update(c[n - 1] - params, state, params)
      params = c[n - 1]
      got.append(float(fa.ema_params_of(state)))
    a = 0 if after is None else after
    z, last_update = 0.0, None
    for n in range(1, 41):
      if (n - 1) % every == 0:
        e = n - a - 1
        gamma = 0.0 if e <= 0 else min(1 - (1 + e) ** -1.0, 0.99)
        z = gamma * z + (1 - gamma) * n
        last_update = n
      assert got[n - 1] == pytest.approx(z, rel=1e-6), (every, after, n)
    assert last_update is not None


# --------------------------------------------------------------------------
# ema_params_of through wrappers.
# --------------------------------------------------------------------------

GRADS = [{"w": jnp.array([0.3, -1.0]), "b": jnp.array(2.0)},
         {"w": jnp.array([-0.7, 0.2]), "b": jnp.array(-1.0)},
         {"w": jnp.array([1.1, 0.4]), "b": jnp.array(0.5)},
         {"w": jnp.array([0.0, -0.3]), "b": jnp.array(1.5)}]
PARAMS0 = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}


def _train(tx, grads=GRADS):
  params, state = PARAMS0, tx.init(PARAMS0)
  for g in grads:
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def _reference_ema(decay=0.9, grads=GRADS):
  _, state = _train(optax.chain(optax.sgd(0.1), fa.ema_params(decay)), grads)
  return state[1].ema


def _assert_tree_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=False):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("wrap", ["chain", "named_chain", "inject", "nested"])
def test_ema_params_of_through_wrappers(wrap):
  sgd, ema = optax.sgd(0.1), fa.ema_params(0.9)
  tx = {
      "chain": optax.chain(sgd, ema),
      "named_chain": optax.named_chain(("sgd", sgd), ("ema", ema)),
      "inject": optax.chain(
          sgd, optax.inject_hyperparams(fa.ema_params)(decay=0.9)),
      "nested": optax.chain(optax.chain(optax.identity(), sgd),
                            optax.chain(optax.identity(), ema)),
  }[wrap]
  _, state = _train(tx)
  _assert_tree_equal(fa.ema_params_of(state), _reference_ema())


def test_ema_params_of_through_masked():
  mask = {"w": True, "b": False}
  tx = optax.chain(optax.sgd(0.1), optax.masked(fa.ema_params(0.9), mask))
  _, state = _train(tx)
  got = fa.ema_params_of(state)
  assert isinstance(got["b"], optax.MaskedNode)
  np.testing.assert_array_equal(got["w"], _reference_ema()["w"])


def test_ema_params_of_through_multisteps():
  tx = optax.MultiSteps(optax.chain(optax.sgd(0.1), fa.ema_params(0.9)),
                        every_k_schedule=2)
  _, state = _train(tx)
  # Two real steps, each with the mean of two gradients.
  means = [jax.tree.map(lambda a, b: (a + b) / 2, GRADS[0], GRADS[1]),
           jax.tree.map(lambda a, b: (a + b) / 2, GRADS[2], GRADS[3])]
  ref = _reference_ema(grads=means)
  got = fa.ema_params_of(state)
  for k in ref:
    np.testing.assert_allclose(got[k], ref[k], rtol=1e-6)


def test_several_emas_need_a_name():
  tx = optax.chain(optax.sgd(0.1), fa.ema_params(0.5, name="fast"),
                   fa.ema_params(0.9, name="slow"))
  _, state = _train(tx)
  _assert_tree_equal(fa.ema_params_of(state, name="slow"), _reference_ema(0.9))
  _assert_tree_equal(fa.ema_params_of(state, name="fast"), _reference_ema(0.5))
  with pytest.raises(ValueError, match="Found 2 EmaParamsState.*name="):
    fa.ema_params_of(state)
  with pytest.raises(ValueError, match="named 'medium'.*'fast', 'slow'"):
    fa.ema_params_of(state, name="medium")
  # named_chain keys are names too.
  tx = optax.named_chain(("sgd", optax.sgd(0.1)), ("e1", fa.ema_params(0.5)),
                         ("e2", fa.ema_params(0.9)))
  _, state = _train(tx)
  _assert_tree_equal(fa.ema_params_of(state, name="e2"), _reference_ema(0.9))


def test_ema_params_of_without_ema_raises():
  _, state = _train(optax.adam(0.1))
  with pytest.raises(ValueError, match="No EmaParamsState.*ema_params"):
    fa.ema_params_of(state)
  with pytest.raises(ValueError, match="`name`"):
    fa.ema_params_of(state, name=3)


def test_state_dict_form_is_found():
  # What an Orbax restore without a target (or nnx.state) gives: dicts.
  _, state = _train(optax.chain(optax.sgd(0.1), fa.ema_params(0.9)))
  as_dicts = [dict(), {"count": state[1].count, "weight_sum": state[1].weight_sum,
                       "ema": state[1].ema}]
  _assert_tree_equal(fa.ema_params_of(as_dicts), _reference_ema())


# --------------------------------------------------------------------------
# Bad input.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("decay", [-0.1, 1.0001, 2.0, float("nan"), float("inf")])
def test_decay_outside_unit_interval_raises(decay):
  with pytest.raises(ValueError, match=r"`decay` must lie in \[0, 1\]"):
    fa.ema_params(decay)


@pytest.mark.parametrize("every", [0, -3, 1.5, True, "2"])
def test_every_below_one_raises(every):
  with pytest.raises(ValueError, match="`every` must be an integer >= 1"):
    fa.ema_params(0.9, every=every)


def test_update_without_params_raises():
  tx = fa.ema_params(0.9)
  state = tx.init({"w": jnp.zeros(2)})
  with pytest.raises(ValueError, match="`params`"):
    tx.update({"w": jnp.zeros(2)}, state)


@pytest.mark.parametrize("kwargs, match", [
    (dict(decay=0.9, min_decay=0.5), "`min_decay` bounds the warmed-up decay"),
    (dict(decay=0.9, warmup_power=0.5, min_decay=0.95),
     r"`min_decay` must lie in \[0, decay\] = \[0, 0.9\]"),
    (dict(decay=0.9, warmup_power=0.5, min_decay=-0.1), "`min_decay` must lie"),
    (dict(power=1.0, update_after_step=10), "`update_after_step` cannot"),
    (dict(decay=0.9, update_after_step=-1),
     "`update_after_step` must be an integer >= 0"),
    (dict(decay=0.9, update_after_step=2.5),
     "`update_after_step` must be an integer >= 0"),
    (dict(), "exactly one of `decay`"),
    (dict(decay=0.9, power=1.0), "exactly one of `decay`"),
    (dict(power=-1.0), "`power` must lie in"),
    (dict(power=1.0, warmup_power=0.5), "`warmup_power` cannot"),
    (dict(decay=0.9, warmup_power=0.0), "`warmup_power` must lie in"),
    (dict(decay=0.9, warmup_power=0.5, warmup_gamma=-1.0), "`warmup_gamma`"),
    (dict(decay=0.9, source="ema"), "`source` must be one of"),
    (dict(decay=0.9, debias=1), "`debias`"),
    (dict(decay=0.9, name=7), "`name`"),
])
def test_other_bad_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    fa.ema_params(**kwargs)


def test_power_from_sigma_rel():
  # Karras et al. (2024): sigma_rel = 0.05 and 0.10 <-> gamma = 16.97 and 6.94.
  assert fa.power_from_sigma_rel(0.05) == pytest.approx(16.97, abs=5e-3)
  assert fa.power_from_sigma_rel(0.10) == pytest.approx(6.94, abs=5e-3)
  for sigma in (0.01, 0.2, 12 ** -0.5):
    gp = fa.power_from_sigma_rel(sigma)
    back = np.sqrt((gp + 1) / ((gp + 2) ** 2 * (gp + 3)))
    assert back == pytest.approx(sigma, rel=1e-9)
  with pytest.raises(ValueError, match="`sigma_rel`"):
    fa.power_from_sigma_rel(0.3)


def test_power_profile_weight_is_accurate_in_long_runs():
  """1 - gamma of the power EMA to float32 precision at m up to 1e6.

  Reference: float64 -expm1((1 + p) log1p(-1/m)).  Computing
  1 - (1 - 1/m)**(1 + p) in float32 was 1.3% off at m = 1e6, p = 6.94.
  """
  p = 6.94
  tx = fa.ema_params(power=p, debias=False)
  params = {"w": jnp.zeros(1)}
  for m in (10_000, 100_000, 1_000_000):
    state = tx.init(params)
    state = state._replace(count=jnp.asarray(m - 1, state.count.dtype))
    _, new = tx.update({"w": jnp.ones(1)}, state, params)
    # x = 1 from ema = 0: the new ema is exactly the weight 1 - gamma_m
    got = float(fa.ema_params_of(new)["w"][0])
    want = -np.expm1((1 + p) * np.log1p(-1.0 / m))
    assert abs(got / want - 1) < 1e-5, (m, got, want)
