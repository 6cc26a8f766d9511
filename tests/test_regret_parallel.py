"""Specification of the time-parallel path (``method="parallel"``).

For oblivious adversaries the moments and every running sum are linear
recurrences computed with associative scans; the plays still come from the
transform's own ``update``.  The parallel game must equal the sequential one
to float32 rounding, and must not contain a sequential loop over t.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ftrl_adam as fa
from ftrl_adam import regret

# (heavy_tailed is left out only because its Student-t sampler, a rejection
# loop, is slow to compile; gradient sizes vary through G instead.)
OBLIVIOUS = [regret.gaussian(1.0), regret.rademacher(1.0),
             regret.sparse(1.0, 0.3), regret.alternating(1.0),
             regret.switch(1.0, 0.9, 0.9)]


def oblivious_mixture():
  def fn(p, t, key, d):
    branches = [lambda a=a: a.gradient(t, key, d) for a in OBLIVIOUS]
    return p["G"] * jax.lax.switch(p["which"], branches)
  return regret.Adversary(kind="oblivious", fn=fn, name="mixture",
                          params={"which": jnp.int32(0), "G": jnp.float32(1)})


FIELDS = ("regret_box", "regret_ball", "regret_u", "max_regret_box",
          "max_regret_ball", "loss", "bound", "bound_u", "bound_d4")


def assert_games_close(s, p, rtol=2e-5):
  """Equal to float32 rounding, relative to the size of the summed terms."""
  for f in FIELDS:
    a, b = np.asarray(getattr(s, f), np.float64), np.asarray(getattr(p, f),
                                                             np.float64)
    scale = np.abs(np.asarray(s.loss)) + np.abs(np.asarray(s.bound)) + 1.0
    np.testing.assert_array_less(np.abs(a - b), rtol * scale + 1e-6,
                                 err_msg=f)
  for a, b in zip(jax.tree.leaves(s.streams), jax.tree.leaves(p.streams), strict=False):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-6)
  np.testing.assert_array_equal(s.first_nonfinite_round,
                                p.first_nonfinite_round)
  np.testing.assert_allclose(s.trajectory.grads, p.trajectory.grads, rtol=0)
  np.testing.assert_allclose(s.trajectory.plays, p.trajectory.plays,
                             rtol=rtol, atol=1e-5)
  # iterates are running sums of plays: rounding grows with sum |Delta|
  walk = np.cumsum(np.abs(np.asarray(s.trajectory.plays)), axis=-2)
  np.testing.assert_array_less(
      np.abs(np.asarray(s.trajectory.iterates) - p.trajectory.iterates),
      rtol * walk + 1e-5)


@pytest.mark.parametrize("domain", ["box", "ball"])
def test_parallel_equals_sequential(domain):
  n = 12
  rng = np.random.default_rng(0)
  b1 = np.float32(1 - 10 ** rng.uniform(-3, np.log10(0.5), n))
  b2 = np.float32(1 - 10 ** rng.uniform(-4, np.log10(0.5), n))
  b1[:2], b2[:2] = [0.999, 0.5], [0.5, 0.9999]      # both regimes
  which = np.int32(np.arange(n) % len(OBLIVIOUS))
  G = np.float32(10 ** rng.uniform(-1, 1, n))
  horizon = np.int32(rng.integers(100, 257, n))
  keys = jax.random.split(jax.random.key(1), n)
  mix = oblivious_mixture()

  def run(method):
    def one(b1, b2, which, G, h, key):
      adv = regret.Adversary(kind="oblivious", fn=mix.fn, name="mixture",
                             params={"which": which, "G": G})
      return regret.game(b1, b2, radius=0.7, T=256, d=4, adversary=adv,
                         key=key, domain=domain, u=0.3, horizon=h,
                         record=True, method=method)
    return jax.jit(jax.vmap(one))(b1, b2, which, G, horizon, keys)

  assert_games_close(run("sequential"), run("parallel"))


def test_parallel_with_a_general_ftrl_adam_chain():
  """Bias correction, the FTRL eps and a learning-rate schedule, via play()."""
  b1, b2 = 0.9, 0.95
  tx = fa.ftrl_adam(optax.linear_schedule(0.3, 0.01, 100), b1, b2, 1e-3,
                    radius=0.2, eps_mode="ftrl")
  kw = dict(T=150, d=3, key=jax.random.key(2), radius=0.2,
            theory=regret.Theory(b1, b2, 1.0), record=True)
  s = regret.play(tx, regret.sparse(2.0, 0.5), method="sequential", **kw)
  p = regret.play(tx, regret.sparse(2.0, 0.5), method="parallel", **kw)
  assert_games_close(s, p)
  assert np.any(np.asarray(s.trajectory.plays) != 0)


def test_parallel_path_has_no_loop_over_rounds():
  """O(log T) depth: no scan/while over t in the parallel program."""
  def jaxpr(method):
    return str(jax.make_jaxpr(lambda key: regret.game(
        0.9, 0.99, radius=1.0, T=64, d=2, adversary=regret.gaussian(),
        key=key, method=method))(jax.random.key(0)))
  assert "scan" in jaxpr("sequential")
  par = jaxpr("parallel")
  assert "scan" not in par and "while" not in par


def test_parallel_refuses_a_theory_that_is_not_the_learners():
  """One learner: the parallel path never silently plays other moments."""
  kw = dict(T=50, d=2, key=jax.random.key(0), radius=1.0, method="parallel",
            discount=0.9)
  tx = fa.ftrl_adam(0.1, b1=0.9, b2=0.99, radius=1.0)
  ok = regret.play(tx, regret.gaussian(), theory=regret.Theory(0.9, 0.99, 1.0),
                   **kw)
  assert np.isfinite(np.asarray(ok.loss))
  for wrong in (regret.Theory(0.5, 0.99, 1.0), regret.Theory(0.9, 0.9, 1.0)):
    with pytest.raises(ValueError, match="does not match the learner"):
      regret.play(tx, regret.gaussian(), theory=wrong, **kw)
  # inside jit the mismatch is loud too: every result is NaN
  jitted = jax.jit(lambda key: regret.play(
      tx, regret.gaussian(), theory=regret.Theory(0.5, 0.99, 1.0),
      **{**kw, "key": key}).loss)
  assert np.isnan(np.asarray(jitted(jax.random.key(0))))


def test_parallel_rejects_what_it_cannot_do():
  kw = dict(T=10, d=2, key=jax.random.key(0), radius=1.0, method="parallel")
  with pytest.raises(ValueError, match="needs an oblivious adversary"):
    regret.play(fa.ftrl_adam(0.1, radius=1.0), regret.oppose(), discount=0.9,
                theory=regret.Theory(0.9, 0.999, 1.0), **kw)
  with pytest.raises(ValueError, match="needs `theory="):
    regret.play(fa.ftrl_adam(0.1, radius=1.0), regret.gaussian(),
                discount=0.9, **kw)
  with pytest.raises(ValueError, match="ScaleByFtrlAdamState"):
    regret.play(optax.adam(0.1), regret.gaussian(),
                theory=regret.Theory(0.9, 0.999, 1.0), **kw)
