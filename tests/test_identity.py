"""The one code hasher (ftrl_adam.lab.identity.code_digest): what it tells apart.

The studies' task fingerprints and the engine's cell-code digest both use it,
so it must see what either needs: partial arguments, the code of a user
class's bases, Flax NNX variables, PRNG keys, sets in any order, and the
values a library's closure holds - while the same objects built again (in
this process or another: tests/test_studies_nnx.py) hash the same.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import optax
from flax import nnx

from ftrl_adam.lab.identity import code_digest


def _scaled(x, k=2.0):
  return k * x


def test_partial_arguments_and_keywords_are_seen():
  a = functools.partial(_scaled, k=3.0)
  assert code_digest(a) == code_digest(functools.partial(_scaled, k=3.0))
  assert code_digest(a) != code_digest(functools.partial(_scaled, k=4.0))
  assert code_digest(functools.partial(_scaled, 1.0)) != code_digest(
      functools.partial(_scaled, 2.0))


def test_library_closures_hold_the_users_values():
  """optax.scale's update closes over the step size: it is fed, not just the
  library function's name."""
  assert code_digest(optax.scale(0.1)) == code_digest(optax.scale(0.1))
  assert code_digest(optax.scale(0.1)) != code_digest(optax.scale(0.2))
  assert code_digest(optax.sgd(0.1)) != code_digest(optax.adam(0.1))


def _make_classes(offset):
  class Base:
    def shift(self, x):
      return x + offset

  class Child(Base):
    def __call__(self, x):
      return 2 * self.shift(x)

  return Child


class _Base:
  def shift(self, x):
    return x + 1


class _Child(_Base):
  def __call__(self, x):
    return 2 * self.shift(x)


class _OtherBase:
  def shift(self, x):
    return x + 2


class _OtherChild(_OtherBase):
  def __call__(self, x):
    return 2 * self.shift(x)


def test_a_user_class_is_hashed_with_its_bases_code():
  # Same names, same __call__, another base method: different digests.
  a = type("Child", (_Base,), {"__call__": _Child.__call__})
  b = type("Child", (_OtherBase,), {"__call__": _OtherChild.__call__})
  assert code_digest(a) != code_digest(b)
  assert code_digest(_Child()) != code_digest(_OtherChild())
  # A closure value inside a base's method counts too.
  assert code_digest(_make_classes(1)) != code_digest(_make_classes(2))
  assert code_digest(_make_classes(1)) == code_digest(_make_classes(1))


def test_nnx_variables_are_hashed_by_value():
  same = [code_digest(nnx.Linear(3, 2, rngs=nnx.Rngs(0))) for _ in range(2)]
  assert same[0] == same[1]
  assert same[0] != code_digest(nnx.Linear(3, 2, rngs=nnx.Rngs(1)))
  model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
  model.kernel[...] = model.kernel[...].at[0, 0].add(1e-3)
  assert code_digest(model) != same[0]
  assert code_digest(nnx.Rngs(0)) != code_digest(nnx.Rngs(1))


def test_prng_keys_and_arrays_by_their_bits():
  assert code_digest(jax.random.key(0)) != code_digest(jax.random.key(1))
  assert code_digest(jax.random.key(3)) == code_digest(jax.random.key(3))
  x = np.arange(4.0, dtype=np.float32)
  assert code_digest(x) != code_digest(x.astype(np.float64))
  assert code_digest(x) != code_digest(x.reshape(2, 2))
  assert code_digest(x) == code_digest(x.copy())


def test_sets_in_any_order_and_cycles():
  assert code_digest({"b", "a", "c"}) == code_digest({"c", "a", "b"})
  assert code_digest(frozenset({1, 2})) != code_digest(frozenset({1, 3}))
  loop = [1]
  loop.append(loop)
  assert code_digest(loop) == code_digest(loop)
