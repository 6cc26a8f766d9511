r"""Online linear optimisation games: any optax transform against an adversary.

A game of T rounds in d dimensions (docs/theory.md sections 1 and 3):

* round t = 1..T: the learner has its play Delta_t (Delta_1 = 0, the play
  before any update) and iterate w_t = w_0 + sum_{s<=t} Delta_s;
* the adversary produces g_t (oblivious: from t and a key; adaptive: from
  Delta_t, w_t, a user objective F, ...);
* the learner pays the linear loss <g_t, Delta_t>;
* ``updates, state = learner.update(g_t, state, w_t)`` gives Delta_{t+1}.

All of it is one ``jax.lax.scan`` body that calls the transform's own
``update``: there is no second copy of the update rule.  The game keeps
streaming sums (O(d) memory, docs/theory.md section 1 and section 3 online forms):

    r_t = lam r_{t-1} + <g_t, Delta_t>,     M_t = lam M_{t-1} + g_t,

so that the lam-discounted regret R_T(u) = sum_t lam^{T-t} <g_t, Delta_t - u>
equals r_T - <M_T, u>, and its supremum over the box / ball of radius D is
r_T + D ||M_T||_1 / r_T + D ||M_T||_2 [D].  With the constants of Algorithm 1
(:class:`Theory`) it also accumulates the streams of the upper bound D3
(:func:`ftrl_adam.regret.update_streams`), computed from g_t alone.

Games are pure functions of arrays and a PRNG key: a jitted function of
(b1, b2, key) can be ``jax.vmap``-ped over a grid and gives, cell by cell, the
same numbers as a single game (bit for bit in the tested configurations; the
hyperparameters pass an ``optimization_barrier`` so that constants and
arguments compile alike).  One caveat, from XLA rather than from this code:
the CPU backend contracts ``a * b + c`` into a fused multiply-add depending on
its fusion decisions, which can differ between a batched and an unbatched
program; a 1-ulp difference then appears (observed: the "|w|" adversary at
d = 1, an adversary that switches with ``lax.switch``), and an adaptive
game can amplify it.  Compare such games with a tolerance.

References:
  Nguyen, *How to Set beta1, beta2 in Adam: An Online Learning Perspective*,
  ALT 2026, https://arxiv.org/abs/2510.03478.
  Ahn, Zhang, Kook & Dai, ICML 2024, https://arxiv.org/abs/2402.01567.
  Ahn & Cutkosky, NeurIPS 2024, https://arxiv.org/abs/2405.18199.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ftrl_adam import _checks
from ftrl_adam import _theory
from ftrl_adam import ftrl as _ftrl
from ftrl_adam.lab.engine.progress import report_rounds
from ftrl_adam.lab.regret import _parallel
from ftrl_adam.lab.regret import bounds
from ftrl_adam.lab.regret import rounds
from ftrl_adam.lab.regret.adversaries import Adversary
from ftrl_adam.lab.regret.rounds import GameResult
from ftrl_adam.lab.regret.rounds import Theory

METHODS = ("sequential", "parallel")

DOMAINS = bounds.DOMAINS

_f32 = jnp.float32


# ---------------------------------------------------------------- the learner


def theory_constants(b1: Any, b2: Any, radius: Any,
                     c: Optional[Any] = None) -> Theory:
  """:class:`Theory` of Algorithm 1 with c = D by default (float32, checked).

  Args:
    b1: in (0, 1).
    b2: in (0, 1).
    radius: D > 0.
    c: c > 0, default D (the theory's choice [R]).

  Returns:
    A :class:`Theory`.

  Example:
    >>> from ftrl_adam import regret
    >>> regret.theory_constants(0.9, 0.99, 2.0).c.tolist()
    2.0
  """
  b1 = _checks.as_f32("b1", b1, low=0.0, high=1.0, low_closed=False)
  b2 = _checks.as_f32("b2", b2, low=0.0, high=1.0, low_closed=False)
  radius = _checks.as_f32("radius", radius, low=0.0, low_closed=False)
  c = radius if c is None else _checks.as_f32("c", c, low=0.0, low_closed=False)
  return Theory(b1=b1, b2=b2, c=c)


def theory_learner(b1: Any, b2: Any, radius: Any, *, c: Optional[Any] = None,
                   domain: str = "box") -> optax.GradientTransformationExtraArgs:
  r"""Algorithm 1 of Nguyen (2026): the learner the bounds D3, D4 are about.

  ``ftrl_adam(lr, b1, b2, eps=0, radius=D, bias_correction=False)`` with
  ``lr = c sqrt(1 - b2) / (1 - b1)``, so that c = lr (1 - b1)/sqrt(1 - b2) and
  its FTRL rate is eta_t = c b1^{t-1} / sqrt(V_{t-1}) (docs/theory.md section 2, [D]).
  The theory's choice is c = D [R].  For ``domain="ball"`` the second moment
  is global (one scalar from ||g||^2, Ahn & Cutkosky 2024), for which the
  argmin is the Euclidean projection of -eta H.

  Args:
    b1: in (0, 1) (may be traced).
    b2: in (0, 1) (may be traced).
    radius: D > 0.
    c: c > 0, default D.
    domain: ``"box"`` or ``"ball"``.

  Returns:
    The ``optax`` transform (the chain of :func:`ftrl_adam.ftrl_adam`).

  Example:
    >>> import jax.numpy as jnp
    >>> from ftrl_adam import regret
    >>> tx = regret.theory_learner(0.9, 0.99, radius=1.0)
    >>> state = tx.init(jnp.zeros(2))
    >>> d, state = tx.update(jnp.array([2.0, -0.5]), state)
    >>> d.tolist()  # -c * g / |g| after one gradient
    [-1.0, 1.0]

  References:
    Nguyen, ALT 2026, https://arxiv.org/abs/2510.03478 (Algorithm 1).
  """
  _checks.check_choice("domain", domain, DOMAINS)
  theory = theory_constants(b1, b2, radius, c)
  lr = _theory.lr_from_c(theory.c, theory.b1, theory.b2)
  return _ftrl.ftrl_adam(
      lr, theory.b1, theory.b2, 0.0, radius=radius, domain=domain,
      bias_correction=False,
      second_moment="per_coordinate" if domain == "box" else "global")


# ---------------------------------------------------------------- validation


def _spec(x):
  return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))


def check_adversary(adversary: Any, T: int, d: int, key: Any) -> None:
  if not isinstance(adversary, Adversary):
    raise ValueError(
        "`adversary` must be a regret.Adversary (e.g. regret.gaussian(), "
        f"regret.oppose(), regret.gradient_of(F)), got {adversary!r}.")
  _checks.check_choice("adversary.kind", adversary.kind, ("oblivious",
                                                          "adaptive"))
  if adversary.length is not None and adversary.length != T:
    raise ValueError(
        f"`adversary` ({adversary.name}) has {adversary.length} rounds but "
        f"T = {T}.")
  w0_shape = jnp.shape(adversary.w0)
  if w0_shape not in ((), (d,)):
    raise ValueError(
        f"`adversary.w0` must be a scalar or have shape ({d},), got shape "
        f"{w0_shape}.")
  vec = jax.ShapeDtypeStruct((d,), _f32)
  t_spec = jax.ShapeDtypeStruct((), jnp.int32)
  try:
    out = jax.eval_shape(
        lambda adv, t, k, x, w: adv.gradient(t, k, d, x, w),
        jax.tree.map(_spec, adversary), t_spec, _spec(key), vec, vec)
  except Exception as e:  # noqa: BLE001 - re-raised with context
    raise ValueError(
        f"`adversary` ({adversary.name}) failed to produce a gradient of "
        f"shape ({d},): {type(e).__name__}: {e}") from e
  if not isinstance(out, jax.ShapeDtypeStruct):
    raise ValueError(
        f"`adversary` ({adversary.name}) must return one float32 array of "
        f"shape ({d},), got {out!r}.")
  if out.shape != (d,) or out.dtype != _f32:
    raise ValueError(
        f"`adversary` ({adversary.name}) must return a float32 array of shape "
        f"({d},), got {out.dtype}{list(out.shape)}.")


def _check_u(u: Any, d: int) -> jax.Array:
  if u is None:
    return jnp.zeros((d,), _f32)
  if jnp.shape(u) not in ((), (d,)):
    raise ValueError(
        f"`u` must be a scalar or have shape ({d},), got shape {jnp.shape(u)}.")
  u = _checks.as_f32("u", u)
  if not _checks.is_traced(u) and not np.all(np.isfinite(np.asarray(u))):
    raise ValueError(f"`u` must be finite, got {u!r}.")
  return jnp.broadcast_to(u, (d,))


def _check_horizon(horizon: Any, T: int) -> Optional[jax.Array]:
  if horizon is None:
    return None
  if jnp.shape(horizon) != ():
    raise ValueError(f"`horizon` must be a scalar, got shape {jnp.shape(horizon)}.")
  if not _checks.is_traced(horizon):
    h = np.asarray(horizon)
    if h.dtype.kind not in "iu" or not 1 <= int(h) <= T:
      raise ValueError(
          f"`horizon` must be an integer in [1, T = {T}], got {horizon!r}.")
  elif not jnp.issubdtype(horizon.dtype, jnp.integer):
    raise ValueError(f"`horizon` must be an integer, got dtype {horizon.dtype}.")
  return jnp.asarray(horizon, jnp.int32)


def _canonical_theory(theory: Any) -> Optional[Theory]:
  if theory is None:
    return None
  if not isinstance(theory, Theory):
    raise ValueError(
        f"`theory` must be a regret.Theory(b1, b2, c) or None, got {theory!r}.")
  return Theory(
      b1=_checks.as_f32("theory.b1", theory.b1, low=0.0, high=1.0,
                        low_closed=False),
      b2=_checks.as_f32("theory.b2", theory.b2, low=0.0, high=1.0,
                        low_closed=False),
      c=_checks.as_f32("theory.c", theory.c, low=0.0, low_closed=False))


def _common_checks(adversary, T, d, key, domain, record, method):
  T = _checks.check_positive_int("T", T)
  d = _checks.check_positive_int("d", d)
  _checks.check_choice("domain", domain, DOMAINS)
  _checks.check_choice("method", method, METHODS)
  if not isinstance(record, bool):
    raise ValueError(f"`record` must be True or False, got {record!r}.")
  _checks.check_key(key)
  check_adversary(adversary, T, d, key)
  if method == "parallel" and adversary.kind != "oblivious":
    raise ValueError(
        "method='parallel' needs an oblivious adversary (the whole sequence is "
        f"generated in advance); `adversary` ({adversary.name}) is adaptive. "
        "Use method='sequential'.")
  return T, d


def raise_if_nonfinite(result: GameResult, name: str = "the adversary") -> None:
  """Raises ValueError if a concrete game saw a non-finite gradient.

  :func:`play` and :func:`game` call it themselves when their result is
  concrete; inside ``jit``/``vmap`` read ``result.first_nonfinite_round``
  instead (0 means none).

  Args:
    result: a :class:`GameResult` (unbatched or batched).
    name: how to call the adversary in the message.

  Raises:
    ValueError: naming the first round with a non-finite gradient.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from ftrl_adam import regret
    >>> F = lambda w: jnp.sum(jnp.sqrt(w))   # NaN gradient once w < 0
    >>> adv = regret.gradient_of(F, w0=1.0)
    >>> try:
    ...   regret.game(0.9, 0.99, radius=0.3, T=10, d=1, adversary=adv,
    ...               key=jax.random.key(0))
    ... except ValueError as e:
    ...   print(e)  # doctest: +ELLIPSIS
    the adversary gradient_of(<lambda>) returned ... at round t = 5; ...
  """
  first = result.first_nonfinite_round
  if _checks.is_traced(first):
    return
  first = np.asarray(first)
  if np.any(first > 0):
    bad = first[first > 0]
    where = "" if first.ndim == 0 else f" (in {bad.size} of {first.size} games)"
    raise ValueError(
        f"{name} returned a non-finite gradient (NaN or inf) first at "
        f"round t = {int(bad.min())}{where}; "
        "result.first_nonfinite_round holds the round of each game.")


# ---------------------------------------------------------------- the games


def _sequential(learner, adversary, key, discount, radius, u, theory, horizon,
                T, d, domain, record, tick=False):
  carry0 = rounds.initial_carry(learner, rounds.w0_vec(adversary, d), d, domain)
  ts = jnp.arange(1, T + 1, dtype=jnp.int32)

  if adversary.kind == "oblivious":
    # The stream drawn a block of rounds at a time, exactly as the β-grid's
    # shared streams draw it (rounds.oblivious_blocks): the same arithmetic, so a
    # grid cell equals its single game bit for bit (reproducible options).
    def play_block(carry, tb):
      if tick:
        report_rounds(tb[-1], T, times=T // tb.shape[0])
      gb = rounds.block_gradients(adversary, key, tb, d)
      return jax.lax.scan(
          lambda c, tg: rounds.play_round(learner, theory, c, tg[1], tg[0], discount,
                               radius, domain, horizon, record), carry, (tb, gb))

    (_, _, _, acc), traj = jax.lax.scan(play_block, carry0,
                                        rounds.oblivious_blocks(ts))
    if record:
      traj = jax.tree.map(lambda x: x.reshape((T,) + x.shape[2:]), traj)
    return rounds.finish(acc, u, radius, theory, domain, d, traj)

  def body(carry, t):
    if tick:
      report_rounds(t, T)
    _, delta, w, _ = carry
    g = adversary.gradient(t, jax.random.fold_in(key, t), d, delta, w)
    return rounds.play_round(learner, theory, carry, g, t, discount, radius, domain,
                  horizon, record)

  (_, _, _, acc), traj = jax.lax.scan(body, carry0, ts)
  return rounds.finish(acc, u, radius, theory, domain, d, traj)


def _play_impl(learner, adversary, key, discount, radius, u, theory, horizon,
               *, T, d, domain, record, method, tick=False):
  adversary, discount, radius, u, theory, horizon = (
      jax.lax.optimization_barrier(
          (adversary, discount, radius, u, theory, horizon)))
  if method == "sequential":
    return _sequential(learner, adversary, key, discount, radius, u, theory,
                       horizon, T, d, domain, record, tick)
  return _parallel.parallel_game(learner, adversary, key, discount, radius, u, theory,
                        horizon, T, d, domain, record)


_play_jit = jax.jit(
    _play_impl,
    static_argnames=("learner", "T", "d", "domain", "record", "method"))


def play(
    learner: optax.GradientTransformation,
    adversary: Adversary,
    *,
    T: int,
    d: int,
    key: jax.Array,
    radius: Any,
    discount: Optional[Any] = None,
    u: Optional[Any] = None,
    theory: Optional[Theory] = None,
    domain: str = "box",
    horizon: Optional[Any] = None,
    record: bool = False,
    method: str = "sequential",
) -> GameResult:
  r"""Plays any optax transform as an online learner against an adversary.

  T rounds in d dimensions under one ``jax.lax.scan`` (see the module
  docstring for the round semantics); returns the lam-discounted regret

  .. math:: R_T(u) = \sum_{t=1}^T \lambda^{T-t} \langle g_t, \Delta_t - u\rangle

  against the best comparator of the box and of the ball of radius D, against
  ``u``, and, given the learner's :class:`Theory`, the bounds D3 and D4
  (docs/theory.md section 3 [D]).  Identity D2: for Algorithm 1 (lam = b1) this is
  b1^T times the FTRL regret on the scaled losses b1^{-t} g_t [D].

  ``method="parallel"`` (oblivious adversaries, ``ftrl_adam`` chains): the
  moments, the discounted sums and the bound streams are computed with
  ``jax.lax.associative_scan`` (O(log T) depth), and every play with the
  transform's own ``update`` vmapped over t; equal to the sequential path to
  float32 rounding.  It needs ``theory`` for the learner's b1, b2.

  Args:
    learner: any ``optax.GradientTransformation`` acting on a float32 ``(d,)``
      vector (its ``update`` receives the iterate w_t as ``params``).
    adversary: an :class:`ftrl_adam.regret.Adversary`.
    T: number of rounds, an int >= 1.
    d: dimension, an int >= 1.
    key: a PRNG key; round t uses ``jax.random.fold_in(key, t)``.
    radius: D >= 0 of the comparator set (and of the learner, for the bound).
    discount: lam in [0, 1]; default ``theory.b1`` (required without theory).
    u: comparator, scalar or ``(d,)``; default 0.
    theory: :class:`Theory` of the learner, or None (bound fields are NaN).
    domain: ``"box"`` or ``"ball"``: the learner's domain, for the bound.
    horizon: optional int32 scalar in [1, T] (may be traced): rounds after it
      are skipped (state and sums frozen), so a vmapped grid can give each
      cell its own number of rounds under one static T.
    record: also return the :class:`Trajectory` (O(T d) memory).
    method: ``"sequential"`` or ``"parallel"``.

  Returns:
    A :class:`GameResult`.

  Raises:
    ValueError: bad T, d, key, adversary (shape, dtype, length), radius,
      discount, u, horizon or method; or, when the result is concrete, a
      non-finite gradient (the message names the round).

  Example:
    >>> import jax, optax
    >>> from ftrl_adam import regret
    >>> res = regret.play(optax.sgd(0.1), regret.rademacher(1.0), T=100, d=3,
    ...                   key=jax.random.key(0), radius=1.0, discount=0.9)
    >>> bool(res.regret_box >= res.regret_u)  # u = 0 lies in the box
    True
  """
  T, d = _common_checks(adversary, T, d, key, domain, record, method)
  if not (hasattr(learner, "init") and hasattr(learner, "update")):
    raise ValueError(
        f"`learner` must be an optax GradientTransformation, got {learner!r}.")
  theory = _canonical_theory(theory)
  radius = _checks.as_f32("radius", radius, low=0.0)
  if discount is None:
    if theory is None:
      raise ValueError(
          "`discount` is required when no `theory` is given (the game's "
          "discount defaults to the learner's b1 = theory.b1).")
    discount = theory.b1
  discount = _checks.as_f32("discount", discount, low=0.0, high=1.0,
                            high_closed=True)
  if method == "parallel":
    if theory is None:
      raise ValueError(
          "method='parallel' needs `theory=regret.Theory(b1, b2, c)` with the "
          "learner's decays, to rebuild its moments.")
    _parallel.check_learner_state(
        jax.eval_shape(learner.init, jax.ShapeDtypeStruct((d,), _f32)))
  u = _check_u(u, d)
  horizon = _check_horizon(horizon, T)
  result = _play_jit(
      adversary=adversary, key=key, discount=discount, radius=radius, u=u,
      theory=theory, horizon=horizon, learner=learner, T=T, d=d,
      domain=domain, record=record, method=method)
  raise_if_nonfinite(result, f"the adversary {adversary.name}")
  if (method == "parallel" and not _checks.is_traced(result.loss)
      and np.isnan(np.asarray(result.loss)).any()):
    raise ValueError(
        "method='parallel': `theory` (b1, b2) does not match the learner's "
        "own moments (its first two steps differ from the moments rebuilt "
        "from theory.b1, theory.b2); pass the learner's decays in `theory`, "
        "or use method='sequential'.")
  return result


def _game_impl(b1, b2, radius, c, adversary, key, discount, u, horizon, *, T,
               d, domain, record, method, tick=False):
  # Constants (Python floats in a user's jit) and arguments (an eager call, a
  # vmapped grid) must execute the same arithmetic: the barrier stops XLA from
  # folding the hyperparameters into the program, so that every way of
  # calling a game gives bit-identical numbers.
  b1, b2, radius, c = jax.lax.optimization_barrier((b1, b2, radius, c))
  theory = Theory(b1=b1, b2=b2, c=c)
  learner = theory_learner(b1, b2, radius, c=c, domain=domain)
  return _play_impl(learner, adversary, key, discount, radius, u, theory,
                    horizon, T=T, d=d, domain=domain, record=record,
                    method=method, tick=tick)


def grid_cell_game(b1, b2, radius, c, adversary, key, horizon=None, *,
                   T: int, d: int, domain: str = "box",
                   method: str = "sequential") -> GameResult:
  """:func:`game` as a grid cell (unchecked, traced arguments) with progress.

  The same computation as :func:`game` with discount b1 and u = 0; it also
  reports its rounds to the running grid's progress line
  (:func:`ftrl_adam.grid.report_rounds`).  For the lab's runners.
  """
  return _game_impl(b1, b2, radius, c, adversary, key, b1,
                    jnp.zeros((d,), _f32), horizon, T=T, d=d, domain=domain,
                    record=False, method=method,
                    tick=method == "sequential")


_game_jit = jax.jit(
    _game_impl, static_argnames=("T", "d", "domain", "record", "method"))


def game(
    b1: Any,
    b2: Any,
    *,
    radius: Any,
    T: int,
    d: int,
    adversary: Adversary,
    key: jax.Array,
    c: Optional[Any] = None,
    domain: str = "box",
    discount: Optional[Any] = None,
    u: Optional[Any] = None,
    horizon: Optional[Any] = None,
    record: bool = False,
    method: str = "sequential",
) -> GameResult:
  r"""A game of the theory's learner, Algorithm 1, against an adversary.

  :func:`play` with ``learner = theory_learner(b1, b2, radius, c=c,
  domain=domain)`` (uncorrected, eps = 0, clipped; c = D by default), its
  :class:`Theory` for the bounds, and discount b1.  b1, b2, radius, c, u and
  horizon may be traced: ``jax.vmap`` of a jitted function of (b1, b2, key)
  runs a grid whose cells equal single games.  Compiled once per (adversary,
  T, d, domain, record, method).

  The D3 bound it reports is this project's [D]; Nguyen's Theorem 2.1 is the
  same statement in order [R].

  Args:
    b1: in (0, 1).
    b2: in (0, 1).
    radius: D > 0.
    T: number of rounds.
    d: dimension.
    adversary: an :class:`ftrl_adam.regret.Adversary`.
    key: a PRNG key.
    c: the constant of Algorithm 1, default D.
    domain: ``"box"`` or ``"ball"`` (ball: global second moment).
    discount: default b1 (the theory's).
    u: comparator for ``regret_u`` / ``bound_u``, default 0.
    horizon: optional number of live rounds <= T (see :func:`play`).
    record: also return the trajectory.
    method: ``"sequential"`` or ``"parallel"`` (oblivious adversaries).

  Returns:
    A :class:`GameResult`.

  Example:
    >>> import jax
    >>> from ftrl_adam import regret
    >>> res = regret.game(0.9, 0.99, radius=1.0, T=200, d=4,
    ...                   adversary=regret.gaussian(1.0), key=jax.random.key(0))
    >>> bool(res.regret_box <= res.bound)   # D3
    True

  References:
    Nguyen, ALT 2026, https://arxiv.org/abs/2510.03478.
  """
  T, d = _common_checks(adversary, T, d, key, domain, record, method)
  theory = theory_constants(b1, b2, radius, c)
  radius = _checks.as_f32("radius", radius, low=0.0, low_closed=False)
  discount = theory.b1 if discount is None else _checks.as_f32(
      "discount", discount, low=0.0, high=1.0, high_closed=True)
  u = _check_u(u, d)
  horizon = _check_horizon(horizon, T)
  result = _game_jit(theory.b1, theory.b2, radius, theory.c, adversary, key,
                     discount, u, horizon, T=T, d=d, domain=domain,
                     record=record, method=method)
  raise_if_nonfinite(result, f"the adversary {adversary.name}")
  return result
