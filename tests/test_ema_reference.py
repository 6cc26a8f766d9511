"""ema_params against EMAs computed by ema-pytorch and timm themselves.

``tests/data/ema_reference.json`` holds the EMA parameters that ema-pytorch's
``EMA`` (0.8.3) and timm's ``ModelEmaV3`` (1.0.31) produced, in float32 on CPU,
for fixed parameter sequences; ``tests/data/make_ema_reference.py`` wrote it
(neither library is a dependency, and the script is not run here).  Each case
is configured here through the one-to-one mapping documented in
``ftrl_adam.ema_params``, from the library's own arguments, so the test holds
both the semantics (warm-up counted in optimizer steps, ``update_after_step``,
every-k) and the documented mapping.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ftrl_adam as fa

DATA = json.loads(
    (pathlib.Path(__file__).parent / "data" / "ema_reference.json").read_text())
CASES = {case["name"]: case for case in DATA["cases"]}

# The libraries' own defaults, so a case stores only what it changed.
EMA_PYTORCH_DEFAULTS = dict(beta=0.9999, update_after_step=100, update_every=10,
                            inv_gamma=1.0, power=2 / 3, min_value=0.0)
TIMM_DEFAULTS = dict(decay=0.9999, min_decay=0.0, update_after_step=0,
                     use_warmup=False, warmup_gamma=1.0, warmup_power=2 / 3)


def ema_params_kwargs(case):
  """The documented mapping: library arguments -> ema_params arguments."""
  if case["library"] == "ema_pytorch":
    k = {**EMA_PYTORCH_DEFAULTS, **case["kwargs"]}
    return dict(decay=k["beta"], warmup_power=k["power"],
                warmup_gamma=k["inv_gamma"], min_decay=k["min_value"],
                update_after_step=k["update_after_step"],
                every=k["update_every"])
  k = {**TIMM_DEFAULTS, **case["kwargs"]}
  if not case["pass_step"]:          # ModelEmaV3.update(model): constant decay
    return dict(decay=k["decay"], debias=False, every=case["every"])
  if k["use_warmup"]:
    return dict(decay=k["decay"], warmup_power=k["warmup_power"],
                warmup_gamma=k["warmup_gamma"], min_decay=k["min_decay"],
                update_after_step=k["update_after_step"], every=case["every"])
  return dict(decay=k["decay"], update_after_step=k["update_after_step"],
              every=case["every"])


def run(tx, xs):
  """A jitted training loop holding x_1..x_T: the EMA read after each step."""
  xs = jnp.asarray(xs, jnp.float32)

  @jax.jit
  def go(xs):
    def step(carry, x_next):
      params, state = carry
      updates = x_next - params            # the step that lands on x_next
      updates, state = tx.update(updates, state, params)
      params = optax.apply_updates(params, updates)
      return (params, state), (params, fa.ema_params_of(state))
    _, out = jax.lax.scan(step, (xs[0], tx.init(xs[0])), xs[1:])
    return out

  return go(xs)


def test_reference_file_is_from_the_libraries():
  about = DATA["_about"]
  assert "ema-pytorch 0.8.3" in about and "timm 1.0.31" in about
  assert {c["library"] for c in DATA["cases"]} == {"ema_pytorch", "timm"}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_the_library(name):
  case = CASES[name]
  xs = np.asarray(case["x"], np.float32)
  want = np.asarray(case["ema"])
  held, got = run(fa.ema_params(**ema_params_kwargs(case)), xs)
  # The loop holds x_n up to one float32 rounding of x + (x_next - x).
  np.testing.assert_allclose(held, xs[1:], rtol=2e-7, atol=2e-7)
  np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6,
                             err_msg=f"{name}: {ema_params_kwargs(case)}")


def test_the_references_are_not_trivial():
  """Each case really averages (else matching it would prove little)."""
  for name, case in CASES.items():
    xs = np.asarray(case["x"])[1:]
    ema = np.asarray(case["ema"])
    assert np.max(np.abs(ema - xs)) > 0.05, name
    first_is_copy = np.max(np.abs(ema[0] - xs[0])) == 0.0   # gamma_1 = 0
    assert first_is_copy == (name != "timm_no_step"), name
  # ema-pytorch's defaults copy until step 101, then average from step 111.
  case = CASES["ema_pytorch_defaults"]
  xs, ema = np.asarray(case["x"])[1:], np.asarray(case["ema"])
  np.testing.assert_array_equal(ema[100], xs[100])
  assert np.max(np.abs(ema[110] - xs[110])) > 0.01


def test_counting_ema_updates_would_not_match():
  """The warm-up counts optimizer steps; counting EMA updates is off by far."""
  case = CASES["ema_pytorch_every_2"]
  kw = ema_params_kwargs(case)
  xs = np.asarray(case["x"], np.float32)
  want = np.asarray(case["ema"])
  # Counting updates instead = a warm-up twice slower in steps.
  slow = dict(kw, warmup_gamma=kw["warmup_gamma"] * kw["every"])
  _, wrong = run(fa.ema_params(**slow), xs)
  assert np.max(np.abs(wrong - want)) > 0.05
