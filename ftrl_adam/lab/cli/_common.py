"""What the ``ftrl-adam`` subcommands share (private): options and errors.

* :class:`Parser`, the class of every parser of the command (the
  subcommands' and the benchmarks' too): no abbreviations (``--seed 3`` is an
  error, not ``--seeds 3``), and an unknown option is reported with the
  closest one it resembles;
* :func:`add_spec_options` builds a subcommand's flags from an experiment's
  option list (:class:`ftrl_adam.lab.options.Option`), so that names,
  defaults and help are written once, in the spec;
* :func:`add_output_options` and :func:`add_distributed_options`: ``--out``,
  ``--overwrite``, ``--no-progress``, ``--no-plots`` and ``--distributed ...``,
  defined once for every subcommand that runs an experiment;
* :func:`run_guarded` turns what a user can cause into one line and an exit
  status: a bad option (2, naming the flag), a results folder that cannot be
  used, a grid too big for the machine, a file-system error (2, naming the
  path), Ctrl-C (130, with how to resume).
"""

from __future__ import annotations

import argparse
import difflib
import errno
import os
import re
import sys
from typing import Any, Callable, Optional, Sequence


class Parser(argparse.ArgumentParser):
  """An ``ArgumentParser`` that takes no abbreviations and suggests spellings.

  ``allow_abbrev`` is always False: an option is given whole or not at all,
  so that a misspelt one cannot silently become another (``--seed 3`` is not
  ``--seeds 3``).  An unknown option (:meth:`unknown`) is an error of this
  parser, with its usage, naming the closest option it has (difflib).
  """

  def __init__(self, *args: Any, **kwargs: Any) -> None:
    kwargs["allow_abbrev"] = False
    super().__init__(*args, **kwargs)

  def suggestion(self, word: str) -> Optional[str]:
    """The option of this parser closest to ``word`` (``--x=1`` reads ``--x``)."""
    if not word.startswith("-"):
      return None
    options = {o.lstrip("-"): o for a in self._actions for o in a.option_strings}
    close = difflib.get_close_matches(word.split("=", 1)[0].lstrip("-"),
                                      list(options), n=1, cutoff=0.6)
    return options[close[0]] if close else None

  def unknown(self, words: Sequence[str]) -> None:
    """Exits (2) naming the unrecognized ``words`` and the closest options."""
    hints = [(w.split("=", 1)[0], s) for w in words
             if (s := self.suggestion(w)) is not None]
    if len(hints) == 1:
      hint = f"; did you mean {hints[0][1]}?"
    else:
      hint = "".join(f"; did you mean {s} (for {w})?" for w, s in hints)
    self.error(f"unrecognized arguments: {' '.join(words)}{hint}")

  def error(self, message: str) -> Any:
    """``prog: error: message`` with the usage, exit 2; a misspelt choice
    (e.g. a subcommand) gets the closest one."""
    bad = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
    if bad:
      choices = re.findall(r"'([^']*)'", bad.group(2))
      close = difflib.get_close_matches(bad.group(1), choices, n=1, cutoff=0.6)
      if close:
        message += f"; did you mean {close[0]!r}?"
    return super().error(message)

  def print_usage(self, file: Any = None) -> None:
    """The usage above an error: a long one (a subcommand's dozens of
    options) in one line that says where the options are listed."""
    usage = self.format_usage()
    if usage.count("\n") > 2:
      usage = (f"usage: {self.prog} [options]   (`{self.prog} --help` lists "
               f"them)\n")
    self._print_message(usage, file)

  def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
    parsed, extras = self.parse_known_args(args, namespace)
    if extras:
      self.unknown(extras)
    return parsed


def add_spec_options(p: argparse.ArgumentParser, options: Sequence[Any],
                     defaults: Optional[dict[str, Any]] = None) -> None:
  """One flag per option; the default shown is ``defaults`` or the option's.

  Every flag's argparse default is None, so that the command can tell a
  given option from a default one (``--quick`` overrides only the latter).
  """
  group = p.add_argument_group("options of the experiment")
  for o in options:
    if not o.cli:
      continue
    shown = (defaults or {}).get(o.name, o.default)
    text = o.help + ("" if shown is None else f" Default: {shown}.")
    group.add_argument(o.cli_flag, dest=o.name, default=None, type=o.type,
                       choices=o.choices, help=text.replace("%", "%%"),
                       metavar=None if o.choices else o.name.upper())


def given(args: argparse.Namespace, options: Sequence[Any]) -> dict[str, Any]:
  """The options given on the command line, by name."""
  return {o.name: getattr(args, o.name) for o in options
          if o.cli and getattr(args, o.name, None) is not None}


def add_output_options(p: argparse.ArgumentParser, default_out: str,
                       what: str) -> None:
  """--out, --overwrite, --no-progress, --no-plots, --redraw."""
  out = p.add_argument_group("output")
  out.add_argument("--out", default=None, metavar="DIR",
                   help=f"results folder (resumable: the same command again "
                        f"continues an interrupted run); default "
                        f"{default_out}")
  out.add_argument("--overwrite", action="store_true",
                   help=f"discard the {what} results in --out and start again")
  out.add_argument("--no-progress", action="store_true",
                   help="no size and progress lines on stderr")
  out.add_argument("--no-plots", action="store_true", help="skip the figures")
  out.add_argument("--redraw", action="store_true",
                   help="draw every figure again from the written tables (a "
                        "finished --out otherwise draws only missing ones)")


