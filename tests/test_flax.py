"""Real Flax training with ftrl_adam + ema_params: the examples of docs/howto/flax.md.

The how-to's ```python blocks are executed as written (grouped by their
``## `` section), so the documentation is tested, and the trained digits MLPs
(scikit-learn's digits, on disk) must reach 0.9 test accuracy, EMA included.
"""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import ftrl_adam as fa

HOWTO = pathlib.Path(__file__).resolve().parents[1] / "docs" / "howto" / "flax.md"


def _sections():
  """{section title: source of its python blocks}, in document order."""
  out = {}
  for part in re.split(r"^## ", HOWTO.read_text(), flags=re.M)[1:]:
    title, body = part.split("\n", 1)
    code = re.findall(r"```python\n(.*?)```", body, flags=re.S)
    out[title.strip()] = "\n".join(code)
  return out


def _run(namespace, *titles):
  sections = _sections()
  for title in titles:
    matches = [t for t in sections if t.startswith(title)]
    assert len(matches) == 1, (title, list(sections))
    exec(compile(sections[matches[0]], f"{HOWTO}::{title}", "exec"), namespace)
  return namespace


@pytest.fixture(scope="module")
def nnx_namespace():
  return _run({}, "Data", "Flax NNX")


def test_docs_nnx_optimizer_trains_digits(nnx_namespace):
  ns = nnx_namespace
  assert ns["test_accuracy"] >= 0.9
  assert ns["ema_accuracy"] >= 0.9
  # The EMA model really holds the EMA (not the final params).
  ema = fa.ema_params_of(ns["optimizer"])
  assert not np.array_equal(ns["ema_model"].hidden.kernel[...],
                            ns["model"].hidden.kernel[...])
  np.testing.assert_array_equal(ns["ema_model"].hidden.kernel[...],
                                ema["hidden"]["kernel"])


def test_docs_linen_train_state_trains_digits():
  ns = _run({}, "Data", "Flax Linen")
  assert ns["linen_test_accuracy"] >= 0.9
  assert ns["linen_ema_accuracy"] >= 0.9
  state = ns["state"]
  assert int(state.opt_state[1].count) == 300
  # every=2: 150 EMA updates; the warmed-up decay has reached its cap 0.99.
  assert not np.array_equal(fa.ema_params_of(state)["Dense_0"]["kernel"],
                            state.params["Dense_0"]["kernel"])


def test_docs_ahn_cutkosky_and_orbax_checkpoint(nnx_namespace):
  ns = _run(dict(nnx_namespace), "Ahn & Cutkosky", "Checkpointing")
  assert ns["ac_ema_accuracy"] >= 0.9
  assert ns["ac_iterate_accuracy"] >= 0.9


class Tiny(nnx.Module):
  def __init__(self, rngs):
    self.lin = nnx.Linear(3, 2, rngs=rngs)

  def __call__(self, x):
    return jnp.tanh(self.lin(x))


def _tiny_grads(model, x):
  return nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)


def test_nnx_state_lookups_match_a_pure_optax_run():
  tx = lambda: optax.chain(  # noqa: E731
      fa.online_to_nonconvex(fa.ftrl_adam(0.1, 0.9, 0.81, radius=0.1),
                             key=jax.random.key(0)),
      fa.ema_params(0.8, name="slow"), fa.ema_params(0.3, name="fast"))
  model = Tiny(nnx.Rngs(0))
  params0 = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  optimizer = nnx.Optimizer(model, tx(), wrt=nnx.Param)
  x = jnp.arange(6.0).reshape(2, 3) / 6
  for _ in range(4):
    optimizer.update(model, _tiny_grads(model, x))

  # The same steps in pure optax, on plain dicts.
  apply = lambda p: jnp.tanh(x @ p["lin"]["kernel"] + p["lin"]["bias"])  # noqa: E731
  ptx = tx()
  params, state = params0, ptx.init(params0)
  for _ in range(4):
    g = jax.grad(lambda p: jnp.sum(apply(p) ** 2))(params)
    updates, state = ptx.update(g, state, params)
    params = optax.apply_updates(params, updates)

  def close(a, b):
    a = nnx.to_pure_dict(a) if isinstance(a, nnx.State) else a
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=False):
      np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)

  # By the optimizer, its opt_state, and the state-dict form nnx.state gives.
  for where in (optimizer, optimizer.opt_state, nnx.state(optimizer)):
    close(fa.ema_params_of(where, name="slow"), fa.ema_params_of(state, "slow"))
    close(fa.ema_params_of(where, name="fast"), fa.ema_params_of(state, "fast"))
    close(fa.nonconvex_iterate(where), fa.nonconvex_iterate(state))
  close(nnx.state(model, nnx.Param), params)
  with pytest.raises(ValueError, match="pass `name=`"):
    fa.ema_params_of(optimizer)
  plain = nnx.Optimizer(model, optax.adam(0.1), wrt=nnx.Param)
  with pytest.raises(ValueError, match="No EmaParamsState"):
    fa.ema_params_of(plain)
