"""A run checkpointed half-way with Orbax and restored continues bit for bit.

Both Flax styles: a Linen ``TrainState`` and an NNX model + ``nnx.Optimizer``,
with the online-to-nonconvex conversion (iterate, play, scale, PRNG key data)
and EMAs (warm-up, every-k, power profile) in the optimizer state.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import flax.linen as nn
from flax import nnx
from flax.training import train_state

import ftrl_adam as fa

STEPS = 12        # checkpoint after STEPS // 2
_rng = np.random.default_rng(0)
X = jnp.asarray(_rng.normal(size=(32, 6)), jnp.float32)
Y = jnp.asarray(_rng.integers(0, 3, size=32), jnp.int32)


def _tx():
  return optax.chain(
      fa.online_to_nonconvex(fa.ftrl_adam(0.05, 0.9, 0.81, radius=0.05),
                             key=jax.random.key(7)),
      fa.ema_params(0.9, warmup_power=2 / 3, every=2, name="slow"),
      fa.ema_params(power=3.0, name="karras"))


def _assert_bitwise_equal(a, b):
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  assert ta == tb
  for x, y in zip(la, lb, strict=False):
    assert x.dtype == y.dtype
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


class LinenMLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(3)(nn.relu(nn.Dense(16)(x)))


def _linen_state():
  model = LinenMLP()
  params = model.init(jax.random.key(0), X[:1])["params"]
  return train_state.TrainState.create(apply_fn=model.apply, params=params,
                                       tx=_tx())


@jax.jit
def _linen_step(state):
  def loss_fn(params):
    logits = state.apply_fn({"params": params}, X)
    return optax.softmax_cross_entropy_with_integer_labels(logits, Y).mean()
  return state.apply_gradients(grads=jax.grad(loss_fn)(state.params))


def test_linen_train_state_resumes_bit_identically(tmp_path):
  straight = _linen_state()
  for _ in range(STEPS):
    straight = _linen_step(straight)

  state = _linen_state()
  for _ in range(STEPS // 2):
    state = _linen_step(state)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "half", state)
  checkpointer.wait_until_finished()
  half_ema = fa.ema_params_of(state, name="slow")
  del state

  resumed = checkpointer.restore(tmp_path / "half", _linen_state())
  assert int(resumed.step) == STEPS // 2
  for _ in range(STEPS - STEPS // 2):
    resumed = _linen_step(resumed)

  _assert_bitwise_equal(resumed.params, straight.params)
  _assert_bitwise_equal(resumed.opt_state, straight.opt_state)
  for name in ("slow", "karras"):
    _assert_bitwise_equal(fa.ema_params_of(resumed, name),
                          fa.ema_params_of(straight, name))
  _assert_bitwise_equal(fa.nonconvex_iterate(resumed),
                        fa.nonconvex_iterate(straight))
  # The conversion really ran: the gradient point is not the iterate.
  assert not np.array_equal(fa.nonconvex_iterate(straight)["Dense_0"]["kernel"],
                            straight.params["Dense_0"]["kernel"])

  # Restored without a target, the state is plain dicts: still found.
  raw = checkpointer.restore(tmp_path / "half")
  _assert_bitwise_equal(fa.ema_params_of(raw, "slow"), half_ema)


class NnxMLP(nnx.Module):
  def __init__(self, rngs):
    self.hidden = nnx.Linear(6, 16, rngs=rngs)
    self.out = nnx.Linear(16, 3, rngs=rngs)

  def __call__(self, x):
    return self.out(nnx.relu(self.hidden(x)))


def _nnx_objects():
  model = NnxMLP(nnx.Rngs(0))
  return model, nnx.Optimizer(model, _tx(), wrt=nnx.Param)


@nnx.jit
def _nnx_step(model, optimizer):
  def loss_fn(model):
    return optax.softmax_cross_entropy_with_integer_labels(model(X), Y).mean()
  optimizer.update(model, nnx.grad(loss_fn)(model))


def test_nnx_optimizer_resumes_bit_identically(tmp_path):
  model_a, opt_a = _nnx_objects()
  for _ in range(STEPS):
    _nnx_step(model_a, opt_a)

  model_b, opt_b = _nnx_objects()
  for _ in range(STEPS // 2):
    _nnx_step(model_b, opt_b)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp_path / "half",
                    {"model": nnx.state(model_b), "optimizer": nnx.state(opt_b)})
  checkpointer.wait_until_finished()
  del model_b, opt_b

  model_c, opt_c = _nnx_objects()
  target = {"model": nnx.state(model_c), "optimizer": nnx.state(opt_c)}
  restored = checkpointer.restore(tmp_path / "half", target)
  nnx.update(model_c, restored["model"])
  nnx.update(opt_c, restored["optimizer"])
  assert int(opt_c.step[...]) == STEPS // 2
  for _ in range(STEPS - STEPS // 2):
    _nnx_step(model_c, opt_c)

  _assert_bitwise_equal(nnx.state(model_c), nnx.state(model_a))
  _assert_bitwise_equal(nnx.state(opt_c), nnx.state(opt_a))
  for name in ("slow", "karras"):
    _assert_bitwise_equal(fa.ema_params_of(opt_c, name),
                          fa.ema_params_of(opt_a, name))
  _assert_bitwise_equal(fa.nonconvex_iterate(opt_c), fa.nonconvex_iterate(opt_a))
