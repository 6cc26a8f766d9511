"""The ``ftrl-adam`` command line: one entry point, a module per subcommand.

* ``ftrl-adam regret`` (:mod:`ftrl_adam.cli.regret`): the beta-grid of
  regret games, the package's main job;
* ``ftrl-adam study`` (:mod:`ftrl_adam.cli.study`): vectorised training
  studies;
* ``ftrl-adam bench`` (:mod:`ftrl_adam.cli.bench`): the benchmarks;
* ``ftrl-adam demo`` (:mod:`ftrl_adam.cli.demo`): a least-squares model
  trained with :func:`ftrl_adam.ftrl_adam`.

On CPU the command splits the machine into one XLA device per core before
JAX starts (:func:`ftrl_adam.grid.use_cpu_cores`; ``JAX_NUM_CPU_DEVICES=k``
chooses another count).  The flags of ``regret`` and ``study`` are read from their experiments'
option lists; every option is checked before anything is compiled, and a
bad value exits with status 2 and one line naming the flag.  Nothing in the
lab imports this package.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

SUBCOMMANDS = ("regret", "study", "bench", "demo")


def _version() -> str:
  from ftrl_adam import __version__  # pylint: disable=import-outside-toplevel
  return __version__


def build_parser() -> argparse.ArgumentParser:
  """The ``ftrl-adam`` parser with its subcommands."""
  parser = argparse.ArgumentParser(
      prog="ftrl-adam",
      description=("Adam as FTRL on the updates: the regret lab's beta-grid "
                   "(`ftrl-adam regret`, the main job), training studies, "
                   "benchmarks and a demo. `ftrl-adam SUBCOMMAND --help` "
                   "lists a subcommand's options."))
  parser.add_argument("--version", action="version",
                      version=f"ftrl-adam {_version()}")
  sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
  for name in SUBCOMMANDS:
    importlib.import_module(f"ftrl_adam.cli.{name}").add_parser(sub)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Runs ``ftrl-adam`` with ``argv`` (default ``sys.argv[1:]``); the exit status."""
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.command is None:
    parser.print_help()
    return 0
  # One XLA device per CPU core (before JAX starts): the engine's shards then
  # run in parallel (see ftrl_adam.grid.use_cpu_cores).
  from ftrl_adam import grid  # pylint: disable=import-outside-toplevel
  grid.use_cpu_cores()
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
