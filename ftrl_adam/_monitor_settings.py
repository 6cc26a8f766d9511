"""The regret monitor's hyperparameters: given, or read from the wrapped ftrl_adam (private).

:func:`ftrl_adam.regret_monitor` needs the comparators' radius D and domain,
the discount b1 and, for the bound D3, b2 and the constant c (or the
learning rate lr, with c = lr (1 - b1) / sqrt(1 - b2), ``_theory``).  Wrapping
the transform :func:`ftrl_adam.ftrl_adam` returns, it reads them from it
(:func:`ftrl_adam.ftrl.options_of`): a value given as well must agree with
the learner's (float32, to a relative 1e-6), else one line names the
argument and both values.  The domain given is the comparator set asked for
(the ball regret of a box learner is a measurement too), so it is taken from
a clipped learner only when not given.  A learning-rate schedule has no
constant c: the bound is then not tracked unless ``c`` is given.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import numpy as np

from ftrl_adam import _checks
from ftrl_adam import _d3
from ftrl_adam import _theory
from ftrl_adam import ftrl as _ftrl


class Settings(NamedTuple):
  """The checked hyperparameters of one monitor (float32 arrays)."""

  radius: jax.Array
  b1: jax.Array
  b2: Optional[jax.Array]   # None: the bound is not tracked
  c: Optional[jax.Array]
  domain: str


def _agree(name: str, given: Any, learners: Any, what: str = "") -> None:
  """ValueError if a given hyperparameter is not the wrapped learner's."""
  if given is None or learners is None or any(
      isinstance(x, jax.core.Tracer) for x in (given, learners)):
    return
  a = np.asarray(given, np.float32)
  b = np.asarray(learners, np.float32)
  if a.shape == b.shape == () and np.isclose(a, b, rtol=1e-6, atol=0.0):
    return
  raise ValueError(
      f"`{name}` = {given!r} contradicts the wrapped ftrl_adam's "
      f"{what or name} = {b.item():.6g}: leave `{name}` out to take the "
      "learner's.")


def _from_learner(opts, radius, b1, b2, c, lr, domain):
  """Each given hyperparameter checked against the ``ftrl_adam``'s; the others taken from it.

  ``domain`` is the comparator set asked for: taken from a clipped learner
  when not given, and not checked (the ball regret of a box learner is a
  measurement too).
  """
  constant = not callable(opts.learning_rate)
  clipped = opts.radius is not None
  _agree("b1", b1, opts.b1)
  _agree("b2", b2, opts.b2)
  _agree("radius", radius, opts.radius)
  if lr is not None and not constant:
    raise ValueError(
        f"`lr` = {lr!r} contradicts the wrapped ftrl_adam's learning-rate "
        "schedule (the bound D3 needs a constant one; give `c` for a "
        "reference curve).")
  _agree("lr", lr, opts.learning_rate if constant else None)
  b1 = opts.b1 if b1 is None else b1
  b2 = opts.b2 if b2 is None and (constant or c is not None) else b2
  if constant and b2 is not None:
    _agree("c", c, _theory.c_from_lr(opts.learning_rate, b1, b2),
           "c = lr (1 - b1) / sqrt(1 - b2)")
    lr = opts.learning_rate if c is None else None
  if radius is None and not clipped:
    raise ValueError(
        "`radius` is needed: the wrapped ftrl_adam has no radius (no clip). "
        "Give the comparators' radius D, e.g. the learning rate "
        "(docs/howto/regret_monitor.md, 'Choosing the radius').")
  radius = opts.radius if radius is None else radius
  domain = opts.domain if domain is None and clipped else domain
  return radius, b1, b2, c, lr, domain


def resolve(tx, radius, b1, b2, c, lr, domain) -> Settings:
  """The checked hyperparameters, read from a wrapped ``ftrl_adam`` where not given.

  Args:
    tx: the wrapped transform.
    radius, b1, b2, c, lr, domain: :func:`ftrl_adam.regret_monitor`'s
      arguments (None: not given).

  Returns:
    A :class:`Settings` (``b2`` and ``c`` None when D3 is not tracked).

  Raises:
    ValueError: a missing, bad or contradicting argument, named.
  """
  opts = _ftrl.options_of(tx)
  if opts is not None:
    radius, b1, b2, c, lr, domain = _from_learner(
        opts, radius, b1, b2, c, lr, domain)
  for arg, value in (("radius", radius), ("b1", b1)):
    if value is None:
      raise ValueError(
          f"`{arg}` is needed (it is read from the wrapped transform only "
          "when that is the transform `fa.ftrl_adam(...)` returned).")
  domain = _checks.check_choice("domain", "box" if domain is None else domain,
                                _d3.DOMAINS)
  radius = _checks.as_f32("radius", radius, low=0.0, low_closed=False)
  b1 = _checks.as_f32("b1", b1, low=0.0, high=1.0)
  if c is not None and lr is not None:
    raise ValueError("Give `c` or `lr`, not both: c = lr (1 - b1) / "
                     "sqrt(1 - b2).")
  if callable(lr):
    raise ValueError("`lr` must be a constant learning rate for the bound D3 "
                     f"(its c is constant), got the schedule {lr!r}.")
  if (c is not None or lr is not None) and b2 is None:
    raise ValueError("`c` / `lr` are for the bound D3, which also needs "
                     "`b2` (the learner's second-moment decay).")
  if b2 is None:
    return Settings(radius, b1, None, None, domain)
  b2 = _checks.as_f32("b2", b2, low=0.0, high=1.0, low_closed=False)
  if c is None and lr is None:
    raise ValueError("The bound D3 needs the learner's constant: give `c` "
                     "(c = D is the theory's choice) or `lr`.")
  if lr is not None:
    c = _theory.c_from_lr(
        _checks.as_f32("lr", lr, low=0.0, low_closed=False), b1, b2)
  return Settings(radius, b1, b2,
                   _checks.as_f32("c", c, low=0.0, low_closed=False), domain)
