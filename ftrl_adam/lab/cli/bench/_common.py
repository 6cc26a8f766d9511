"""Shared helpers of the benchmarks: device naming, timing, table and JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from typing import Callable, Sequence

import jax


def device_description() -> dict:
  devs = jax.devices()
  d = devs[0]
  return {
      "platform": d.platform,
      "device_kind": getattr(d, "device_kind", "unknown"),
      "device_count": len(devs),
      "cpu_count": os.cpu_count(),
      "processor": platform.processor() or platform.machine(),
      "jax": jax.__version__,
  }


def device_name() -> str:
  info = device_description()
  return f"{info['platform']}:{info['device_kind']} x{info['device_count']}"


def block(x):
  return jax.block_until_ready(x)


def interleaved_medians(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
  """Runs each fn `repeats` times, interleaved (A B A B ...); median seconds."""
  times = {k: [] for k in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)
  return {k: statistics.median(v) for k, v in times.items()}


def print_table(headers: Sequence[str], rows: Sequence[Sequence]) -> None:
  cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
  for j, r in enumerate(cells):
    print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=False)))
    if j == 0:
      print("  ".join("-" * w for w in widths))


def _fmt(c):
  if isinstance(c, float):
    return f"{c:.4g}"
  return str(c)


# Where results go: set by each benchmark's ``--out`` (see ``add_out_option``).
RESULTS_DIR = None


def default_results_dir() -> str:
  """``./bench-results``: never the committed ``benchmarks/results``."""
  return "bench-results"


def add_out_option(parser) -> None:
  parser.add_argument(
      "--out", default=None,
      help="folder for the JSON results (default ./bench-results; pass "
           "--out benchmarks/results in a checkout to refresh the committed "
           "figures)")


def positive_ints(parser, name: str, values) -> None:
  """parser.error unless every value of option ``name`` is an int >= 1."""
  bad = [v for v in values if v < 1]
  if bad:
    parser.error(f"{name} must be integers >= 1, got {bad}")


def set_out(path) -> None:
  global RESULTS_DIR
  RESULTS_DIR = path


def write_json(name: str, payload: dict) -> str:
  out_dir = RESULTS_DIR or default_results_dir()
  os.makedirs(out_dir, exist_ok=True)
  info = device_description()
  tag = f"{info['platform']}-{info['device_kind']}".replace(" ", "_").lower()
  path = os.path.join(out_dir, f"{name}-{tag}.json")
  with open(path, "w") as f:
    json.dump({"device": info, **payload}, f, indent=2)
  return path
