"""``studies.flax_task`` with Flax NNX models (and Linen, for comparison).

* an NNX model and a Linen model of the same architecture and the same
  initial weights give the same study, to float32 rounding;
* a function ``rngs -> nnx.Module`` draws each seed's initial parameters
  (under ``jax.vmap`` too);
* ``task.info["content_sha256"]`` tells models apart (width, initial weights,
  activation, code) and is the same for the same model built twice, in this
  process or another one;
* a model that updates non-Param state (BatchNorm or Dropout in training
  mode) is refused; in evaluation mode its state is used as constants;
* bad ``model`` arguments raise a ValueError naming ``model`` and what is
  allowed.

Each study is tiny (a 3-8-2 MLP, a few dozen steps): compilation dominates.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
import textwrap

import flax.linen as nn
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ftrl_adam import studies

CE = optax.softmax_cross_entropy_with_integer_labels
STUDY = dict(b1=[0.9], b2=[0.9, 0.99], learning_rates=[0.05], seeds=2,
             steps=30, eval_every=15, progress=False, plots=False,
             verbose=False)


LECUN = nnx.initializers.lecun_normal()


class NnxMLP(nnx.Module):
  """3 -> width -> 2, ReLU (NNX)."""

  def __init__(self, width: int = 8, *, rngs: nnx.Rngs, kernel_init=LECUN,
               act=jax.nn.relu):
    self.hidden = nnx.Linear(3, width, kernel_init=kernel_init, rngs=rngs)
    self.out = nnx.Linear(width, 2, kernel_init=kernel_init, rngs=rngs)
    self.act = act

  def __call__(self, x):
    return self.out(self.act(self.hidden(x)))


def _constant(value):
  return lambda key, shape, dtype=jnp.float32: jnp.asarray(value, dtype)


class LinenMLP(nn.Module):
  """The same MLP in Linen, initialised to given weights (for every key)."""

  weights: dict

  @nn.compact
  def __call__(self, x):
    w = self.weights
    x = nn.Dense(w["hidden"]["kernel"].shape[1],
                 kernel_init=_constant(w["hidden"]["kernel"]),
                 bias_init=_constant(w["hidden"]["bias"]))(x)
    return nn.Dense(2, kernel_init=_constant(w["out"]["kernel"]),
                    bias_init=_constant(w["out"]["bias"]))(nn.relu(x))


def _data(seed=0, n=96):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 3)).astype(np.float32)
  y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int32)
  return (x[:64], y[:64]), (x[64:], y[64:])


def _task(model, seed=0, **kw):
  train, val = _data(seed)
  return studies.flax_task(model, CE, train, val, batch_size=16, accuracy=True,
                           **kw)


def _sha(model, **kw):
  return _task(model, **kw).info["content_sha256"]


# ----------------------------------------------------------------------------
# Same model, two APIs, same numbers.
# ----------------------------------------------------------------------------


def test_flax_task_nnx_and_linen_with_the_same_weights_give_the_same_study():
  model = NnxMLP(rngs=nnx.Rngs(0))
  weights = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  before = jax.tree.map(np.asarray, weights)
  nnx_task = _task(model, name="nnx")
  linen_task = _task(LinenMLP(weights), name="linen")
  assert "NNX" in nnx_task.info["description"]
  assert "Linen" in linen_task.info["description"]
  n_params = 3 * 8 + 8 + 8 * 2 + 2
  assert nnx_task.num_params() == linen_task.num_params() == n_params
  # The instance's own weights are every seed's initial parameters.
  for key in (jax.random.key(0), jax.random.key(1)):
    jax.tree.map(np.testing.assert_array_equal, nnx_task.init_params(key),
                 before)

  a = studies.run_study(nnx_task, **STUDY)
  b = studies.run_study(linen_task, **STUDY)
  assert len(a.cells["b1"]) == 4
  for k in ("val_loss", "val_loss_ema", "train_loss", "best_val_loss"):
    np.testing.assert_allclose(a.cells[k], b.cells[k], rtol=2e-6, atol=1e-7,
                               err_msg=k)
  np.testing.assert_array_equal(a.cells["val_acc"], b.cells["val_acc"])
  # It trained (well below log 2 nats), and the user's model is untouched.
  assert np.all(a.cells["val_loss"] < 0.5)
  jax.tree.map(np.testing.assert_array_equal,
               nnx.to_pure_dict(nnx.state(model, nnx.Param)), before)


def test_flax_task_nnx_factory_draws_each_seeds_initial_parameters():
  """``model=lambda rngs: ...``: a seed's parameters are those of the module
  built with that seed's key, under vmap too (a study vmaps over cells)."""
  task = _task(lambda rngs: NnxMLP(rngs=rngs), name="factory")
  keys = jax.random.split(jax.random.key(7), 3)
  batched = jax.vmap(task.init_params)(keys)
  for i, key in enumerate(keys):
    expected = nnx.to_pure_dict(nnx.state(NnxMLP(rngs=nnx.Rngs(key)),
                                          nnx.Param))
    jax.tree.map(lambda b, e, i=i: np.testing.assert_array_equal(b[i], e),
                 batched, expected)
  assert not np.array_equal(batched["hidden"]["kernel"][0],
                            batched["hidden"]["kernel"][1])

  res = studies.run_study(task, **{**STUDY, "b2": [0.99]})
  assert np.all(np.isfinite(res.cells["val_loss"]))
  assert res.cells["val_loss"][0] != res.cells["val_loss"][1]  # two seeds


# ----------------------------------------------------------------------------
# The fingerprint.
# ----------------------------------------------------------------------------


