"""``ftrl-adam bench``: the package's benchmarks, one subcommand each.

* ``ftrl-adam bench step`` (:mod:`ftrl_adam.lab.cli.bench.step`): one
  optimizer step of ``ftrl_adam`` vs ``optax.adam``;
* ``ftrl-adam bench grid`` (:mod:`ftrl_adam.lab.cli.bench.grid`): the
  beta-grid of regret games, loop vs grid, in coordinate-rounds per second;
* ``ftrl-adam bench study`` (:mod:`ftrl_adam.lab.cli.bench.study`): K
  training configurations in one program vs K runs, or successive halving
  against the full grid;
* ``ftrl-adam bench kernels`` (:mod:`ftrl_adam.lab.cli.bench.kernels`): the
  regret monitor's kernels on a small model, one by one (``jax.profiler``).

Each prints a table that names the device it ran on and writes
``NAME-<device>.json`` to ``--out`` (default ``./bench-results``; ``--out
benchmarks/results`` in a checkout refreshes the committed figures).  A
benchmark's module has ``add_arguments(parser)`` and ``run(args)``; it is
imported only when its subcommand is parsed (:class:`_Benchmark`), so that
``ftrl-adam --help`` and ``ftrl-adam bench --help`` read :data:`BENCHMARKS`
alone.  Speed is measured here, never in timed unit tests.
"""

from __future__ import annotations

import argparse
import importlib
import os
from typing import Any

from ftrl_adam.lab.cli import _common as _cli

#: The one-line help of each benchmark (``ftrl-adam bench --help``).
BENCHMARKS = {
    "step": "one optimizer step: ftrl_adam (+ EMA, + regret monitor) vs "
            "optax.adam",
    "grid": "the beta-grid of regret games: a loop of games vs the grid vs "
            "0.1.0's per-cell grid",
    "study": "K training runs in one program vs K runs; --halving: "
             "successive halving vs the full grid",
    "kernels": "the regret monitor's kernels on a small model, one by one "
               "(jax.profiler)",
}

#: The one-line help of the subcommand (``ftrl-adam --help``).
HELP = "run a benchmark: a table naming the device, and a JSON"

#: Where the JSON goes by default: never the committed ``benchmarks/results``.
DEFAULT_OUT = "bench-results"


class _Benchmark(_cli.Parser):
  """The parser of one benchmark, filled in from its module when first used.

  Its options (the module's ``add_arguments`` and ``--out``) and its
  ``func`` (the module's ``run``) are added by the first
  :meth:`parse_known_args`, which argparse calls only for the benchmark
  named on the command line.
  """

  def __init__(self, *args: Any, module: str = "", **kwargs: Any) -> None:
    super().__init__(*args, **kwargs)
    self.module = module

  def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
    if self.module:
      module, self.module = importlib.import_module(self.module), ""
      self.description = module.__doc__.splitlines()[0]
      module.add_arguments(self)
      self.add_argument(
          "--out", default=DEFAULT_OUT, metavar="DIR", type=_writable_folder,
          help=f"folder for the JSON results (default ./{DEFAULT_OUT}; pass "
               f"--out benchmarks/results in a checkout to refresh the "
               f"committed figures)")
      self.set_defaults(func=module.run, _parser=self)
    return super().parse_known_args(args, namespace)


def _writable_folder(path: str) -> str:
  """An argparse ``type``: the JSON's folder, made (if new) and checked
  writable before anything is measured."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise argparse.ArgumentTypeError(f"{path!r} is a file, not a folder")
  try:
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
      raise PermissionError(13, "permission denied")
  except OSError as e:
    why = e.strerror or type(e).__name__
    raise argparse.ArgumentTypeError(
        f"cannot write in {path!r}: {why}; choose another folder") from None
  return path


def add_parser(sub: Any) -> argparse.ArgumentParser:
  p = sub.add_parser(
      "bench", help=HELP,
      description=("Run one of the package's benchmarks: a printed table "
                   "naming the device and a JSON under --out. `ftrl-adam "
                   "bench NAME --help` lists a benchmark's options."))
  names = p.add_subparsers(dest="benchmark", metavar="BENCHMARK",
                           parser_class=_Benchmark)
  for name, text in BENCHMARKS.items():
    names.add_parser(name, help=text, module=f"{__name__}.{name}")
  # `ftrl-adam bench` alone lists the benchmarks, as `ftrl-adam` alone lists
  # the subcommands.
  p.set_defaults(func=lambda args: p.print_help() or 0)
  return p
