"""Beta-grid of regret games: coordinate-rounds per second.

For a workload (adversary, d, T) and n games (b1 x b2 x 4 seeds), interleaved
in one process:

  (a) loop      a Python loop over the games of one jitted game function
                (XLA's default options), blocked once at the end;
  (b) grid      ``regret.run_beta_grid``: each seed's gradients drawn once and
                played by every learner cell (shared streams), deterministic
                adversaries once per learner cell, ``grid.fast_compiler_options``;
  (b0) per-cell grid (0.1.0)  the previous default as version 0.1.0 ran it:
                one game per cell, vmapped by ``grid.run_grid`` with the
                bit-reproducible options, on one device (0.1.0 did not split
                the CPU into devices);
  (b1) per-cell grid, all devices  the same, on every device this process
                has (``grid.use_cpu_cores``: one per core), to separate what
                the devices give from what the shared streams give.

A coordinate-round is one coordinate of one game in one round (games x T x
d); the D3 bound streams are computed on every path.  Targets (on 2 CPU
cores, Gaussian d = 64, 1,024 games): (b) >= 8x (b0), >= 300 M
coordinate-rounds/s.  Compilation is excluded (every path is warmed up).

Usage:  ftrl-adam bench grid [--cells 64 256 1024] [--T 1000]
            [--workloads gaussian:64 gaussian:1 switch:1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np

from ftrl_adam.lab import engine as grid
from ftrl_adam.lab import regret
from ftrl_adam.lab.cli.bench import _common
from ftrl_adam.lab.regret import bounds
from ftrl_adam.lab.regret import cells as _cells
from ftrl_adam.lab.regret import registry
from ftrl_adam.lab.regret import study

# FP32 (non-tensor-core) peaks in TFLOP/s, by jax device_kind, for the
# roofline fraction on a GPU.  Other devices: pass --peak-tflops.
PEAK_FP32_TFLOPS = {
    "NVIDIA H100 80GB HBM3": 66.9, "NVIDIA H100": 66.9, "NVIDIA H200": 66.9,
    "NVIDIA A100-SXM4-80GB": 19.5, "NVIDIA A100-SXM4-40GB": 19.5,
    "NVIDIA A100 80GB PCIe": 19.5, "NVIDIA L4": 30.3,
}


B0 = "(b0) per-cell grid (0.1.0)"
B1 = "(b1) per-cell grid, all devices"


def _table(n: int, T: int, d: int, adversary: str, method: str):
  """n games = b1 x b2 x 4 seeds, b2 <= 0.995 (switch games complete)."""
  seeds = 4
  nb = n // seeds
  n1 = 2 ** (int(math.log2(nb)) // 2)
  n2 = nb // n1
  spec = study.beta_grid(b1=f"log1m:0.5:0.99:{n1}",
                         b2=f"log1m:0.25:0.995:{n2}", seeds=seeds,
                         adversaries=[adversary], T=T, d=d, method=method)
  return spec


def bench_workload(adversary: str, d: int, T: int, cells, repeats: int,
                   peak_tflops):
  """(a) a loop of one jitted game per cell; (b) the shared-stream grid;
  (b0) the previous per-cell grid (one game per cell, vmapped, with the
  engine's bit-reproducible options: version 0.1.0's default) on one device;
  (b1) the same on every device."""
  rows = []
  for n in cells:
    spec = _table(n, T, d, adversary, "sequential")
    adv = spec.adversaries[0]
    n_games = spec.n_games * (len(spec.seeds) if not adv.stochastic else 1)
    table = {k: np.tile(v, len(spec.seeds)) for k, v in spec.learners().items()}
    table["seed"] = np.repeat(np.asarray(spec.seeds, np.int32),
                              spec.n_learners)
    per_cell = _cells.per_cell_fn(adv, T=T, d=d, domain="box", G=1.0,
                                  kappa=1.0, method="sequential")

    def one_game(cell):
      """regret.game for one cell, as a user would loop over cells."""
      b1, b2 = cell["b1"], cell["b2"]
      horizon = None
      if adversary == "switch":
        big_l, k = bounds.switch_lengths(b1, b2)
        horizon = jnp.minimum(big_l + k, T).astype(jnp.int32)
      return regret.game(b1, b2, radius=cell["radius"], c=cell["c"], T=T, d=d,
                         adversary=adv.make(1.0, 1.0, b1, b2),
                         key=grid.key_from_seed(cell["seed"]),
                         horizon=horizon).regret_box

    single = jax.jit(one_game)
    cells_dev = [{k: jnp.asarray(v[i]) for k, v in table.items()}
                 for i in range(len(table["b1"]))]

    def loop():
      _common.block([single(c) for c in cells_dev])

    def per_cell_grid(devices):
      return lambda: grid.run_grid(
          per_cell, table, chunk_size=max(1, 2 ** 14 // d), progress=False,
          devices=devices)

    fns = {"(a) loop": loop,
           "(b) grid": lambda: study.run_beta_grid(spec, progress=False,
                                                   plots=False),
           B0: per_cell_grid(jax.devices()[:1])}
    if jax.device_count() > 1:
      fns[B1] = per_cell_grid(None)
    for fn in fns.values():     # compile / warm up
      fn()
    times = _common.interleaved_medians(fns, repeats)
    for path, t in times.items():
      # the grid plays a deterministic adversary once per learner cell; the
      # loop and the per-cell grid play every (cell, seed)
      crs = (spec.n_games if path == "(b) grid" else n_games) * T * d
      rate = crs / t
      rows.append({"adversary": adversary, "d": d, "T": T, "cells": n_games,
                   "path": path, "median_ms": t * 1e3,
                   "Mcr_per_s": rate / 1e6,
                   "devices": 1 if path in (B0, "(a) loop") else
                   jax.device_count(),
                   "speedup_vs_loop": times["(a) loop"] / t,
                   "speedup_vs_per_cell_grid": times[B0] / t,
                   "speedup_vs_per_cell_grid_same_devices":
                       times.get(B1, times[B0]) / t})
  return rows


def _cells_count(text: str) -> int:
  """An argparse ``type``: a number of games, a multiple of 16."""
  if not text.strip().isdigit() or int(text) < 16 or int(text) % 16:
    raise argparse.ArgumentTypeError(
        f"must be multiples of 16 (4 seeds x b1 x b2), got {text!r}")
  return int(text)


def _workload(text: str) -> tuple[str, int]:
  """An argparse ``type``: ``ADVERSARY:D`` as (adversary, d)."""
  adversary, sep, d = text.rpartition(":")
  if not sep or not d.isdigit() or int(d) < 1:
    raise argparse.ArgumentTypeError(
        f"takes ADVERSARY:D pairs such as gaussian:64, got {text!r}")
  try:
    registry.resolve(adversary)
  except ValueError as e:
    raise argparse.ArgumentTypeError(
        str(e).replace("`adversaries`: ", "")) from e
  return adversary, int(d)


def add_arguments(ap: argparse.ArgumentParser) -> None:
  """The options of ``ftrl-adam bench grid``."""
  ap.add_argument("--cells", type=_cells_count, nargs="+", default=[64, 256, 1024],
                  help="games per workload: 4 seeds x b1 x b2, multiples of 16 "
                       "(default 64 256 1024)")
  ap.add_argument("--T", type=_common.positive_int, default=1000,
                  help="rounds per game")
  ap.add_argument("--workloads", type=_workload, nargs="+",
                  default=[("gaussian", 64), ("gaussian", 1), ("switch", 1)],
                  help="ADVERSARY:D pairs (default gaussian:64 gaussian:1 "
                       "switch:1)")
  ap.add_argument("--repeats", type=_common.positive_int, default=3,
                  help="interleaved repeats; the median is reported")
  ap.add_argument("--peak-tflops", type=float, default=None,
                  help="the device's FP32 peak, for the roofline fraction")


def run(args: argparse.Namespace) -> int:
  """Runs ``ftrl-adam bench grid``; the exit status."""
  kind = jax.devices()[0].device_kind
  peak = args.peak_tflops or PEAK_FP32_TFLOPS.get(kind)
  print(f"device: {_common.device_name()}; T={args.T}; repeats={args.repeats}"
        f"; peak FP32: {peak or 'unknown'} TFLOP/s")
  records = []
  for adversary, d in args.workloads:
    records += bench_workload(adversary, d, args.T, args.cells, args.repeats,
                              peak)
  headers = ["adversary", "d", "games", "path", "devices", "median ms",
             "Mcr/s", "x loop", "x (b0) 0.1.0", "x (b1) same devices"]
  rows = [[r["adversary"], r["d"], r["cells"], r["path"], r["devices"],
           r["median_ms"], r["Mcr_per_s"], r["speedup_vs_loop"],
           r["speedup_vs_per_cell_grid"],
           r["speedup_vs_per_cell_grid_same_devices"]]
          for r in records]
  _common.print_table(headers, rows)
  path = _common.write_json(args.out, "grid", {
      "T": args.T, "repeats": args.repeats, "peak_fp32_tflops": peak,
      "compiler_options_b0": grid.compiler_options(),
      "numpy": np.__version__, "results": records})
  print(f"wrote {path}")
  return 0