def test_flax_task_nnx_fingerprint_tells_models_apart():
  base = _sha(NnxMLP(rngs=nnx.Rngs(0)))
  assert base == _sha(NnxMLP(rngs=nnx.Rngs(0)))      # built twice
  others = [
      _sha(NnxMLP(9, rngs=nnx.Rngs(0))),               # other width
      _sha(NnxMLP(rngs=nnx.Rngs(1))),                  # other initial weights
      _sha(NnxMLP(rngs=nnx.Rngs(0),                    # other initializer
                  kernel_init=nnx.initializers.normal(0.1))),
      _sha(NnxMLP(rngs=nnx.Rngs(0), act=jax.nn.gelu)),  # other activation
      _sha(NnxMLP(rngs=nnx.Rngs(0)), seed=1),          # other data
      _sha(lambda rngs: NnxMLP(rngs=rngs)),            # a factory
      _sha(lambda rngs: NnxMLP(9, rngs=rngs)),         # another factory
  ]
  assert len({base, *others}) == 1 + len(others)
  assert (_sha(lambda rngs: NnxMLP(rngs=rngs))
          == _sha(lambda rngs: NnxMLP(rngs=rngs)))

  class NnxMLP2(NnxMLP):  # same structure and weights, other code
    def __call__(self, x):
      return self.out(self.act(self.hidden(x)) + 1.0)

  assert _sha(NnxMLP2(rngs=nnx.Rngs(0))) != base


def test_flax_task_linen_fingerprint_sees_class_code_and_initializers():
  class A(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(2)(nn.relu(nn.Dense(4)(x)))

  first = _sha(A())

  class A(nn.Module):  # pylint: disable=function-redefined
    @nn.compact
    def __call__(self, x):
      return nn.Dense(2)(nn.tanh(nn.Dense(4)(x)))

  assert _sha(A()) != first
  assert (_sha(nn.Dense(2, kernel_init=nn.initializers.normal(0.1)))
          != _sha(nn.Dense(2, kernel_init=nn.initializers.normal(0.2))))


def test_flax_task_fingerprint_is_the_same_in_another_process(tmp_path):
  """No memory address in the hash: a resumed study runs in a new process."""
  script = tmp_path / "make_task.py"
  script.write_text(textwrap.dedent("""
      import functools
      import jax, numpy as np, optax
      from flax import nnx
      from ftrl_adam import studies

      class Net(nnx.Module):
        def __init__(self, rngs):
          self.lin = nnx.Linear(3, 2, rngs=rngs)
          self.act = jax.nn.relu

        def __call__(self, x):
          return self.act(self.lin(x))

      x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
      loss = functools.partial(optax.huber_loss, delta=2.0)
      SHA = [studies.flax_task(m, loss, (x, x[:, :2]), (x, x[:, :2]),
                               batch_size=4).info["content_sha256"]
             for m in (Net(nnx.Rngs(0)), lambda rngs: Net(rngs))]
      print(" ".join(SHA))
  """))
  here = runpy.run_path(str(script), run_name="__main__")["SHA"]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  out = subprocess.run([sys.executable, str(script)], capture_output=True,
                       text=True, check=True, env=env, timeout=120)
  assert out.stdout.split() == here


# ----------------------------------------------------------------------------
# Non-Param state.
# ----------------------------------------------------------------------------


class WithState(nnx.Module):
  """Linear -> BatchNorm -> Dropout: state that training mode updates."""

  def __init__(self, rngs):
    self.lin = nnx.Linear(3, 2, rngs=rngs)
    self.bn = nnx.BatchNorm(2, rngs=rngs)
    self.drop = nnx.Dropout(0.5, rngs=rngs)

  def __call__(self, x):
    return self.drop(self.bn(self.lin(x)))


def test_flax_task_nnx_state_updated_by_the_model_is_refused():
  model = WithState(nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"`model` updates its state.*bn/mean "
                     r"\(BatchStat\).*drop/rngs.*model\.eval\(\)"):
    _task(model)
  model.eval()  # BatchNorm uses its statistics, Dropout is off: constants
  stats = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(
      model, nnx.BatchStat)))
  task = _task(model)
  assert task.num_params() == 3 * 2 + 2 + 2 + 2  # lin, bn scale and bias
  assert set(task.init_params(jax.random.key(0))) == {"lin", "bn"}
  params = task.init_params(jax.random.key(0))
  value, grads = jax.jit(jax.value_and_grad(task.loss))(params, task.val_batch)
  assert np.isfinite(value)
  assert float(jnp.abs(grads["bn"]["scale"]).sum()) > 0  # BatchNorm trains
  jax.tree.map(np.testing.assert_array_equal,
               nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)), stats)
  with pytest.raises(ValueError, match="`model` updates its state"):
    _task(lambda rngs: WithState(rngs))  # a factory's module, training mode


# ----------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("model, match", [
    (3, r"`model` must be a flax\.linen\.Module instance.*flax\.nnx\.Module "
        r"instance.*rngs -> flax\.nnx\.Module.*got int"),
    ("mlp", r"`model` must be .*got str"),
    (nnx.Linear, r"`model` must be a module instance, not the class Linear"),
    (NnxMLP, r"`model` must be a module instance, not the class NnxMLP "
             r"\(pass e\.g\. lambda rngs: NnxMLP\(\.\.\., rngs=rngs\)\)"),
    (nn.Dense, r"`model` must be a module instance, not the class Dense "
               r"\(pass e\.g\. Dense\(\.\.\.\)\)"),
    (dict, r"`model` must be .*got the class dict"),
    (lambda rngs: 3, r"`model` is a function, so it must return a "
                     r"flax\.nnx\.Module.*returned int"),
    (lambda: 3, r"`model` is a function, so it must build a flax\.nnx\.Module"),
])
def test_flax_task_bad_model(model, match):
  with pytest.raises(ValueError, match=match):
    _task(model)
