"""Adversaries of the online linear optimisation games (docs/theory.md section 3).

An :class:`Adversary` produces the gradient g_t of round t of a game.  Two kinds:

* **oblivious**: g_t is a function of the round t and a PRNG key only, fixed
  before the game starts (``fn(params, t, key, d)``).  Such a game can also run
  on the time-parallel path (``method="parallel"``).
* **adaptive** (non-oblivious): g_t may depend on the learner's current play
  Delta_t and iterate w_t = w_0 + sum_{s<=t} Delta_s
  (``fn(params, t, key, play, iterate)``).  :func:`gradient_of` is exactly the
  online-to-nonconvex setting: the gradient of an objective F at the learner's
  iterate.

Adversaries are pytrees: ``params`` and ``w0`` are array leaves (so G can be a
traced, vmapped value), the function and the kind are static.  The key of round
t is ``jax.random.fold_in(key, t)``, the same on every execution path.

References:
  Nguyen, ALT 2026, https://arxiv.org/abs/2510.03478 (the switch sequence of
  Theorem 2.5 and the non-oblivious adversary of Theorem 4.1, in order [R];
  the exact constructions D5-D7 are docs/theory.md's [D]).
  Ahn & Cutkosky, NeurIPS 2024, https://arxiv.org/abs/2405.18199
  (online-to-nonconvex conversion).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ftrl_adam import _checks
from ftrl_adam.lab.regret import bounds

KINDS = ("oblivious", "adaptive")

_f32 = jnp.float32


@dataclasses.dataclass(frozen=True, eq=False)
class Adversary:
  """A gradient oracle of a game (a pytree: ``params`` and ``w0`` are leaves).

  Attributes:
    kind: ``"oblivious"`` or ``"adaptive"``.
    fn: ``fn(params, t, key, d) -> g`` (oblivious) or
      ``fn(params, t, key, play, iterate) -> g`` (adaptive); ``t`` is the
      int32 round index (1-based), ``key`` the round's key, and ``g`` must be a
      float32 array of shape ``(d,)``.
    name: a short description, used in error messages.
    params: a pytree of arrays passed to ``fn`` (e.g. ``{"G": 1.0}``).
    w0: the initial iterate w_0, a float32 scalar or ``(d,)`` array.
    length: for an adversary built from an array, its number of rounds (the
      game's T must equal it); None otherwise.
  """

  kind: str
  fn: Callable[..., jax.Array]
  name: str
  params: Any = ()
  w0: Any = 0.0
  length: Optional[int] = None

  def gradient(
      self, t: Any, key: jax.Array, d: int, play: Optional[jax.Array] = None,
      iterate: Optional[jax.Array] = None,
  ) -> jax.Array:
    """g_t of round ``t`` given the round key (and the play/iterate if adaptive)."""
    if self.kind == "oblivious":
      return self.fn(self.params, t, key, d)
    if play is None or iterate is None:
      raise ValueError(
          f"the adaptive adversary {self.name} needs the learner's `play` and "
          "`iterate`.")
    return self.fn(self.params, t, key, play, iterate)


jax.tree_util.register_dataclass(
    Adversary, data_fields=["params", "w0"],
    meta_fields=["kind", "fn", "name", "length"])


def _w0(w0: Any) -> jax.Array:
  if _checks.is_traced(w0):
    return jnp.asarray(w0, _f32)
  arr = np.asarray(w0)
  if arr.dtype.kind not in "biuf" or arr.ndim > 1 or not np.all(np.isfinite(arr)):
    raise ValueError(
        f"`w0` must be a finite real scalar or 1-D array, got {w0!r}.")
  return jnp.asarray(w0, _f32)


def _sign_plus(x: jax.Array) -> jax.Array:
  """sign(x) with sign(0) := +1."""
  return jnp.where(x < 0, -1.0, 1.0).astype(_f32)


def _alt_sign(t: jax.Array) -> jax.Array:
  """(-1)**t for an integer t."""
  return jnp.where(t % 2 == 0, 1.0, -1.0).astype(_f32)


# The functions of the stock adversaries are module-level (and the wrappers of
# user functions compare equal when they wrap the same function), so that two
# adversaries built alike have equal tree structures: a jitted game compiled
# for one is reused for the other, whatever their (array) parameters.


@dataclasses.dataclass(frozen=True)
class _UserOblivious:
  fn: Callable[..., jax.Array]

  def __call__(self, p, t, key, d):
    return self.fn(t, key, d)


@dataclasses.dataclass(frozen=True)
class _UserAdaptive:
  fn: Callable[..., jax.Array]

  def __call__(self, p, t, key, play, w):
    return self.fn(t, key, play, w)


@dataclasses.dataclass(frozen=True)
class _GradientOf:
  F: Callable[..., jax.Array]
  stochastic: bool

  def __call__(self, p, t, key, play, w):
    if self.stochastic:
      return jax.grad(self.F)(w, key)
    return jax.grad(self.F)(w)


def _gaussian(p, t, key, d):
  return p["G"] * jax.random.normal(key, (d,), _f32)


def _rademacher(p, t, key, d):
  return p["G"] * jax.random.rademacher(key, (d,), _f32)


def _sparse(p, t, key, d):
  k_mask, k_sign = jax.random.split(key)
  mask = jax.random.bernoulli(k_mask, p["p"], (d,))
  return jnp.where(mask, p["G"] * jax.random.rademacher(k_sign, (d,), _f32),
                   0.0).astype(_f32)


def _heavy_tailed(p, t, key, d):
  return p["G"] * jax.random.t(key, p["df"], (d,), _f32)


def _from_array(p, t, key, d):
  return p["g"][t - 1]


def _alternating(p, t, key, d):
  return jnp.full((d,), p["G"] * _alt_sign(t), _f32)


def _switch(p, t, key, d):
  g = jnp.where(t <= p["L"], p["G"] * _alt_sign(t), -p["G"])
  return jnp.full((d,), g, _f32)


def _oppose(p, t, key, play, w):
  return p["G"] * _sign_plus(play)


def _abs_w(p, t, key, play, w):
  return p["G"] * _sign_plus(w)


# ----------------------------------------------------------------- oblivious


def oblivious(fn: Callable[[jax.Array, jax.Array, int], jax.Array],
              name: str = "oblivious(user)") -> Adversary:
  """An oblivious adversary from a user function ``fn(t, key, d) -> g``.

  Args:
    fn: maps the round t (int32, 1-based), the round's PRNG key and the
      dimension d to a float32 ``(d,)`` gradient.  It must not look at the
      learner (it cannot: it is not given it).
    name: description for error messages.

  Returns:
    An :class:`Adversary` of kind ``"oblivious"``.

  Example:
    >>> import jax.numpy as jnp
    >>> from ftrl_adam import regret
    >>> adv = regret.oblivious(lambda t, key, d: jnp.full((d,), 1.0 / t))
    >>> adv.gradient(4, None, 2).tolist()
    [0.25, 0.25]
  """
  return Adversary(kind="oblivious", fn=_UserOblivious(fn), name=name)


def gaussian(G: Any = 1.0) -> Adversary:
  """g_t ~ G N(0, I_d), independent over rounds (oblivious).

  Args:
    G: the scale, G >= 0.

  Returns:
    An oblivious :class:`Adversary`.

  Example:
    >>> import jax
    >>> from ftrl_adam import regret
    >>> regret.gaussian(2.0).gradient(1, jax.random.key(0), 3).shape
    (3,)
  """
  G = _checks.as_f32("G", G, low=0.0)
  return Adversary(kind="oblivious", name="gaussian", params={"G": G},
                   fn=_gaussian)


def rademacher(G: Any = 1.0) -> Adversary:
  """g_t uniform on {-G, +G}^d, independent over rounds (oblivious).

  The random-sign sequence of the minimax lower bound Omega(DG/sqrt(1-b1^2))
  (docs/theory.md D4 [R]).

  Args:
    G: the magnitude, G >= 0.

  Returns:
    An oblivious :class:`Adversary`.

  Example:
    >>> import jax
    >>> from ftrl_adam import regret
    >>> g = regret.rademacher(3.0).gradient(1, jax.random.key(0), 4)
    >>> sorted(set(abs(x) for x in g.tolist()))
    [3.0]
  """
  G = _checks.as_f32("G", G, low=0.0)
  return Adversary(kind="oblivious", name="rademacher", params={"G": G},
                   fn=_rademacher)


def sparse(G: Any = 1.0, p: Any = 0.1) -> Adversary:
  """Each coordinate is +-G with probability p, else 0 (oblivious).

  Coordinates that have seen no gradient yet exercise the 0/0 := 0 convention
  of the learner (docs/theory.md section 2).

  Args:
    G: the magnitude, G >= 0.
    p: probability that a coordinate is non-zero, in [0, 1].

  Returns:
    An oblivious :class:`Adversary`.

  Example:
    >>> import jax
    >>> from ftrl_adam import regret
    >>> g = regret.sparse(1.0, p=0.0).gradient(1, jax.random.key(0), 3)
    >>> g.tolist()
    [0.0, 0.0, 0.0]
  """
  G = _checks.as_f32("G", G, low=0.0)
  p = _checks.as_f32("p", p, low=0.0, high=1.0, high_closed=True)
  return Adversary(kind="oblivious", name="sparse", params={"G": G, "p": p},
                   fn=_sparse)


def heavy_tailed(G: Any = 1.0, df: Any = 2.0) -> Adversary:
  """g_t = G times Student-t(df) noise per coordinate (oblivious, unbounded).

  With df <= 2 the variance is infinite; the bound D3 holds for every
  sequence, bounded or not.

  Args:
    G: the scale, G >= 0.
    df: degrees of freedom, df > 0.

  Returns:
    An oblivious :class:`Adversary`.

  Example:
    >>> import jax
    >>> from ftrl_adam import regret
    >>> regret.heavy_tailed(1.0, df=1.5).gradient(1, jax.random.key(0), 2).dtype
    dtype('float32')
  """
  G = _checks.as_f32("G", G, low=0.0)
  df = _checks.as_f32("df", df, low=0.0, low_closed=False)
  return Adversary(kind="oblivious", name="heavy_tailed",
                   params={"G": G, "df": df}, fn=_heavy_tailed)


def from_array(g: Any) -> Adversary:
  """A fixed, user-given sequence: g_t = ``g[t - 1]`` (oblivious).

  Args:
    g: a finite real array of shape ``(T, d)`` (cast to float32).  The game's
      T and d must match it.

  Returns:
    An oblivious :class:`Adversary` with ``length = T``.

  Raises:
    ValueError: if ``g`` is not 2-D, not floating, or not finite.

  Example:
    >>> import numpy as np
    >>> from ftrl_adam import regret
    >>> adv = regret.from_array(np.array([[1.0, 2.0], [3.0, 4.0]]))
    >>> adv.length, adv.gradient(2, None, 2).tolist()
    (2, [3.0, 4.0])
  """
  if _checks.is_traced(g):
    arr = g
    if arr.ndim != 2 or not jnp.issubdtype(arr.dtype, jnp.floating):
      raise ValueError(
          "`g` must be a floating array of shape (T, d), got "
          f"{arr.dtype}{list(arr.shape)}.")
  else:
    arr = np.asarray(g)
    if arr.ndim != 2:
      raise ValueError(
          f"`g` must be an array of shape (T, d), got shape {arr.shape}.")
    if arr.dtype.kind != "f":
      raise ValueError(
          f"`g` must be a floating-point array, got dtype {arr.dtype}.")
    bad = ~np.isfinite(arr)
    if np.any(bad):
      t, i = np.argwhere(bad)[0]
      raise ValueError(
          f"`g` must be finite; g[{t}, {i}] = {arr[t, i]} (round t = {t + 1}).")
  return Adversary(
      kind="oblivious", name=f"from_array{tuple(arr.shape)}",
      params={"g": jnp.asarray(arr, _f32)}, length=int(arr.shape[0]),
      fn=_from_array)


def alternating(G: Any = 1.0) -> Adversary:
  """The alternating sequence D6: g_t = G (-1)**t in every coordinate [D].

  Against Algorithm 1 (c = D) its regret is about DG sqrt(1-b2)/(1-b1^2)
  (:func:`ftrl_adam.regret.alternating_order`), above the minimax order when
  b2 < b1**2.

  Args:
    G: the magnitude, G >= 0.

  Returns:
    An oblivious :class:`Adversary`.

  Example:
    >>> from ftrl_adam import regret
    >>> [regret.alternating(2.0).gradient(t, None, 1).tolist() for t in (1, 2)]
    [[-2.0], [2.0]]
  """
  G = _checks.as_f32("G", G, low=0.0)
  return Adversary(kind="oblivious", name="alternating", params={"G": G},
                   fn=_alternating)


def switch(G: Any = 1.0, b1: Any = 0.9, b2: Any = 0.999,
           kappa: Any = 1.0) -> Adversary:
  r"""The switch sequence D5 (Nguyen's Theorem 2.5 type lower bound) [D].

  L = ceil(8/(1-b2)) rounds of g_t = G(-1)^t, then g_t = -G (in every
  coordinate); the construction is meant to be played for
  T = L + k rounds, ``(L, k) = switch_lengths(b1, b2, kappa)`` (after that it
  keeps playing -G).  Against Algorithm 1 with c = D the regret with
  comparator u = +D is of order DG min(1/sqrt(1-b2), 1/(1-b1))
  (:func:`ftrl_adam.regret.switch_order`; the order is Nguyen's [R], the
  construction and constants ours [D]).  b1, b2 may be traced (a grid): the
  switch round is then data, and the game's ``horizon`` can stop each cell
  at its own L + k.

  Args:
    G: the magnitude, G >= 0.
    b1: the learner's decays the sequence is built against, in [0, 1).
    b2: as ``b1``.
    kappa: length factor of the -G phase, > 0 (docs/theory.md: [1/2, 2]).

  Returns:
    An oblivious :class:`Adversary`; ``params`` holds ``L`` and ``k``.

  Example:
    >>> from ftrl_adam import regret
    >>> adv = regret.switch(1.0, b1=0.5, b2=0.5)   # L = 16, k = 2
    >>> [adv.gradient(t, None, 1).tolist()[0] for t in (15, 16, 17, 18)]
    [-1.0, 1.0, -1.0, -1.0]
  """
  G = _checks.as_f32("G", G, low=0.0)
  b1 = _checks.as_f32("b1", b1, low=0.0, high=1.0)
  b2 = _checks.as_f32("b2", b2, low=0.0, high=1.0)
  kappa = _checks.as_f32("kappa", kappa, low=0.0, low_closed=False)
  big_l, k = bounds.switch_lengths(b1, b2, kappa)
  return Adversary(kind="oblivious", name="switch",
                   params={"G": G, "L": big_l, "k": k}, fn=_switch)


# ------------------------------------------------------------------ adaptive


def adaptive(fn: Callable[..., jax.Array], w0: Any = 0.0,
             name: str = "adaptive(user)") -> Adversary:
  """A non-oblivious adversary from ``fn(t, key, play, iterate) -> g``.

  Args:
    fn: maps the round t (int32, 1-based), the round's key, the learner's
      play Delta_t and iterate w_t (float32 ``(d,)``) to g_t (float32 ``(d,)``).
    w0: the initial iterate w_0 (scalar or ``(d,)``).
    name: description for error messages.

  Returns:
    An :class:`Adversary` of kind ``"adaptive"``.

  Example:
    >>> import jax.numpy as jnp
    >>> from ftrl_adam import regret
    >>> adv = regret.adaptive(lambda t, key, play, w: -play)
    >>> adv.gradient(1, None, 2, play=jnp.array([1.0, -2.0]),
    ...              iterate=jnp.zeros(2)).tolist()
    [-1.0, 2.0]
  """
  return Adversary(kind="adaptive", name=name, w0=_w0(w0),
                   fn=_UserAdaptive(fn))


def oppose(G: Any = 1.0) -> Adversary:
  """Adversary "oppose" of D7: g_t = G sign(Delta_t), sign(0) := +1 [D].

  It makes every round cost the learner G |Delta_t|; the adversary of Nguyen's
  Theorem 4.1 type statement that b1 = sqrt(b2) is sub-optimal against a
  non-oblivious adversary [P].

  Args:
    G: the magnitude, G >= 0.

  Returns:
    An adaptive :class:`Adversary`.

  Example:
    >>> import jax.numpy as jnp
    >>> from ftrl_adam import regret
    >>> regret.oppose(2.0).gradient(3, None, 3, play=jnp.array([-0.5, 0.0, 1.0]),
    ...                             iterate=jnp.zeros(3)).tolist()
    [-2.0, 2.0, 2.0]
  """
  G = _checks.as_f32("G", G, low=0.0)
  return Adversary(kind="adaptive", name="oppose", params={"G": G},
                   w0=jnp.zeros([], _f32), fn=_oppose)


def abs_w(G: Any = 1.0, w0: Any = 5.0) -> Adversary:
  """Adversary "|w|" of D7: the gradient of F(w) = G |w| at the iterate [D].

  g_t = G sign(w_t), sign(0) := +1, with w_t = w_0 + sum_{s<=t} Delta_s.

  Args:
    G: the magnitude, G >= 0.
    w0: the initial iterate (docs/theory.md: 5).

  Returns:
    An adaptive :class:`Adversary`.

  Example:
    >>> import jax.numpy as jnp
    >>> from ftrl_adam import regret
    >>> regret.abs_w().gradient(1, None, 2, play=jnp.zeros(2),
    ...                         iterate=jnp.array([-1.0, 2.0])).tolist()
    [-1.0, 1.0]
  """
  G = _checks.as_f32("G", G, low=0.0)
  return Adversary(kind="adaptive", name="abs_w", params={"G": G},
                   w0=_w0(w0), fn=_abs_w)


def gradient_of(F: Callable[..., jax.Array], w0: Any = 0.0, *,
                stochastic: bool = False) -> Adversary:
  """The gradient of a user objective at the learner's iterate (adaptive).

  g_t = grad F(w_t), or grad_w F(w_t, key_t) with ``stochastic=True`` (a fresh
  key each round): the online-to-nonconvex setting of Ahn & Cutkosky (2024),
  where the learner's plays are the optimizer's updates and w_t its iterate.
  Non-finite gradients are reported by the game with the round at which they
  first appeared.

  Args:
    F: a JAX function ``F(w) -> scalar`` (or ``F(w, key) -> scalar``) of a
      float32 ``(d,)`` vector.
    w0: the initial iterate (scalar or ``(d,)``).
    stochastic: whether F takes the round's PRNG key.

  Returns:
    An adaptive :class:`Adversary`.

  Example:
    >>> import jax.numpy as jnp
    >>> from ftrl_adam import regret
    >>> adv = regret.gradient_of(lambda w: 0.5 * jnp.sum(w ** 2), w0=3.0)
    >>> adv.gradient(1, None, 2, play=jnp.zeros(2),
    ...              iterate=jnp.array([3.0, -1.0])).tolist()
    [3.0, -1.0]
  """
  if not callable(F):
    raise ValueError(f"`F` must be a callable, got {F!r}.")
  if not isinstance(stochastic, bool):
    raise ValueError(f"`stochastic` must be True or False, got {stochastic!r}.")
  name = f"gradient_of({getattr(F, '__name__', 'F')})"
  return Adversary(kind="adaptive", name=name, w0=_w0(w0),
                   fn=_GradientOf(F, stochastic))
