"""The ``ftrl-adam`` command line: one entry point, a module per subcommand.

* ``ftrl-adam regret`` (:mod:`ftrl_adam.cli.regret`): the beta-grid of
  regret games, the package's main job;
* ``ftrl-adam study`` (:mod:`ftrl_adam.cli.study`): vectorised training
  studies;
* ``ftrl-adam bench step|grid|study|kernels`` (:mod:`ftrl_adam.cli.bench`): the
  benchmarks, a subcommand each;
* ``ftrl-adam demo`` (:mod:`ftrl_adam.cli.demo`): a least-squares model
  trained with :func:`ftrl_adam.ftrl_adam`.

On CPU the command (:func:`run`, not :func:`main` called in-process) splits
the machine into one XLA device per core before JAX starts
(:func:`ftrl_adam.grid.use_cpu_cores`; ``JAX_NUM_CPU_DEVICES=k`` chooses
another count).  The flags of ``regret`` and ``study`` are read from their experiments'
option lists; every option is checked before anything is compiled, and a
bad value exits with status 2 and one line naming the flag.  Options are
never abbreviated, and an unknown one is reported by the subcommand it was
given to, with the closest option it has.  ``regret``, ``study`` and
``bench`` need the package's ``lab`` extra; without it they exit with status
2 and one line naming it (``ftrl-adam --help`` and ``demo`` still work).
Nothing in the lab imports this package.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
import threading
from typing import Sequence

from ftrl_adam import lab as _lab
from ftrl_adam.lab.cli import _common

SUBCOMMANDS = ("regret", "study", "bench", "demo")
#: The subcommands that need the ``lab`` extra (``demo`` needs the optimizer only).
NEED_EXTRA = ("regret", "study", "bench")


def _version() -> str:
  from ftrl_adam import __version__  # pylint: disable=import-outside-toplevel
  return __version__


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
  """The ``ftrl-adam`` parser with its subcommands.

  With ``only``, the other subcommands get just their one-line help (their
  options are not built, so their modules, e.g. the studies', are not
  imported).
  """
  parser = _common.Parser(
      prog="ftrl-adam",
      description=("Adam as FTRL on the updates: the regret lab's beta-grid "
                   "(`ftrl-adam regret`, the main job), training studies, "
                   "benchmarks and a demo. `ftrl-adam SUBCOMMAND --help` "
                   "lists a subcommand's options."))
  parser.add_argument("--version", action="version",
                      version=f"ftrl-adam {_version()}")
  sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND",
                              parser_class=_common.Parser)
  missing = _lab.missing_extra()
  for name in SUBCOMMANDS:
    module = importlib.import_module(f"ftrl_adam.lab.cli.{name}")
    if missing and name in NEED_EXTRA:
      sub.add_parser(name, help=f"{module.HELP} (needs the lab extra: "
                                'pip install "ftrl-adam[lab]")')
    elif only is None or name == only:
      module.add_parser(sub)
    else:
      sub.add_parser(name, help=module.HELP)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Runs ``ftrl-adam`` with ``argv`` (default ``sys.argv[1:]``); the exit status."""
  argv = list(sys.argv[1:] if argv is None else argv)
  command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
  if command in NEED_EXTRA:
    message = _lab.extra_message("this command")
    if message is not None:
      print(f"ftrl-adam {command}: error: {message}", file=sys.stderr)
      return 2
  parser = build_parser(command)
  # An unknown option is the subcommand's error (its usage, its options).
  args, extras = parser.parse_known_args(argv)
  if extras:
    getattr(args, "_parser", parser).unknown(extras)
  if args.command is None:
    parser.print_help()
    return 0
  return args.func(args)


def _interrupted(error: BaseException) -> bool:
  """Whether ``error`` is a Ctrl-C, or what a Ctrl-C became (an interrupted
  import of a compiled extension raises ImportError over KeyboardInterrupt)."""
  seen = set()
  while error is not None and id(error) not in seen:
    if isinstance(error, KeyboardInterrupt):
      return True
    seen.add(id(error))
    error = error.__cause__ or error.__context__
  return False


def run(argv: Sequence[str] | None = None) -> int:
  """The ``ftrl-adam`` program: :func:`main` in a process of its own.

  ``argv`` is the command line after the program's name (default
  ``sys.argv[1:]``): ``benchmarks/step.py`` is ``run(["bench", "step",
  *sys.argv[1:]])``.

  First splits the CPU into one XLA device per core, before JAX starts, so
  that the engine's shards run in parallel
  (:func:`ftrl_adam.grid.use_cpu_cores`; ``JAX_NUM_CPU_DEVICES=k`` chooses
  another count).  :func:`main` itself, called in a running program (a
  test, a notebook), leaves that program's devices alone.  Ctrl-C at any
  moment, even while JAX is being imported, is one line and exit status 130.

  It ends the process: once the command has finished (every file written
  and closed, every lock released), the output is flushed, the ``atexit``
  handlers run, and the process exits without the interpreter's teardown
  of JAX and the other modules (about 0.4 s of a 6 s default run, measured
  on 2 CPU cores).  It returns the exit status instead while a thread of the
  caller's is still running, or under a profiler or a tracer (``python -m
  cProfile -o FILE``, a debugger), which has its own work to finish.
  """
  try:
    from ftrl_adam.lab.engine import devices  # pylint: disable=import-outside-toplevel
    from ftrl_adam.lab.engine import progress  # pylint: disable=import-outside-toplevel
    devices.use_cpu_cores()
    with progress.ctrl_c_outside_callbacks():
      status = main(argv)
  except SystemExit as e:   # --help, --version, a usage error
    status = e.code
  except BaseException as e:  # pylint: disable=broad-except
    if not _interrupted(e):
      raise
    print("\nftrl-adam: interrupted.", file=sys.stderr)
    status = 130
  try:
    sys.stdout.flush()
  except BrokenPipeError:   # the reader went away after the last line
    status = _common.stdout_closed()
  sys.stderr.flush()
  if status == 130:
    # Interrupted: XLA may still be running the computation the Ctrl-C cut
    # short, and a normal interpreter exit under a running XLA thread aborts
    # ("terminate called without an active exception", SIGABRT).  Every
    # file is written and every lock released by now (the engine's finally
    # blocks ran); leave without the interpreter's teardown.
    os._exit(130)  # pylint: disable=protected-access
  if (isinstance(status, int) and threading.active_count() == 1
      and sys.getprofile() is None and sys.gettrace() is None):
    atexit._run_exitfuncs()  # pylint: disable=protected-access
    for stream in (sys.stdout, sys.stderr):   # what the handlers printed
      try:
        stream.flush()
      except (BrokenPipeError, ValueError):   # gone, or closed by a handler
        pass
    os._exit(status)  # pylint: disable=protected-access
  return status


if __name__ == "__main__":
  sys.exit(run())
