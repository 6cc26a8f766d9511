"""Non-finite in, non-finite out (DESIGN.md), as in optax.adam.

A NaN or inf gradient gives a non-finite update for every coordinate it
reaches: that coordinate for the per-coordinate second moment (unclipped or
box), every coordinate for the global second moment and for the ball (whose
solution couples them).  The moments stay poisoned, so no later step returns a
finite update over them.  The 0/0 := 0 rule for coordinates that never saw a
non-zero gradient is unchanged, and ``optax.apply_if_finite`` skips such steps.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ftrl_adam as fa

DOMAINS = {"none": dict(), "box": dict(radius=0.05),
           "ball": dict(radius=0.05, domain="ball")}
MOMENTS = ["per_coordinate", "global"]
CONVENTIONS = {"adam": dict(),
               "uncorrected": dict(bias_correction=False, eps=0.0),
               "ftrl_eps": dict(bias_correction=False, eps_mode="ftrl"),
               "nesterov_eps_root": dict(nesterov=True, eps_root=1e-8)}
BAD = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}


def _params():
  return {"w": jnp.zeros((2, 3)), "b": jnp.zeros(4), "frozen": None}


def _grads(rng, bad=None):
  g = {"w": jnp.asarray(rng.normal(size=(2, 3)), jnp.float32),
       "b": jnp.asarray(rng.normal(size=4), jnp.float32), "frozen": None}
  if bad is not None:
    g["w"] = g["w"].at[1, 2].set(bad)
  return g


def _finite(u):
  return {k: np.isfinite(np.asarray(v)) for k, v in u.items() if v is not None}


@functools.cache
def _jitted(domain, second_moment, convention):
  """(transform, its jitted update): one compiled update for NaN and inf."""
  tx = fa.ftrl_adam(0.1, second_moment=second_moment,
                    **DOMAINS[domain], **CONVENTIONS[convention])
  return tx, jax.jit(tx.update)


@pytest.mark.parametrize("convention", list(CONVENTIONS))
@pytest.mark.parametrize("second_moment", MOMENTS)
@pytest.mark.parametrize("domain", list(DOMAINS))
@pytest.mark.parametrize("bad", ["nan", "inf"])   # -inf: the tests below
def test_bad_gradient_gives_non_finite_updates_where_it_reaches(
    domain, second_moment, convention, bad):
  tx, update = _jitted(domain, second_moment, convention)
  rng = np.random.default_rng(0)
  params = _params()
  state = tx.init(params)
  _, state = update(_grads(rng), state, params)        # a healthy first step
  coupled = second_moment == "global" or domain == "ball"
  for step in range(3):                  # the bad step, then healthy ones
    u, state = update(_grads(rng, BAD[bad] if step == 0 else None), state,
                      params)
    finite = _finite(u)
    assert u["frozen"] is None
    if coupled:
      assert not finite["w"].any() and not finite["b"].any(), step
    else:
      assert not finite["w"][1, 2], step
      assert finite["w"].sum() == 5 and finite["b"].all(), step


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("second_moment", MOMENTS)
def test_scale_by_ftrl_adam_is_loud_too(bad, second_moment):
  tx = fa.scale_by_ftrl_adam(second_moment=second_moment)
  g = jnp.array([1.0, BAD[bad], -2.0])
  u, state = tx.update(g, tx.init(jnp.zeros(3)))
  u2, _ = tx.update(jnp.ones(3), state)
  for out in (u, u2):
    finite = np.isfinite(np.asarray(out))
    want = [False, False, False] if second_moment == "global" else [
        True, False, True]
    np.testing.assert_array_equal(finite, want)


def test_same_non_finite_pattern_as_optax_adam():
  params = _params()
  hp = [np.float32(x) for x in (0.1, 0.9, 0.999, 1e-8)]
  pattern = []
  for tx in (fa.ftrl_adam(*hp), optax.adam(*hp)):
    state, out = tx.init(params), []
    for bad in (None, np.nan, None, -np.inf, None):
      u, state = tx.update(_grads(np.random.default_rng(2), bad), state,
                           params)
      out.append(_finite(u))
    pattern.append(out)
  for ours, theirs in zip(*pattern, strict=True):
    for k in ours:
      np.testing.assert_array_equal(ours[k], theirs[k])


def test_overflowed_second_moment_is_loud():
  """|g| > 1.8e19 overflows g**2 to inf: NaN, not a coordinate frozen at 0.

  optax.adam returns 0 for that coordinate from then on, for ever; this is
  one of the documented differences.
  """
  tx = fa.ftrl_adam(0.1)
  u, state = tx.update(jnp.array([1e20, 1.0]), tx.init(jnp.zeros(2)))
  assert np.isnan(float(u[0])) and np.isfinite(float(u[1]))
  ref = optax.adam(0.1)
  v, _ = ref.update(jnp.array([1e20, 1.0]), ref.init(jnp.zeros(2)))
  assert float(v[0]) == 0.0          # optax: silently frozen


@pytest.mark.parametrize("extra", [dict(), dict(radius=0.1),
                                   dict(radius=0.1, domain="ball"),
                                   dict(second_moment="global")])
def test_zero_gradients_still_give_zero_with_zero_eps(extra):
  tx = fa.ftrl_adam(0.1, 0.9, 0.99, 0.0, **extra)
  state = tx.init(jnp.zeros(3))
  for g in ([0.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, -1.0, 0.0]):
    u, state = tx.update(jnp.array(g), state)
    assert np.isfinite(np.asarray(u)).all()
    assert float(u[0]) == 0.0 and float(u[2]) == 0.0


@pytest.mark.parametrize("bad", list(BAD))
def test_clips_are_loud(bad):
  x = {"a": jnp.array([0.5, BAD[bad], -3.0]), "b": jnp.array([1.0])}
  for clip, all_bad in ((fa.clip_box(1.0), False), (fa.clip_ball(1.0), True)):
    u, _ = clip.update(x, clip.init(None))
    finite = np.isfinite(np.asarray(u["a"]))
    np.testing.assert_array_equal(finite, [not all_bad, False, not all_bad])
    assert bool(np.isfinite(np.asarray(u["b"])).all()) == (not all_bad)


def test_recipe_and_ema_are_loud():
  tx = optax.chain(fa.ahn_cutkosky(0.9, 0.1, key=jax.random.key(0)))
  params = jnp.zeros(3)
  state = tx.init(params)
  u, state = tx.update(jnp.array([1.0, np.nan, 0.0]), state, params)
  u, state = tx.update(jnp.array([1.0, 1.0, 1.0]), state, params)
  assert not np.isfinite(np.asarray(u)).any()
  assert not np.isfinite(np.asarray(fa.nonconvex_iterate(state))).any()


@pytest.mark.parametrize("extra", [dict(), dict(radius=0.1),
                                   dict(second_moment="global"),
                                   dict(radius=0.1, domain="ball")])
def test_apply_if_finite_skips_one_nan_step_then_converges(extra):
  target = jnp.array([1.0, -2.0, 3.0])
  loss = lambda x: jnp.sum((x - target) ** 2)  # noqa: E731

  def train(tx, steps):
    def body(t, carry):
      x, state = carry
      g = jax.grad(loss)(x)
      g = jnp.where(t == 10, g.at[1].set(jnp.nan), g)   # one poisoned step
      u, state = tx.update(g, state, x)
      return optax.apply_updates(x, u), state
    x0 = jnp.zeros(3)
    return jax.jit(lambda x, s: jax.lax.fori_loop(0, steps, body, (x, s)))(
        x0, tx.init(x0))

  x, state = train(optax.apply_if_finite(
      fa.ftrl_adam(0.05, 0.9, 0.99, **extra), max_consecutive_errors=3), 1500)
  assert int(state.total_notfinite) == 1
  np.testing.assert_allclose(x, target, atol=2e-2)
  # Without the wrapper the NaN is not hidden: the run is visibly broken.
  x, _ = train(fa.ftrl_adam(0.05, 0.9, 0.99, **extra), 50)
  assert np.isnan(np.asarray(x)).any()
