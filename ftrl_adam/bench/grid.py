"""Beta-grid of regret games: coordinate-rounds per second (DESIGN.md target).

For a workload (adversary, d, T) and a number of cells n (b1 x b2 x seeds),
the same games are run three ways, interleaved in one process:

  (a) loop      a Python loop over the cells of one jitted game
                (``jax.jit(beta_grid_cell(...))``, compiled once, dispatched
                cell after cell, blocked once at the end);
  (b) grid      the vmapped grid: ``grid.run_grid`` of the same cell function,
                one chunk of n cells, sharded over every device, with the
                engine's reproducible compiler options (bit-identical cells);
  (a') loop-xla  the loop (a) compiled with XLA's default options;
  (b') grid-xla the grid (b) with XLA's default options (faster fusions on CPU,
                not bit-identical to a single game); its speedup is against (a'),
                so each mode is compared with a loop compiled the same way;
  (c) parallel  the time-parallel path (``method="parallel"``: associative
                scans over rounds, O(T d) memory per game) through run_grid,
                in chunks of at most 2^23 coordinates x rounds on CPU.

A coordinate-round is one coordinate of one game in one round: n x T x d per
grid (the switch adversary's cells compute all T rounds, the rounds after
their horizon frozen).  Compilation is excluded (every path is warmed up).
"flop/cr" is XLA's cost analysis of the vmapped program (every elementwise
op counts, the PRNG's integer ops included; the loop body counted once) per
coordinate and round; with --peak-tflops (or a known GPU) the achieved
fraction of that arithmetic peak is reported.

Usage:  python benchmarks/grid.py [--cells 64 256 1024] [--T 1000]
            [--workloads gaussian:64 gaussian:1 switch:1] [--repeats 3]
            [--peak-tflops X]
"""

from __future__ import annotations

import argparse
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np

from ftrl_adam.bench import _common  # noqa: E402

from ftrl_adam import grid  # noqa: E402
from ftrl_adam.regret import study  # noqa: E402

# FP32 (non-tensor-core) peaks in TFLOP/s, by jax device_kind, for the
# roofline fraction on a GPU.  Other devices: pass --peak-tflops.
PEAK_FP32_TFLOPS = {
    "NVIDIA H100 80GB HBM3": 66.9, "NVIDIA H100": 66.9, "NVIDIA H200": 66.9,
    "NVIDIA A100-SXM4-80GB": 19.5, "NVIDIA A100-SXM4-40GB": 19.5,
    "NVIDIA A100 80GB PCIe": 19.5, "NVIDIA L4": 30.3,
}


