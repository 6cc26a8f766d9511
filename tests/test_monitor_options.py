"""What the regret monitor reads by itself, and what it prints (issue 22, item 5).

* Wrapping the transform ``fa.ftrl_adam(...)`` returns, the monitor takes
  radius, domain, b1, b2 and the learning rate from it: the same state as with
  every argument given; a given argument that disagrees is refused with one
  line naming it and both values.
* ``regret_of`` prints one short line (step, regret, bound, ratio).
* ``_d3.sup_regret`` is the formula r + D ||M||_1 / r + D ||M||_2 (against NumPy).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ftrl_adam as fa
from ftrl_adam import _d3
from ftrl_adam import ftrl

PARAMS = {"w": jnp.zeros((3, 4)), "b": jnp.zeros((4,))}


def _feed(tx, steps=6):
  params, state = PARAMS, tx.init(PARAMS)
  step = jax.jit(tx.update)
  for t in range(steps):
    g = jax.tree.map(lambda x, t=t: jnp.sin(jnp.arange(x.size, dtype=jnp.float32)
                                            .reshape(x.shape) + t), params)
    u, state = step(g, state, params)
    params = optax.apply_updates(params, u)
  return state


@pytest.mark.parametrize("domain", ["box", "ball"])
def test_wrapping_ftrl_adam_takes_its_hyperparameters(domain):
  lr, b1, b2, radius = 0.02, 0.8, 0.95, 0.1
  extra = {} if domain == "box" else {"second_moment": "global"}
  make = lambda: fa.ftrl_adam(lr, b1, b2, radius=radius, domain=domain,  # noqa: E731
                              **extra)
  implicit = _feed(fa.regret_monitor(make()))
  explicit = _feed(fa.regret_monitor(make(), radius=radius, b1=b1, b2=b2,
                                     lr=lr, domain=domain))
  for a, b in zip(jax.tree.leaves(implicit), jax.tree.leaves(explicit),
                  strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  rep = fa.regret_of(implicit)
  assert np.isfinite(float(rep.bound))
  # The domain comes along: the ball's D3 streams are scalars.
  assert implicit.sums.shape == ((3 + 5,) if domain == "box" else (6 + 5,))


def test_what_cannot_be_read_is_asked_for():
  # No clip: no radius to read.  A schedule: no constant c, no bound.
  with pytest.raises(ValueError, match=r"`radius` is needed: the wrapped "
                     r"ftrl_adam has no radius"):
    fa.regret_monitor(fa.ftrl_adam(0.01))
  tx = fa.regret_monitor(fa.ftrl_adam(0.01), radius=0.01)
  assert np.isfinite(float(fa.regret_of(_feed(tx)).bound))
  sched = fa.ftrl_adam(optax.linear_schedule(0.01, 0.0, 10), radius=0.01)
  assert np.isnan(float(fa.regret_of(_feed(fa.regret_monitor(sched))).bound))
  with_c = fa.regret_monitor(sched, c=0.01)       # a reference curve asked for
  assert np.isfinite(float(fa.regret_of(_feed(with_c)).bound))
  # Any other transform: radius and b1 are needed.
  for missing, kwargs in [("radius", dict(b1=0.9)), ("b1", dict(radius=1.0))]:
    with pytest.raises(ValueError, match=f"`{missing}` is needed"):
      fa.regret_monitor(optax.adam(0.1), **kwargs)
  # A chain around ftrl_adam carries no options.
  with pytest.raises(ValueError, match="`radius` is needed"):
    fa.regret_monitor(optax.chain(optax.clip(1.0), fa.ftrl_adam(0.1, radius=1)))


@pytest.mark.parametrize("kwargs,message", [
    (dict(b1=0.95), "`b1` = 0.95 contradicts the wrapped ftrl_adam's b1 = 0.9:"),
    (dict(b2=0.9), "`b2` = 0.9 contradicts the wrapped ftrl_adam's b2 = 0.99:"),
    (dict(radius=0.2), "`radius` = 0.2 contradicts the wrapped ftrl_adam's "
                       "radius = 0.1:"),
    (dict(lr=0.02), "`lr` = 0.02 contradicts the wrapped ftrl_adam's lr = 0.01:"),
    (dict(c=1.0), "`c` = 1.0 contradicts the wrapped ftrl_adam's c = lr (1 - b1)"
                  " / sqrt(1 - b2) = 0.01:"),
])
def test_a_contradiction_is_refused_naming_the_argument_and_both_values(
    kwargs, message):
  learner = fa.ftrl_adam(0.01, 0.9, 0.99, radius=0.1)
  with pytest.raises(ValueError) as e:
    fa.regret_monitor(learner, **kwargs)
  text = str(e.value)
  assert text.startswith(message) and "\n" not in text, text


def test_agreeing_arguments_and_float32_rounding_are_accepted():
  b1, b2, d = 0.9, 0.99, 0.05
  lr = d * (1 - b2) ** 0.5 / (1 - b1)                # c = D, in float64
  learner = fa.ftrl_adam(lr, b1, b2, radius=d)
  tx = fa.regret_monitor(learner, radius=d, b1=b1, b2=b2, c=d)
  assert float(tx.init(PARAMS).c) == pytest.approx(d)
  # A schedule learner with an lr given is a contradiction too.
  sched = fa.ftrl_adam(optax.constant_schedule(0.1), radius=d)
  with pytest.raises(ValueError, match="`lr` = 0.1 contradicts the wrapped "
                     "ftrl_adam's learning-rate schedule"):
    fa.regret_monitor(sched, lr=0.1)


def test_options_of_reads_only_ftrl_adam():
  opts = ftrl.options_of(fa.ftrl_adam(0.1, 0.5, 0.75, radius=0.2, domain="ball",
                                      bias_correction=False))
  assert (float(opts.learning_rate), float(opts.b1), float(opts.b2),
          float(opts.radius), opts.domain, opts.bias_correction) == (
              pytest.approx(0.1), 0.5, 0.75, pytest.approx(0.2), "ball", False)
  assert ftrl.options_of(fa.ftrl_adam(0.1)).radius is None
  for other in (optax.adam(0.1), fa.scale_by_ftrl_adam(), None, 3):
    assert ftrl.options_of(other) is None


def test_regret_of_prints_one_short_line():
  state = _feed(fa.regret_monitor(fa.ftrl_adam(0.01, 0.9, 0.99, radius=0.1),
                                  coords=5))
  rep = fa.regret_of(state)
  text = repr(rep)
  assert "\n" not in text and len(text) < 120, text
  for field in (f"step={int(rep.step)}", f"regret={float(rep.regret):.4g}",
                f"bound={float(rep.bound):.4g}",
                f"ratio={float(rep.regret / rep.bound):.4g}", "coords=5"):
    assert field in text, (field, text)
  assert float(rep.ratio) == pytest.approx(float(rep.regret / rep.bound))
  untracked = fa.regret_of(_feed(fa.regret_monitor(optax.sgd(0.1), radius=1.0,
                                                   b1=0.5)))
  assert "bound=nan, ratio=nan" in repr(untracked)
  assert "coords" not in repr(untracked)          # every coordinate
  # Inside jit the fields are tracers: the repr says their types.
  jax.jit(lambda s: print(fa.regret_of(s)) or 0)(state)


@pytest.mark.parametrize("domain", ["box", "ball"])
def test_sup_regret_is_the_closed_form(domain):
  rng = np.random.default_rng(0)
  loss, m = rng.standard_normal(3), rng.standard_normal((3, 7))
  norm = (np.abs(m).sum(1) if domain == "box"
          else np.sqrt(np.square(m).sum(1)))
  np.testing.assert_allclose(
      _d3.sup_regret(jnp.asarray(loss), jnp.asarray(m), 0.3, domain),
      loss + 0.3 * norm, rtol=1e-6)
  tree = {"a": jnp.asarray(m[0, :3]), "b": [jnp.asarray(m[0, 3:])]}
  np.testing.assert_allclose(_d3.sup_regret(loss[0], tree, 0.3, domain),
                             loss[0] + 0.3 * norm[0], rtol=1e-6)
  np.testing.assert_allclose(  # the columns hold the coordinates
      _d3.sup_regret(jnp.asarray(loss), jnp.asarray(m.T), 0.3, domain, axis=0),
      loss + 0.3 * norm, rtol=1e-6)
