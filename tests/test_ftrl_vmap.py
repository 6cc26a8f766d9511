"""Hyperparameters are float32 arrays: a vmapped grid cell equals the scalar run bit for bit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ftrl_adam as fa

T = 50


def _run(lr, b1, b2, eps, radius, *, domain="box", second_moment="per_coordinate"):
  tx = fa.ftrl_adam(lr, b1, b2, eps, radius=radius, domain=domain,
                    second_moment=second_moment)
  w = {"a": jnp.zeros((4, 3)), "b": jnp.zeros(5)}

  def step(carry, noise):
    w, s = carry
    g = jax.tree.map(lambda z, p: z + 0.5 * p, noise, w)
    u, s = tx.update(g, s, w)
    return (jax.tree.map(jnp.add, w, u), s), u

  (w, _), us = jax.lax.scan(step, (w, tx.init(w)), _noise())
  return w, us


@functools.cache
def _noise():
  """The T steps' normal draws, one per leaf (a step's key for every leaf),
  drawn once, outside any trace, and a constant of every program of the file:
  compiling the random number generator costs more than the runs."""
  with jax.ensure_compile_time_eval():
    keys = jax.random.split(jax.random.key(7), T)
    return jax.jit(jax.vmap(lambda k: {"a": jax.random.normal(k, (4, 3)),
                                       "b": jax.random.normal(k, (5,))}))(keys)


GRID = dict(
    lr=np.float32([0.1, 0.01, 0.03]),
    b1=np.float32([0.9, 0.99, 0.0]),
    b2=np.float32([0.999, 0.5, 0.81]),
    eps=np.float32([1e-8, 0.0, 1e-3]),
    radius=np.float32([0.05, 0.5, 0.0]),
)


@pytest.mark.parametrize("domain,second_moment", [
    ("box", "per_coordinate"), ("ball", "per_coordinate"), ("ball", "global")])
def test_vmapped_grid_cell_equals_scalar_run(domain, second_moment):
  run = functools.partial(_run, domain=domain, second_moment=second_moment)
  batched = jax.jit(jax.vmap(run))(*GRID.values())
  for i in range(3):
    single = jax.jit(run)(*(v[i] for v in GRID.values()))
    cell = jax.tree.map(lambda x: x[i], batched)
    jax.tree.map(np.testing.assert_array_equal, cell, single)


def test_vmap_over_b1_b2_product_grid():
  b1s, b2s = np.meshgrid(np.float32([0.5, 0.9, 0.99]),
                         np.float32([0.25, 0.9, 0.9999]), indexing="ij")
  run = lambda b1, b2: _run(np.float32(0.01), b1, b2, np.float32(1e-8), None)[1]  # noqa
  batched = jax.jit(jax.vmap(run))(b1s.ravel(), b2s.ravel())
  for i, (b1, b2) in enumerate(zip(b1s.ravel(), b2s.ravel(), strict=False)):
    single = jax.jit(run)(b1, b2)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[i], b),
                 batched, single)


def test_vmap_over_radius_changes_result():
  """The vmapped radius is really used (a test that fails if it were ignored)."""
  run = lambda r: _run(np.float32(0.1), np.float32(0.9), np.float32(0.99),  # noqa
                       np.float32(1e-8), r)[1]["b"]
  out = jax.jit(jax.vmap(run))(np.float32([0.0, 0.01, 1.0]))
  assert float(jnp.max(jnp.abs(out[0]))) == 0.0
  assert float(jnp.max(jnp.abs(out[1]))) == pytest.approx(0.01)
  assert float(jnp.max(jnp.abs(out[2]))) > 0.01


def test_weighted_ball_cells_bit_identical_under_the_grid_options():
  """The exact per-coordinate-rate ball argmin, active radii, a fixed sequence.

  With XLA CPU's default (MLIR) fusion emitters this case differs by 1 ulp from
  step 2 on (the fusions of the batched and unbatched programs differ); the
  grid engine compiles with ``grid.compiler_options()``, under which every
  cell is bit-identical to the single run.
  """
  from ftrl_adam import grid
  g = jnp.asarray(np.random.default_rng(0).standard_normal((50, 8))
                  * np.logspace(-2, 1, 8), jnp.float32)

  def run(b1, b2, r):
    tx = fa.ftrl_adam(0.01, b1, b2, radius=r, domain="ball")
    w = jnp.zeros(8)
    def step(s, gt):
      u, s = tx.update(gt, s, w)
      return s, u
    return jax.lax.scan(step, tx.init(w), g)[1]

  b1 = np.float32([0.9, 0.99, 0.5, 0.9, 0.99, 0.5])
  b2 = np.float32([0.999, 0.9, 0.25] * 2)
  r = np.float32([0.001] * 3 + [0.01] * 3)
  opts = grid.compiler_options()
  batched = jax.jit(jax.vmap(run), compiler_options=opts)(b1, b2, r)
  for i in range(6):
    single = jax.jit(run, compiler_options=opts)(b1[i], b2[i], r[i])
    np.testing.assert_array_equal(batched[i], single)
    assert float(jnp.max(jnp.linalg.norm(single, axis=1))) > 0.99 * r[i]  # active
