"""Options of experiment specs, and the checks they share (private to the lab).

An experiment (the beta-grid, a training study) lists its options once, as a
tuple of :class:`Option`: name, default, help text.  Its factory function
(``regret.beta_grid``, ``studies.make_study``) fills the defaults from that list,
and the ``ftrl-adam`` command line builds its flags from it; a ``ValueError``
whose message names an option (`` `b1` ``) becomes the flag's error
(``--b1``).  Nothing is listed twice.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ftrl_adam import _checks
from ftrl_adam import _theory
from ftrl_adam.lab import engine as grid

# Shared with the optimizer layer (ftrl_adam.ftrl.DOMAINS); re-exported here.
from ftrl_adam.ftrl import DOMAINS  # noqa: F401  pylint: disable=unused-import

AXIS_HELP = ("a list '0.9,0.99', 'lin:lo:hi:n', 'log:lo:hi:n' or "
             "'log1m:lo:hi:n' (1 - b log-spaced)")


@dataclasses.dataclass(frozen=True)
class Option:
  """One option of an experiment spec (a keyword argument and a CLI flag).

  Attributes:
    name: the keyword argument (``chunk_size``).
    default: its default, in the form the command line would give it.
    help: one line for ``--help`` (the default is appended).
    type: how the command line converts the text (``str``, ``int``, ``float``).
    choices: the allowed values, if a closed set.
    flag: the command-line flag; default ``--`` + name with ``_`` -> ``-``.
    cli: False for options that only Python callers can give.
  """

  name: str
  default: Any
  help: str
  type: Callable[[str], Any] = str
  choices: Optional[tuple[str, ...]] = None
  flag: Optional[str] = None
  cli: bool = True

  @property
  def cli_flag(self) -> str:
    return self.flag or "--" + self.name.replace("_", "-")


def fill(options: Sequence[Option], given: Mapping[str, Any],
         what: str) -> dict[str, Any]:
  """``given`` completed with the options' defaults; unknown names refused."""
  names = [o.name for o in options]
  unknown = [k for k in given if k not in names]
  if unknown:
    raise TypeError(f"{what}() got unexpected option(s) {unknown}; it takes "
                    f"{', '.join(names)}.")
  return {o.name: given.get(o.name, o.default) for o in options}


def cli_words(message: str, options: Sequence[Option],
              extra: Sequence[tuple[str, str]] = ()) -> str:
  """Replaces `` `name` `` of an option by its flag in an error message."""
  for o in options:
    if o.cli:
      message = message.replace(f"`{o.name}`", o.cli_flag)
  for arg, flag in extra:
    message = message.replace(arg, flag)
  return message


# ----------------------------------------------------------------------------
# Checks of axis values, seeds and numbers.
# ----------------------------------------------------------------------------

def axis(name: str, spec: Any, *, low: float, high: Optional[float] = None,
         low_closed: bool = False) -> tuple[float, ...]:
  """A checked float axis: a spec string, a list or a scalar.

  The values are checked as the cells will see them (float32); duplicates are
  refused (they would run the same games twice).
  """
  if isinstance(spec, (int, float, np.integer, np.floating)) and not isinstance(
      spec, bool):
    spec = [spec]
  try:
    values = grid.parse_axis(spec)
  except ValueError as e:
    raise ValueError(f"`{name}`: {e}") from e
  arr = np.asarray(values)
  if arr.dtype.kind not in "iuf":
    raise ValueError(f"`{name}` must hold numbers, got {spec!r}.")
  vals = tuple(float(v) for v in arr.astype(np.float32))
  lo = "[" if low_closed else "("
  allowed = f"{lo}{low:g}, {'inf' if high is None else format(high, 'g')})"
  bad = [v for v in vals
         if not math.isfinite(v) or (v < low if low_closed else v <= low)
         or (high is not None and v >= high)]
  if bad:
    raise ValueError(
        f"`{name}` values must lie in {allowed} (as float32), got "
        f"{bad[:5]!r}{' ...' if len(bad) > 5 else ''} from {spec!r}.")
  dup = sorted({v for v in vals if vals.count(v) > 1}) if len(
      set(vals)) != len(vals) else []
  if dup:
    raise ValueError(f"`{name}` has duplicate values {dup[:5]!r} (as "
                     f"float32): each would run the same cells twice.")
  return vals


def seeds(spec: Any) -> tuple[int, ...]:
  """Seeds from a count n (0..n-1), a list of ints, or an axis spec."""
  if isinstance(spec, str) and spec.strip().lstrip("-").isdigit():
    spec = int(spec)
  single = isinstance(spec, (float, np.floating)) or (
      isinstance(spec, str) and "," not in spec and ":" not in spec)
  if single:      # "2.0", "1e0": a count or a seed? Neither is guessed.
    raise ValueError(
        f"`seeds` must be a number of seeds (an integer >= 1: seeds 0..n-1) "
        f"or a list of integer seeds such as 3,7; got {spec!r}.")
  if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
    if spec < 1:
      raise ValueError(
          f"`seeds` must be a number of seeds >= 1 (seeds 0..n-1) or a list "
          f"of integers, got {spec!r}.")
    return tuple(range(int(spec)))
  try:
    values = grid.parse_axis(spec)
  except ValueError as e:
    raise ValueError(f"`seeds`: {e}") from e
  if not np.all(np.equal(np.mod(values, 1), 0)):
    raise ValueError(f"`seeds` must be integers, got {spec!r}.")
  out = tuple(int(v) for v in values)
  if any(not -2 ** 31 <= v < 2 ** 31 for v in out):
    raise ValueError(f"`seeds` must fit in int32, got {spec!r}.")
  if len(set(out)) != len(out):
    raise ValueError(f"`seeds` has duplicates: {list(out)!r}.")
  return out


positive_int = _checks.check_positive_int


def positive_float(name: str, x: Any, *, zero_ok: bool = False) -> float:
  """``x`` as a finite float32-exact float > 0 (>= 0 with ``zero_ok``)."""
  try:
    v = float(np.float32(x))
  except (TypeError, ValueError) as e:
    raise ValueError(f"`{name}` must be a number, got {x!r}.") from e
  if isinstance(x, bool) or not math.isfinite(v) or (v < 0 if zero_ok else v <= 0):
    raise ValueError(
        f"`{name}` must be a finite number {'>=' if zero_ok else '>'} 0, got "
        f"{x!r}.")
  return v


def choice(name: str, value: Any, allowed: Sequence[str]) -> str:
  return _checks.check_choice(name, value, allowed)


# ----------------------------------------------------------------------------
# The learning rate and the constant c of Algorithm 1.
# ----------------------------------------------------------------------------

def c_from_lr(lr: np.ndarray, b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
  """c = lr (1 - b1) / sqrt(1 - b2) (docs/theory.md section 2), float32 NumPy."""
  return np.asarray(_theory.c_from_lr(lr, b1, b2), np.float32)


def lr_from_c(c: np.ndarray, b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
  """lr = c sqrt(1 - b2) / (1 - b1), the inverse of :func:`c_from_lr`."""
  return np.asarray(_theory.lr_from_c(c, b1, b2), np.float32)
