"""Benchmarks of the package (each module states its targets).

Run them as ``ftrl-adam bench step|grid|study [options]`` or
``python benchmarks/NAME.py``.  Each prints a table that names the device it
ran on and writes a JSON file (``--out``; by default ``benchmarks/results`` in
a checkout's root, else ``./bench-results``):

* :mod:`ftrl_adam.lab.cli.bench.step`: one optimizer step of ``ftrl_adam`` vs ``optax.adam``;
* :mod:`ftrl_adam.lab.cli.bench.grid`: the beta-grid of regret games, loop vs grid vs
  time-parallel, in coordinate-rounds per second;
* :mod:`ftrl_adam.lab.cli.bench.study`: K training configurations in one program vs K runs.

Speed is measured here, never in timed unit tests.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

BENCHMARKS = ("step", "grid", "study")

#: The one-line help of the subcommand (``ftrl-adam --help``).
HELP = "run a benchmark: a table naming the device, and a JSON"

def add_parser(sub: Any) -> argparse.ArgumentParser:
  p = sub.add_parser(
      "bench", help=HELP,
      description=("Run one of the package's benchmarks. Options after the "
                   "name go to the benchmark: `ftrl-adam bench step --help` "
                   "lists them. Results: a printed table naming the device and "
                   "a JSON under --out (default ./bench-results; pass --out "
                   "benchmarks/results in a checkout to refresh the committed "
                   "results)."))
  p.add_argument("benchmark", choices=BENCHMARKS,
                 help="step: ftrl_adam vs optax.adam per step; grid: the "
                      "beta-grid, per-cell loop vs shared-stream grid vs the "
                      "previous per-cell grid; study: K training runs in one "
                      "program vs K runs")
  p.add_argument("bench_args", nargs=argparse.REMAINDER,
                 help="options of the benchmark")
  p.set_defaults(func=run, _parser=p)
  return p


def run(args: argparse.Namespace) -> int:
  module = importlib.import_module(f"ftrl_adam.lab.cli.bench.{args.benchmark}")
  return int(module.main(args.bench_args) or 0)
