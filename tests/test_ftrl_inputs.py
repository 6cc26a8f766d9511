"""Bad input fails at construction with an error naming the argument; zero is safe."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ftrl_adam as fa


@pytest.mark.parametrize("kwargs,match", [
    (dict(b1=1.0), r"`b1` must lie in \[0, 1\)"),
    (dict(b1=-0.1), r"`b1` must lie in \[0, 1\)"),
    (dict(b2=1.5), r"`b2` must lie in \[0, 1\)"),
    (dict(b2=float("nan")), r"`b2` must lie in \[0, 1\)"),
    (dict(b1=np.array([0.9, 1.2])), r"`b1` must lie in \[0, 1\).*1\.2"),
    (dict(eps=-1e-8), r"`eps` must lie in \[0, inf\)"),
    (dict(radius=-0.1), r"`radius` must lie in \[0, inf\)"),
    (dict(domain="sphere"), r"`domain` must be one of 'box', 'ball'; got 'sphere'"),
    (dict(second_moment="diag"),
     r"`second_moment` must be one of 'per_coordinate', 'global'"),
    (dict(eps_mode="rms"), r"`eps_mode` must be one of 'adam', 'ftrl'"),
    (dict(bias_correction="yes"), r"`bias_correction` must be True or False"),
    (dict(b1="0.9"), r"`b1` must be a real number"),
    (dict(eps_root=-1e-8), r"`eps_root` must lie in \[0, inf\)"),
    (dict(nesterov=1), r"`nesterov` must be True or False"),
    (dict(nu_dtype=jnp.complex64), r"`nu_dtype` must be a real floating dtype"),
])
def test_ftrl_adam_rejects_bad_hyperparameters(kwargs, match):
  with pytest.raises(ValueError, match=match):
    fa.ftrl_adam(0.1, **kwargs)


def test_learning_rate_checked():
  with pytest.raises(ValueError, match=r"`learning_rate` must lie in \[0, inf\)"):
    fa.ftrl_adam(-0.1)


def test_scale_by_and_clips_check_too():
  with pytest.raises(ValueError, match="`b2`"):
    fa.scale_by_ftrl_adam(b2=1.0)
  with pytest.raises(ValueError, match="`radius`"):
    fa.clip_box(-1.0)
  with pytest.raises(ValueError, match="`radius`"):
    fa.clip_ball(float("inf"))


def test_traced_hyperparameters_are_accepted():
  """Inside jit/vmap values cannot be checked; they must still work."""
  f = jax.jit(lambda b1: fa.ftrl_adam(0.1, b1).update(
      {"w": jnp.ones(2)}, fa.ftrl_adam(0.1, b1).init({"w": jnp.ones(2)}))[0])
  np.testing.assert_allclose(f(0.5)["w"], -0.1, rtol=1e-6)


@pytest.mark.parametrize("extra", [
    dict(), dict(bias_correction=False), dict(eps_mode="ftrl", bias_correction=False),
    dict(radius=0.1), dict(radius=0.1, domain="ball"),
    dict(radius=0.1, domain="ball", second_moment="global"),
])
def test_zero_gradients_with_zero_eps_give_zero_update(extra):
  tx = fa.ftrl_adam(0.1, 0.9, 0.99, 0.0, **extra)
  params = {"w": jnp.zeros(3), "v": jnp.zeros((2, 2))}
  state = tx.init(params)
  for _ in range(3):
    u, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
    for leaf in jax.tree.leaves(u):
      assert np.all(np.asarray(leaf) == 0.0)


def test_coordinate_that_never_saw_a_gradient_stays_zero():
  tx = fa.ftrl_adam(0.1, 0.9, 0.99, 0.0, radius=1.0, domain="ball")
  params = jnp.zeros(3)
  state = tx.init(params)
  for _ in range(5):
    u, state = tx.update(jnp.array([1.0, -2.0, 0.0]), state, params)
  assert np.isfinite(np.asarray(u)).all() and float(u[2]) == 0.0
  assert float(u[0]) < 0 < float(u[1])


@pytest.mark.parametrize("clip", [fa.clip_box, fa.clip_ball])
def test_clips_are_zero_safe_in_value_and_gradient(clip):
  for radius in (0.0, 1.0):
    tx = clip(radius)
    f = lambda x: jnp.sum(tx.update({"x": x}, tx.init(None))[0]["x"] ** 2)  # noqa
    for x in (jnp.zeros(3), jnp.array([3.0, -4.0, 0.0])):
      u = tx.update({"x": x}, tx.init(None))[0]["x"]
      assert np.isfinite(np.asarray(u)).all()
      g = jax.grad(f)(x)
      assert np.isfinite(np.asarray(g)).all(), (radius, x, g)
    assert float(jnp.max(jnp.abs(tx.update({"x": jnp.ones(3)}, tx.init(None))[0]["x"]))) <= radius + 1e-7


def test_clip_ball_is_the_projection():
  tx = fa.clip_ball(2.0)
  tree = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([[4.0]])}
  u, _ = tx.update(tree, tx.init(None))  # norm 5 -> scaled by 2/5
  np.testing.assert_allclose(u["a"], [1.2, 0.0], rtol=1e-6)
  np.testing.assert_allclose(u["b"], [[1.6]], rtol=1e-6)
  inside, _ = tx.update({"a": jnp.array([0.3])}, tx.init(None))
  np.testing.assert_array_equal(inside["a"], np.float32([0.3]))  # untouched


@pytest.mark.parametrize("name", ["mu_dtype", "nu_dtype"])
def test_integer_moment_dtypes_are_refused(name):
  with pytest.raises(ValueError, match=f"`{name}` must be a"):
    fa.ftrl_adam(0.1, **{name: jnp.int8})
