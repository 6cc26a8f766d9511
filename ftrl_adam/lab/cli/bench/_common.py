"""What the benchmarks share: device naming, timing, argument types, table and JSON output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Callable, Sequence

import jax

from ftrl_adam import _store


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


def positive_int(text: str) -> int:
  """An argparse ``type``: an integer >= 1 (argparse names the option)."""
  if not text.strip().isdigit() or int(text) < 1:
    raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
  return int(text)


def write_json(out_dir: str, name: str, payload: dict) -> str:
  """Writes ``out_dir/NAME-<device>.json`` (the device and ``payload``)
  atomically, creating ``out_dir``; returns its path."""
  os.makedirs(out_dir, exist_ok=True)
  info = device_description()
  tag = f"{info['platform']}-{info['device_kind']}".replace(" ", "_").lower()
  path = os.path.join(out_dir, f"{name}-{tag}.json")
  _store.atomic_write_text(path, json.dumps({"device": info, **payload}, indent=2))
  return path