def add_distributed_options(p: argparse.ArgumentParser) -> None:
  """--distributed, --coordinator, --num-processes, --process-id."""
  dist = p.add_argument_group(
      "several hosts", "start one process per host, each with the same options")
  dist.add_argument("--distributed", action="store_true",
                    help="call jax.distributed.initialize() first; on Slurm, "
                         "Open MPI or a TPU pod it finds the cluster itself, "
                         "elsewhere give the next three options (or "
                         "JAX_COORDINATOR_ADDRESS)")
  dist.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                    help="address of process 0 (with --distributed)")
  dist.add_argument("--num-processes", type=int, default=None,
                    help="number of processes (with --distributed)")
  dist.add_argument("--process-id", type=int, default=None,
                    help="this process's index, 0..num-processes-1 (with "
                         "--distributed)")


def start_distributed(args: argparse.Namespace,
                      parser: argparse.ArgumentParser) -> None:
  """jax.distributed.initialize() for --distributed (before any JAX work)."""
  kw = {k: v for k, v in (("coordinator_address", args.coordinator),
                          ("num_processes", args.num_processes),
                          ("process_id", args.process_id)) if v is not None}
  if not args.distributed:
    if kw:
      parser.error("--coordinator, --num-processes and --process-id need "
                   "--distributed")
    return
  if args.num_processes is not None and args.num_processes < 1:
    parser.error(f"--num-processes must be >= 1, got {args.num_processes}")
  if args.process_id is not None and not (
      0 <= args.process_id < (args.num_processes or sys.maxsize)):
    parser.error(f"--process-id must be in 0..num-processes-1, got "
                 f"{args.process_id}")
  import jax  # pylint: disable=import-outside-toplevel
  try:
    jax.distributed.initialize(**kw)
  except (ValueError, RuntimeError) as e:
    parser.error(f"--distributed: jax.distributed.initialize() failed: {e}")


def words_for(options: Sequence[Any],
              extra: Sequence[tuple[str, str]] = ()) -> Callable[[str], str]:
  """A function that names the flags in a message about spec options.

  The runner's own arguments (``overwrite=True``, ``out_dir``) become
  ``--overwrite`` and ``--out`` for every subcommand.
  """
  from ftrl_adam.lab import options as lab_options  # pylint: disable=import-outside-toplevel
  shared = (("overwrite=True", "--overwrite"), ("out_dir", "--out"))
  return lambda message: lab_options.cli_words(message, options,
                                               (*extra, *shared))


def print_written(files: dict[str, str], out: str) -> None:
  """``wrote N files to OUT/: a, b, ...`` on stdout."""
  names = sorted(os.path.basename(f) for f in files.values())
  if names:
    print(f"\nwrote {len(names)} files to {out}{os.sep}: {', '.join(names)}")
  sys.stdout.flush()


def stdout_closed() -> int:
  """The reader of our output went away (``ftrl-adam regret | head``): the
  files are written, so stop quietly, as Python's documentation advises for
  a broken pipe (status 1; what is still buffered goes to /dev/null)."""
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, sys.stdout.fileno())
  return 1


def error(parser: argparse.ArgumentParser, message: str, status: int = 2) -> int:
  """Prints ``prog: error: message`` (one line) and returns ``status``."""
  print(f"{parser.prog}: error: {message}", file=sys.stderr)
  return status


def _os_message(e: OSError, out: Optional[str]) -> str:
  path = e.filename or out or "?"
  if e.errno == errno.ENOSPC:
    why = "the disk is full"
  elif isinstance(e, PermissionError):
    why = "permission denied"
  elif e.errno == errno.EROFS:
    why = "the file system is read-only"
  else:    # an OSError without errno (e.g. shutil's) says what in its text
    why = e.strerror or str(e) or type(e).__name__
  return (f"cannot write {path!r}: {why}. Choose another --out (finished "
          f"chunks already written are kept and resumed).")


def run_guarded(parser: argparse.ArgumentParser, run: Callable[[], int],
                words: Callable[[str], str], out: Optional[str] = None) -> int:
  """Runs ``run()``; what a user can cause becomes one line and a status."""
  from ftrl_adam.lab.engine._folder import ResultsFolderError  # pylint: disable=import-outside-toplevel
  from ftrl_adam.lab.experiment import TooBigError  # pylint: disable=import-outside-toplevel
  try:
    return run()
  except KeyboardInterrupt:
    where = f" in {out}" if out else ""
    print(f"\n{parser.prog}: interrupted. Finished chunks are kept{where}; "
          f"run the same command again to resume.", file=sys.stderr)
    return 130
  except (ResultsFolderError, TooBigError) as e:
    return error(parser, words(str(e)))
  except BrokenPipeError:
    return stdout_closed()
  except OSError as e:
    return error(parser, _os_message(e, out))
  except ValueError as e:   # a bad option found while building the run
    return error(parser, words(str(e)))
