"""The engine's output files: a tidy CSV and a run's JSON (atomic writes)."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Mapping, Optional, Sequence

import jax
import numpy as np

from ftrl_adam import _store
from ftrl_adam.lab.engine import _folder
from ftrl_adam.lab.engine.tables import n_rows


def _version(dist: str) -> Optional[str]:
  try:
    return metadata.version(dist)
  except metadata.PackageNotFoundError:
    return None


def _package_version() -> Optional[str]:
  try:
    from ftrl_adam import __version__  # pylint: disable=import-outside-toplevel
    return __version__
  except ImportError:
    return _version("ftrl-adam")


def fingerprint_versions() -> dict[str, Any]:
  """The versions that decide a result's bits (part of a results fingerprint)."""
  return {"ftrl_adam": _package_version(), "jax": jax.__version__,
          "jaxlib": _version("jaxlib"), "platform": jax.default_backend()}


def run_info() -> dict[str, Any]:
  """Versions and devices of this process, for a run's JSON.

  Example:
    >>> from ftrl_adam import grid
    >>> info = grid.run_info()
    >>> sorted(info)[:4]
    ['device_count', 'device_kind', 'flax', 'ftrl_adam']
  """
  devices = jax.devices()
  return {
      "python": platform.python_version(),
      "jax": jax.__version__,
      "jaxlib": _version("jaxlib"),
      "optax": _version("optax"),
      "flax": _version("flax"),
      "numpy": np.__version__,
      "ftrl_adam": _package_version(),
      "platform": jax.default_backend(),
      "device_kind": devices[0].device_kind,
      "device_count": len(devices),
      "local_device_count": jax.local_device_count(),
      "process_count": jax.process_count(),
  }


def _format_column(col: np.ndarray) -> list[str]:
  if col.dtype.kind == "f":
    # NumPy prints the shortest string that round-trips in the column's dtype.
    return [str(v) for v in col]
  if col.dtype.kind == "b":
    return ["true" if v else "false" for v in col]
  return [str(v) for v in col.tolist()]


def write_csv(table: Mapping[str, Any], path: str | os.PathLike, *,
              columns: Optional[Sequence[str]] = None) -> list[str]:
  """Writes a tidy CSV: one row per cell, one column per scalar column.

  The column order is the table's (for :func:`run_grid`: the config columns,
  then the results by name); columns with more than one number per cell are
  left out unless named in ``columns`` (which is an error for them).  Floats
  are written with the shortest text that reads back to the same float32 (or
  float64); bools as ``true``/``false``.  The file is written atomically.

  Args:
    table: a tidy table.
    path: the CSV file.
    columns: optional explicit column list (and order).

  Returns:
    The column names written.

  Example:
    >>> import os, tempfile
    >>> from ftrl_adam import grid
    >>> t = grid.product(b1=[0.9], seed=grid.seeds(2))
    >>> path = os.path.join(tempfile.mkdtemp(), "grid.csv")
    >>> grid.write_csv(t, path)
    ['b1', 'seed']
    >>> print(open(path).read().strip())
    b1,seed
    0.9,0
    0.9,1
  """
  n = n_rows(table)
  if columns is None:
    columns = [k for k, v in table.items() if np.ndim(v) == 1]
  columns = list(columns)
  for k in columns:
    if k not in table:
      raise KeyError(f"Column {k!r} not in the table; it has {list(table)}.")
    if np.ndim(table[k]) != 1:
      raise ValueError(f"Column {k!r} has shape {np.shape(table[k])}: a CSV "
                       f"column holds one number per cell.")
  texts = [_format_column(np.asarray(table[k])) for k in columns]
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(columns)
  writer.writerows(zip(*texts, strict=False) if columns else [[]] * n)
  _store.atomic_write_text(os.fspath(path), buf.getvalue())
  return columns


def write_json(path: str | os.PathLike, *,
               config: Optional[Mapping[str, Any]] = None,
               table: Optional[Mapping[str, Any]] = None,
               extra: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
  """Writes the run's configuration and versions as JSON (atomically).

  Args:
    path: the JSON file.
    config: the run's configuration (JSON-serialisable).
    table: optional tidy table; its number of cells and its columns' dtypes
      and per-cell shapes are recorded.
    extra: more top-level entries (e.g. timings); must not clash.

  Returns:
    The dict written: ``config``, ``versions`` (:func:`run_info`), ``created``
    (UTC, ISO 8601), and with a table ``n_cells`` and ``columns``.  The file
    is strict JSON: a NaN or infinite number is written as ``null`` (as in
    the returned dict), NumPy values as Python ones.

  Example:
    >>> import json, os, tempfile
    >>> from ftrl_adam import grid
    >>> path = os.path.join(tempfile.mkdtemp(), "run.json")
    >>> _ = grid.write_json(path, config={"T": 100})
    >>> json.load(open(path))["config"]
    {'T': 100}
    >>> _ = grid.write_json(path, extra={"best": float("nan")})
    >>> json.load(open(path))["best"] is None
    True
  """
  payload: dict[str, Any] = {
      "config": dict(config) if config is not None else {},
      "versions": run_info(),
      "created": datetime.now(timezone.utc).isoformat(),
  }
  if table is not None:
    payload["n_cells"] = n_rows(table)
    payload["columns"] = {
        k: {"dtype": np.asarray(v).dtype.name,
            "cell_shape": list(np.shape(v)[1:])} for k, v in table.items()}
  for k, v in (extra or {}).items():
    if k in payload:
      raise ValueError(f"`extra` key {k!r} clashes with a standard entry.")
    payload[k] = v
  payload = _strict_json(payload)
  text = json.dumps(payload, indent=2, allow_nan=False,
                    default=_folder.json_default)
  _store.atomic_write_text(os.fspath(path), text + "\n")
  return payload


def _strict_json(x: Any) -> Any:
  """``x`` with NumPy values as Python ones and NaN/inf as None (JSON null)."""
  if isinstance(x, Mapping):
    return {k: _strict_json(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_strict_json(v) for v in x]
  if isinstance(x, (np.ndarray, np.generic)):
    return _strict_json(_folder.json_default(x))
  if isinstance(x, float) and not np.isfinite(x):
    return None
  return x


