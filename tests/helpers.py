"""Helpers shared by the tests (importable: tests/ is on pytest's pythonpath)."""

import jax
import jax.numpy as jnp
import numpy as np

# Gradients of different shapes, with a None leaf, as a user's params tree.
TREE_SHAPES = {"dense": {"w": (5, 3), "b": (3,)}, "scalar": (), "none": None}


def make_params(shapes=TREE_SHAPES, dtype=jnp.float32):
  return jax.tree.map(
      lambda s: None if s is None else jnp.zeros(s, dtype),
      shapes, is_leaf=lambda s: s is None or isinstance(s, tuple))


def random_grads(key, params, scale=1.0):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, max(1, len(leaves)))
  return jax.tree.unflatten(treedef, [
      scale * jax.random.normal(k, p.shape, p.dtype) for k, p in zip(keys, leaves, strict=False)
  ])


def run_updates(tx, params, T, seed=0, scale_fn=None):
  """Jitted scan of T updates on random gradients; returns stacked updates.

  The gradients (``random_grads`` of each step's key, times ``scale_fn(t)``)
  are drawn once per layout, T and seed (:func:`_random_sequence`) and
  passed in: compiling the random number generator costs more than the
  optimizer's step, and every run on that layout then shares it.
  """

  @jax.jit
  def go(params, grads):
    def step(state, inp):
      t, g = inp
      if scale_fn is not None:
        g = jax.tree.map(lambda x: scale_fn(t) * x, g)
      u, state = tx.update(g, state, params)
      return state, u

    return jax.lax.scan(step, tx.init(params), (jnp.arange(T), grads))

  return go(params, _random_sequence(params, T, seed))


_SEQUENCES = {}


def _random_sequence(params, T, seed):
  """T stacked ``random_grads`` trees, keys split from ``key(seed)``."""
  layout = (jax.tree.structure(params),
            tuple((p.shape, str(p.dtype)) for p in jax.tree.leaves(params)), T,
            seed)
  if layout not in _SEQUENCES:
    @jax.jit
    def draw(params):
      keys = jax.random.split(jax.random.key(seed), T)
      return jax.lax.scan(lambda c, k: (c, random_grads(k, params)), None,
                          keys)[1]

    _SEQUENCES[layout] = draw(params)
  return _SEQUENCES[layout]


def normwise_diff(a, b):
  """||a - b|| / ||b|| over all the leaves, in float64."""
  a = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(a)])
  b = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(b)])
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def max_rel_diff(a, b):
  out = 0.0
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=False):
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    denom = np.maximum(np.abs(y), 1e-30)
    out = max(out, float(np.max(np.abs(x - y) / denom)))
  return out




def gradient_sequence(T, shapes, seed=0):
  """T float32 gradient trees of the given leaf shapes (NumPy's generator)."""
  rng = np.random.default_rng(seed)
  return [{k: jnp.asarray(rng.standard_normal(s), jnp.float32)
           for k, s in shapes.items()} for _ in range(T)]


def flat(tree):
  """The tree's leaves, raveled and concatenated (in tree order)."""
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])
