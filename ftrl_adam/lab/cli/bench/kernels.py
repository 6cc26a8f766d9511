"""Where the regret monitor's cost goes on a small model, kernel by kernel.

Traces (``jax.profiler``) the jitted, donated step of ``ftrl_adam`` and of
``regret_monitor(ftrl_adam, coords=4096)`` on ``ftrl-adam bench step``'s small
model (33 leaves, 0.26M parameters) and prints the median time per step of
each kernel the monitored step has and the plain one does not.  Then a
micro-benchmark of what most of it is: 4,096 entries gathered from one array,
against the same number gathered from several arrays and concatenated (XLA:CPU
decides per entry which operand a fused concatenation reads).  A table
printed, a JSON written (the device named).

Usage:  ftrl-adam bench kernels [--steps 300] [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import statistics
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from ftrl_adam.lab.cli.bench import _common
from ftrl_adam.lab.cli.bench.step import MODELS, model_tree, optimizers, stepper


def kernel_medians(run, steps: int) -> dict[str, float]:
  """Median microseconds per call of each XLA kernel ``run`` executes."""
  for _ in range(20):
    run()
  with tempfile.TemporaryDirectory() as folder:
    with jax.profiler.trace(folder, create_perfetto_trace=True):
      for _ in range(steps):
        run()
    trace = glob.glob(f"{folder}/**/*.trace.json.gz", recursive=True)[0]
    with gzip.open(trace) as f:
      events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  times = collections.defaultdict(list)
  for e in events:
    name = e.get("name", "")
    if e.get("ph") == "X" and not name.startswith("end:") and (
        "fusion" in name or name.startswith("copy")):
      times[name].append(e["dur"])
  return {k: statistics.median(v) for k, v in times.items()}


def concatenation(pieces: int, steps: int, k: int = 4096) -> float:
  """Median microseconds of the kernel gathering k entries from ``pieces``
  arrays of 64,000 (concatenated when more than one)."""
  rng = np.random.default_rng(0)
  arrays = [jnp.asarray(rng.normal(size=64_000), jnp.float32) + i
            for i in range(pieces)]
  idx = [np.sort(rng.choice(64_000, k // pieces, replace=False))
         for _ in range(pieces)]

  @jax.jit
  def f(xs, acc):
    return acc + jnp.concatenate([x.at[i].get(mode="promise_in_bounds")
                                  for x, i in zip(xs, idx, strict=True)])

  state = {"acc": jnp.zeros(k)}

  def run():
    state["acc"] = _common.block(f(arrays, state["acc"]))

  times = kernel_medians(run, steps)
  return max(times.values())   # the gather's kernel; the rest are copies


def add_arguments(ap: argparse.ArgumentParser) -> None:
  """The options of ``ftrl-adam bench kernels``."""
  ap.add_argument("--steps", type=_common.positive_int, default=300,
                  help="traced steps (and calls) per program (default 300)")


def run(args: argparse.Namespace) -> int:
  """Runs ``ftrl-adam bench kernels``; the exit status."""
  tree = model_tree(*MODELS["small"])
  n = sum(x.size for x in jax.tree.leaves(tree))
  made = optimizers(4096, 8)   # ftrl-adam bench step's, with its monitor
  plain, monitored = (kernel_medians(stepper(made[name](n), tree), args.steps)
                      for name in ("ftrl_adam", "+ monitor (4096 coords)"))
  own = {k: v for k, v in monitored.items() if k not in plain}
  rows = sorted(own.items(), key=lambda kv: -kv[1])
  print(f"device: {_common.device_name()}; the monitor's own kernels, median "
        f"us per step over {args.steps} steps (small model)")
  _common.print_table(["kernel", "us"], [*rows, ("all", sum(own.values()))])
  concat = {n: concatenation(n, args.steps) for n in (1, 2, 4, 8)}
  print("\n4,096 entries gathered from n arrays (concatenated when n > 1):")
  _common.print_table(["arrays", "us"], list(concat.items()))
  path = _common.write_json(args.out, "kernels", {
      "steps": args.steps, "monitor_kernels_us": own,
      "monitor_kernels_sum_us": sum(own.values()),
      "gather_from_n_arrays_us": concat})
  print(f"wrote {path}")
  return 0
