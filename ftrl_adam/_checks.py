"""Validation and canonicalisation of hyperparameters (private).

Every factory in the package turns its numeric hyperparameters into float32
``jax.Array`` values *before* building the transform ("hyperparameters are
arrays"), so that a scalar run, an ``optax.inject_hyperparams`` run and a
vmapped grid cell execute the same float32 arithmetic.  Concrete values are
checked eagerly and a bad one raises a ``ValueError`` that names the argument
and the allowed range; traced values (inside ``jit``/``vmap``) cannot be
inspected and are passed through unchecked.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def is_traced(x: Any) -> bool:
  """True when ``x`` is a JAX tracer, whose value cannot be checked now."""
  return isinstance(x, jax.core.Tracer)


def _concrete(name: str, x: Any) -> np.ndarray | None:
  """Returns ``x`` as a NumPy array, or None for a tracer."""
  if is_traced(x):
    return None
  if isinstance(x, bool) or (isinstance(x, np.ndarray) and x.dtype == bool):
    raise ValueError(f"`{name}` must be a real number, got the boolean {x!r}.")
  try:
    arr = np.asarray(x)
  except Exception as e:  # pragma: no cover - exotic inputs
    raise ValueError(f"`{name}` must be a real number, got {x!r}.") from e
  if arr.dtype.kind not in "biuf" and not jnp.issubdtype(arr.dtype, jnp.floating):
    # (bfloat16 and the other ml_dtypes floats are floating but kind "V")
    raise ValueError(
        f"`{name}` must be a real number or array of reals, got {x!r} "
        f"(dtype {arr.dtype})."
    )
  return arr


def check_in_range(
    name: str,
    x: Any,
    *,
    low: float,
    high: float | None = None,
    low_closed: bool = True,
    high_closed: bool = False,
) -> None:
  """Raises ValueError unless every element of concrete ``x`` is in the range."""
  arr = _concrete(name, x)
  if arr is None:
    return
  lo_sym = "[" if low_closed else "("
  hi_sym = "]" if high_closed else ")"
  hi_txt = "inf" if high is None else f"{high:g}"
  allowed = f"{lo_sym}{low:g}, {hi_txt}{hi_sym}"
  bad = ~np.isfinite(arr)
  bad |= (arr < low) if low_closed else (arr <= low)
  if high is not None:
    bad |= (arr > high) if high_closed else (arr >= high)
  if np.any(bad):
    shown = arr if arr.ndim == 0 else arr[bad]
    raise ValueError(
        f"`{name}` must lie in {allowed}, got {shown.tolist()!r}."
    )


def as_f32(name: str, x: Any, **range_kwargs) -> jax.Array:
  """Checks a hyperparameter (when concrete) and returns it as float32.

  A float64 input is rounded to float32 on purpose: optimizer hyperparameters
  are float32 by the package's design, and the rounding is explicit here.
  """
  if range_kwargs:
    check_in_range(name, x, **range_kwargs)
  else:
    _concrete(name, x)
  return jnp.asarray(x, dtype=jnp.float32)


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
  if value not in allowed:
    choices = ", ".join(repr(a) for a in allowed)
    raise ValueError(f"`{name}` must be one of {choices}; got {value!r}.")
  return value


def canonical_schedule(
    name: str, learning_rate: Any
) -> Callable[[jax.Array], jax.Array]:
  """Turns a float or a schedule into a schedule returning float32.

  A constant becomes a constant schedule, so the state of the transform that
  applies it has the same structure whichever the user passes.
  """
  if callable(learning_rate):
    return lambda count: jnp.asarray(learning_rate(count), dtype=jnp.float32)
  lr = as_f32(name, learning_rate, low=0.0)
  return lambda count: lr


def check_positive_int(name: str, x: Any, low: int = 1) -> int:
  """``x`` as a Python int >= ``low``, or a ValueError naming ``name``.

  Booleans and floats are refused (``T=2.0`` is a mistake, not a count).
  """
  if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
    raise ValueError(f"`{name}` must be an integer >= {low}, got {x!r}.")
  if x < low:
    raise ValueError(f"`{name}` must be an integer >= {low}, got {x!r}.")
  return int(x)


def check_key(key: Any, name: str = "key") -> None:
  """Raises ValueError unless ``key`` is one PRNG key (typed or raw uint32)."""
  dtype = getattr(key, "dtype", None)
  shape = getattr(key, "shape", None)
  if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    if shape == ():
      return
  elif dtype == jnp.uint32 and shape is not None and len(shape) == 1:
    return
  raise ValueError(
      f"`{name}` must be one PRNG key (jax.random.key(seed) or "
      f"jax.random.PRNGKey(seed)), got {type(key).__name__} "
      f"{dtype}{list(shape) if shape is not None else ''}.")