def _table(n: int, T: int, d: int, adversary: str, method: str):
  """n cells = b1 x b2 x 4 seeds, b2 <= 0.995 (switch games complete)."""
  seeds = 4
  nb = n // seeds
  n1 = 2 ** (int(math.log2(nb)) // 2)
  n2 = nb // n1
  spec = study.beta_grid(b1=f"log1m:0.5:0.99:{n1}",
                         b2=f"log1m:0.25:0.995:{n2}", seeds=seeds,
                         adversaries=[adversary], T=T, d=d, method=method)
  assert spec.n_cells == n, (spec.n_cells, n)
  return spec


def _flops_per_cr(cell_fn, table, d):
  n = len(table["b1"])
  specs = {k: jax.ShapeDtypeStruct((n,), v.dtype) for k, v in table.items()}
  compiled = jax.jit(jax.vmap(cell_fn)).lower(specs).compile(
      compiler_options=grid.compiler_options() or None)
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan"))) / (n * d)


def bench_workload(adversary: str, d: int, T: int, cells, repeats: int,
                   peak_tflops):
  rows = []
  for n in cells:
    spec = _table(n, T, d, adversary, "sequential")
    table = spec.table()
    cell_fn = study.beta_grid_cell(adversary, T=T, d=d)
    par_spec = _table(n, T, d, adversary, "parallel")
    par_fn = study.beta_grid_cell(adversary, T=T, d=d, method="parallel")
    single = jax.jit(cell_fn, compiler_options=grid.compiler_options())
    single_xla = jax.jit(cell_fn)
    cells_dev = [{k: jnp.asarray(v[i]) for k, v in table.items()}
                 for i in range(n)]

    def loop(fn=single):
      outs = [fn(c) for c in cells_dev]
      _common.block(outs)

    def vmapped(options=None, fn=cell_fn, chunk=n):
      return lambda: grid.run_grid(fn, table, chunk_size=chunk,
                                   progress=False, compiler_options=options)

    fns = {"(a) loop": loop, "(a') loop-xla": lambda: loop(single_xla),
           "(b) grid": vmapped(),
           "(b') grid-xla": vmapped({}),
           "(c) parallel": vmapped(None, par_fn, par_spec.chunk_size)}
    for fn in fns.values():     # compile / warm up
      fn()
    times = _common.interleaved_medians(fns, repeats)
    flops = _flops_per_cr(cell_fn, table, d)
    crs = n * T * d
    for path, t in times.items():
      rate = crs / t
      row = {"adversary": adversary, "d": d, "T": T, "cells": n, "path": path,
             "median_ms": t * 1e3, "Mcr_per_s": rate / 1e6,
             "speedup_vs_loop": times[
                 "(a') loop-xla" if path.startswith(("(a')", "(b')")) else "(a) loop"] / t}
      if path != "(c) parallel":
        row["flop_per_cr"] = flops
        row["GFLOP_per_s"] = flops * rate / 1e9
        if peak_tflops:
          row["fraction_of_peak"] = flops * rate / (peak_tflops * 1e12)
      if path == "(c) parallel":
        row["chunk_size"] = par_spec.chunk_size
      rows.append(row)
  return rows


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="ftrl-adam bench grid", description=__doc__.splitlines()[0])
  ap.add_argument("--cells", type=int, nargs="+", default=[64, 256, 1024],
                  help="grid sizes (multiples of 4 seeds)")
  ap.add_argument("--T", type=int, default=1000, help="rounds per game")
  ap.add_argument("--workloads", nargs="+",
                  default=["gaussian:64", "gaussian:1", "switch:1"],
                  help="ADVERSARY:D pairs")
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--peak-tflops", type=float, default=None,
                  help="the device's FP32 peak, for the roofline fraction")
  _common.add_out_option(ap)
  args = ap.parse_args(argv)
  _common.set_out(args.out)
  kind = jax.devices()[0].device_kind
  peak = args.peak_tflops or PEAK_FP32_TFLOPS.get(kind)
  print(f"device: {_common.device_name()}; T={args.T}; repeats={args.repeats}"
        f"; peak FP32: {peak or 'unknown'} TFLOP/s")
  records = []
  for w in args.workloads:
    adversary, d = w.split(":")
    records += bench_workload(adversary, int(d), args.T, args.cells,
                              args.repeats, peak)
  headers = ["adversary", "d", "cells", "path", "median ms", "Mcr/s",
             "x loop", "flop/cr", "GFLOP/s"] + (["of peak"] if peak else [])
  rows = [[r["adversary"], r["d"], r["cells"], r["path"], r["median_ms"],
           r["Mcr_per_s"], r["speedup_vs_loop"], r.get("flop_per_cr", "-"),
           r.get("GFLOP_per_s", "-")]
          + ([r.get("fraction_of_peak", "-")] if peak else [])
          for r in records]
  _common.print_table(headers, rows)
  for w in args.workloads:
    adversary, d = w.split(":")
    big = max(args.cells)
    r = {x["path"]: x for x in records if x["adversary"] == adversary
         and x["d"] == int(d) and x["cells"] == big}
    b, bx, c = (r[k]["speedup_vs_loop"]
                for k in ("(b) grid", "(b') grid-xla", "(c) parallel"))
    print(f"{adversary} d={d}, {big} cells: (b) grid = {b:.2f}x (a) loop, "
          f"(b') grid-xla = {bx:.2f}x (a') loop-xla, (c) parallel {c:.2f}x (a)")
  path = _common.write_json("grid", {
      "T": args.T, "repeats": args.repeats, "peak_fp32_tflops": peak,
      "compiler_options_b": grid.compiler_options(),
      "numpy": np.__version__, "results": records})
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
