"""Axes and tidy tables: the engine's data (NumPy only, nothing compiled).

A *table* is a ``dict name -> array`` with one entry per cell along the
first axis (a *tidy* table: one row per cell, one column per setting or
result).  Axes are built with :func:`linspace`, :func:`logspace`,
:func:`logspace_one_minus` (b values with ``1 - b`` log-spaced),
:func:`seeds`, explicit lists, or :func:`parse_axis` for command-line specs;
:func:`product` makes their Cartesian product; :func:`select` and
:func:`pivot` read results back.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

Table = dict[str, np.ndarray]


def _check_n(n: Any) -> int:
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"`n` must be an integer >= 1, got {n!r}.")
  return int(n)


def linspace(lo: float, hi: float, n: int) -> np.ndarray:
  """``n`` evenly spaced values from ``lo`` to ``hi`` inclusive (float64).

  Example:
    >>> from ftrl_adam import grid
    >>> grid.linspace(0.0, 0.9, 4).tolist()
    [0.0, 0.3, 0.6, 0.9]
  """
  return np.linspace(float(lo), float(hi), _check_n(n))


def logspace(lo: float, hi: float, n: int) -> np.ndarray:
  """``n`` log-spaced values from ``lo`` to ``hi`` inclusive (learning rates, radii).

  Example:
    >>> from ftrl_adam import grid
    >>> grid.logspace(1e-3, 1e-1, 3).tolist()
    [0.001, 0.01, 0.1]
  """
  lo, hi = float(lo), float(hi)
  if not (lo > 0 and hi > 0):
    raise ValueError(f"logspace needs lo > 0 and hi > 0, got {lo!r}, {hi!r}.")
  out = np.geomspace(lo, hi, _check_n(n))
  out[0], out[-1] = lo, hi
  return out


def logspace_one_minus(lo: float, hi: float, n: int) -> np.ndarray:
  """``n`` values of b from ``lo`` to ``hi`` with ``1 - b`` log-spaced.

  The natural axis for momentum parameters: 0.9, 0.99, 0.999 are equally
  spaced.  Both ends are included exactly.

  Args:
    lo: the first b, in [0, 1).
    hi: the last b, in [0, 1).
    n: number of values.

  Returns:
    float64 array of b values.

  Example:
    >>> from ftrl_adam import grid
    >>> grid.logspace_one_minus(0.9, 0.999, 3).round(6).tolist()
    [0.9, 0.99, 0.999]
  """
  lo, hi = float(lo), float(hi)
  for name, v in (("lo", lo), ("hi", hi)):
    if not 0.0 <= v < 1.0:
      raise ValueError(f"`{name}` must lie in [0, 1), got {v!r}.")
  out = 1.0 - np.geomspace(1.0 - lo, 1.0 - hi, _check_n(n))
  out[0], out[-1] = lo, hi
  return out


def seeds(n: int, start: int = 0) -> np.ndarray:
  """The integer seeds ``start, ..., start + n - 1`` (int32).

  Example:
    >>> from ftrl_adam import grid
    >>> grid.seeds(3).tolist()
    [0, 1, 2]
  """
  return np.arange(int(start), int(start) + _check_n(n), dtype=np.int32)


_AXIS_FORMS = ("'v1,v2,...'", "'lin:lo:hi:n'", "'log:lo:hi:n'",
               "'log1m:lo:hi:n' (1-b log-spaced)", "'range:stop'",
               "'range:start:stop[:step]'")


def parse_axis(spec: str | Sequence[float] | np.ndarray,
               dtype: Optional[Any] = None) -> np.ndarray:
  """An axis from a command-line spec, or an explicit list.

  Forms: ``"0.9,0.99,0.999"`` (floats), ``"lin:0:0.9:10"`` (:func:`linspace`),
  ``"log:1e-4:1e-1:4"`` (:func:`logspace`), ``"log1m:0.5:0.999:8"``
  (:func:`logspace_one_minus`), ``"range:8"`` or ``"range:2:10:2"`` (integers).

  Args:
    spec: the string, or a list/array that is returned as an array.
    dtype: optional dtype to cast to.

  Returns:
    a 1-D NumPy array.

  Example:
    >>> from ftrl_adam import grid
    >>> grid.parse_axis("log1m:0.9:0.999:3").round(6).tolist()
    [0.9, 0.99, 0.999]
    >>> grid.parse_axis("range:3").tolist()
    [0, 1, 2]
  """
  if not isinstance(spec, str):
    out = np.atleast_1d(np.asarray(spec))
  else:
    text = spec.strip()
    kind, _, rest = text.partition(":") if ":" in text else ("", "", text)
    try:
      if kind == "":
        items = rest.split(",")
        if any(not v.strip() for v in items):
          raise ValueError("an empty item between commas")
        out = np.array([float(v) for v in items])
      elif kind in ("lin", "log", "log1m"):
        lo, hi, n = rest.split(":")
        fn = {"lin": linspace, "log": logspace, "log1m": logspace_one_minus}
        out = fn[kind](float(lo), float(hi), int(n))
      elif kind == "range":
        out = np.arange(*[int(v) for v in rest.split(":")], dtype=np.int64)
      else:
        raise ValueError(f"unknown axis kind {kind!r}")
    except (ValueError, TypeError) as e:
      raise ValueError(
          f"Cannot parse axis {spec!r} ({e}); use one of "
          f"{', '.join(_AXIS_FORMS)}.") from e
  if dtype is not None:
    out = out.astype(dtype)
  if out.ndim != 1 or out.size == 0:
    raise ValueError(f"Axis {spec!r} must give a non-empty 1-D list of values.")
  return out


def _axis_values(name: str, values: Any) -> np.ndarray:
  arr = np.atleast_1d(np.asarray(values))
  if arr.ndim != 1 or arr.size == 0:
    raise ValueError(
        f"Axis `{name}` must be a non-empty 1-D list of numbers, got shape "
        f"{arr.shape}.")
  if arr.dtype.kind == "f":
    return arr.astype(np.float32)
  if arr.dtype.kind in "iu":
    info = np.iinfo(np.int32)
    if arr.min() < info.min or arr.max() > info.max:
      raise ValueError(f"Axis `{name}` does not fit in int32: {arr.tolist()!r}.")
    return arr.astype(np.int32)
  if arr.dtype.kind == "b":
    return arr
  raise ValueError(
      f"Axis `{name}` must hold numbers (float, int or bool), got dtype "
      f"{arr.dtype}; strings cannot be vmapped - encode them as integers.")


def product(**axes: Any) -> Table:
  """The Cartesian product of named axes as a tidy table, one entry per cell.

  The first axis varies slowest (like ``itertools.product``).  Floats become
  float32 and integers int32 - the package's hyperparameter dtypes, so the
  table holds exactly what each cell computes with.  Build the dict by hand
  for other dtypes; :func:`run_grid` takes any numeric table.

  Args:
    **axes: ``name=values`` (a list, an array, or a scalar for a constant
      column).

  Returns:
    ``dict name -> 1-D array``, all of length ``prod(len(values))``.

  Example:
    >>> from ftrl_adam import grid
    >>> t = grid.product(b1=[0.0, 0.9], b2=[0.99, 0.999], seed=grid.seeds(2))
    >>> len(t["b1"]), t["b1"].dtype.name, t["seed"].dtype.name
    (8, 'float32', 'int32')
    >>> t["b1"], t["seed"]
    (array([0. , 0. , 0. , 0. , 0.9, 0.9, 0.9, 0.9], dtype=float32), array([0, 1, 0, 1, 0, 1, 0, 1], dtype=int32))
  """
  if not axes:
    raise ValueError("product() needs at least one axis, e.g. b1=[0.9].")
  cols = {name: _axis_values(name, v) for name, v in axes.items()}
  grids = np.meshgrid(*cols.values(), indexing="ij")
  return {name: g.reshape(-1).copy() for name, g in zip(cols, grids, strict=False)}


def _mask(table: Mapping[str, np.ndarray], where: Optional[Mapping[str, Any]]
          ) -> np.ndarray:
  n = n_rows(table)
  mask = np.ones(n, bool)
  for name, value in (where or {}).items():
    if name not in table:
      raise KeyError(f"`where` names column {name!r}; the table has "
                     f"{list(table)}.")
    col = np.asarray(table[name])
    vals = np.atleast_1d(np.asarray(value)).astype(col.dtype)
    mask &= np.isin(col, vals)
  return mask


def select(table: Mapping[str, np.ndarray], **where: Any) -> Table:
  """The rows whose columns equal the given values (or lie in given lists).

  Values are cast to the column's dtype first, so ``b1=0.9`` matches a float32
  column.

  Example:
    >>> from ftrl_adam import grid
    >>> t = grid.product(b1=[0.0, 0.9], seed=grid.seeds(3))
    >>> grid.select(t, b1=0.9, seed=[0, 2])["seed"].tolist()
    [0, 2]
  """
  mask = _mask(table, where)
  return {k: np.asarray(v)[mask] for k, v in table.items()}


_REDUCERS = {"mean": np.mean, "median": np.median, "min": np.min,
             "max": np.max, "std": np.std}


def pivot(
    table: Mapping[str, np.ndarray],
    value: str,
    *,
    x: str = "b1",
    y: str = "b2",
    reduce: str | Callable[[np.ndarray], Any] = "mean",
    where: Optional[Mapping[str, Any]] = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A (y, x) matrix of ``value``, reduced over the cells sharing (x, y).

  Typically the reduction is over seeds; fix every other varying column with
  ``where``.  A NaN in a group makes its mean NaN (a diverged seed shows).

  Args:
    table: a tidy table (e.g. from :func:`run_grid`).
    value: name of a scalar column.
    x: name of the axis column across.
    y: name of the axis column up.
    reduce: ``"mean"``, ``"median"``, ``"min"``, ``"max"``, ``"std"`` or a
      function of a 1-D array.
    where: ``{column: value or list}`` filter applied first.

  Returns:
    ``(xs, ys, z)``: sorted unique x and y values, and ``z[i, j]`` for
    ``(ys[i], xs[j])`` (NaN where no cell).

  Example:
    >>> from ftrl_adam import grid
    >>> t = grid.product(b1=[0.0, 0.5], b2=[0.9], seed=grid.seeds(2))
    >>> t["loss"] = t["b1"] + t["seed"]
    >>> xs, ys, z = grid.pivot(t, "loss", x="b1", y="b2")
    >>> z.tolist()
    [[0.5, 1.0]]
  """
  for name in (x, y, value):
    if name not in table:
      raise KeyError(f"Column {name!r} not in the table; it has {list(table)}.")
  vals = np.asarray(table[value])
  if vals.ndim != 1:
    raise ValueError(f"`value` column {value!r} must hold one number per cell, "
                     f"got shape {vals.shape}.")
  fn = _REDUCERS.get(reduce) if isinstance(reduce, str) else reduce
  if fn is None:
    raise ValueError(f"`reduce` must be one of {', '.join(map(repr, _REDUCERS))}"
                     f" or a function; got {reduce!r}.")
  mask = _mask(table, where)
  xv, yv, vv = (np.asarray(table[x])[mask], np.asarray(table[y])[mask],
                vals[mask])
  xs, ix = np.unique(xv, return_inverse=True)
  ys, iy = np.unique(yv, return_inverse=True)
  z = np.full((len(ys), len(xs)), np.nan)
  gid = iy * len(xs) + ix
  order = np.argsort(gid, kind="stable")
  groups, starts = np.unique(gid[order], return_index=True)
  for g, part in zip(groups, np.split(vv[order], starts[1:]), strict=False):
    z[g // len(xs), g % len(xs)] = fn(part.astype(np.float64))
  return xs, ys, z


def key_from_seed(seed: jax.Array | int) -> jax.Array:
  """A typed PRNG key from a cell's integer seed: ``jax.random.key(seed)``.

  Use it inside ``cell_fn`` (``key_from_seed(cell["seed"])``); identical for a
  grid cell and a single call with the same seed.

  Example:
    >>> import jax
    >>> from ftrl_adam import grid
    >>> float(jax.random.uniform(grid.key_from_seed(0))) == float(
    ...     jax.random.uniform(jax.random.key(0)))
    True
  """
  return jax.random.key(seed)



def n_rows(table: Mapping[str, Any]) -> int:
  """The number of rows (cells) of a table; raises for unequal columns."""
  if not isinstance(table, Mapping) or not table:
    raise ValueError("`table` must be a non-empty dict name -> 1-D array.")
  lengths = {k: len(np.asarray(v)) if np.ndim(v) else -1
             for k, v in table.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(f"Table columns must have equal lengths; got {lengths}.")
  return next(iter(lengths.values()))


def canonical_table(table: Mapping[str, Any]) -> Table:
  """The table with JAX's dtypes, checked: numeric columns of equal lengths.

  A column is one number per cell (1-D), or an array per cell (its first
  axis is the cells': e.g. a training state carried from one run to the
  next).
  """
  out = {}
  for name, col in table.items():
    if not isinstance(name, str) or name.startswith("__"):
      raise ValueError(f"Table column names must be strings not starting with "
                       f"'__'; got {name!r}.")
    arr = np.asarray(col)
    if arr.ndim < 1 or arr.shape[0] == 0:
      raise ValueError(f"Table column {name!r} must be a non-empty array with "
                       f"one entry per cell, got shape {arr.shape}.")
    if arr.dtype.kind not in "biuf":
      raise ValueError(f"Table column {name!r} must be numeric (bool, int, "
                       f"float), got dtype {arr.dtype}.")
    out[name] = np.ascontiguousarray(
        arr.astype(jax.dtypes.canonicalize_dtype(arr.dtype)))
  n_rows(out)
  return out

