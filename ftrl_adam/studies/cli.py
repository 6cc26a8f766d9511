"""``ftrl-adam study``: a (b1, b2) x learning-rate x seed training study.

Wired into the ``ftrl-adam`` command by :func:`add_study_parser`; also runs
alone as ``python -m ftrl_adam.studies``.

Examples::

  ftrl-adam study                                   # the default study (digits)
  ftrl-adam study --task charlm --b1 0.9,0.95 --b2 log1m:0.9:0.999:4 \\
      --lrs 1e-3,3e-3 --seeds 2 --steps 600 --out charlm_study
  ftrl-adam study --task quadratic --option dim=50 --option noise=0.5

Every option is checked, and the task is built, before anything is compiled;
a bad value exits with status 2 and a message naming the option.  Running the
same command again resumes an interrupted study from ``--out``.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from typing import Any, Sequence

from ftrl_adam import _cli_common

_B_HELP = ("values in [0, 1): a list '0.9,0.99' or a range 'log1m:lo:hi:n' "
           "(1-b log-spaced), 'lin:lo:hi:n'; default the Orvieto & Gower grid "
           "%(default)s = 1 - {0.4, 0.2, ..., 0.003125}")


def _parse_option(text: str) -> tuple[str, Any]:
  key, sep, value = text.partition("=")
  if not sep or not key.strip():
    raise argparse.ArgumentTypeError(
        f"expected KEY=VALUE (e.g. hidden=64 or noise=0.5), got {text!r}")
  try:
    parsed = ast.literal_eval(value)
  except (ValueError, SyntaxError):
    parsed = value
  return key.strip(), parsed


def add_study_parser(subparsers: Any) -> argparse.ArgumentParser:
  """Adds the ``study`` subcommand to an ``argparse`` subparsers object.

  Args:
    subparsers: what ``parser.add_subparsers()`` returned.

  Returns:
    The ``study`` parser; its ``func`` default runs the study and returns the
    exit status (0, or 2 for a bad option or results folder).
  """
  from ftrl_adam.studies import study as study_lib  # light: no JAX work

  d = study_lib.DEFAULT_STUDY
  p = subparsers.add_parser(
      "study",
      help="train a model over a (b1, b2) x lr x seed grid in one program",
      description=(
          "Train a model over b1 x b2 x learning rates x seeds with "
          "ftrl_adam + ema_params, vmapped in chunks over every device "
          "(resumable), tune the learning rate per (b1, b2) as Orvieto & "
          "Gower (2025), and report the best b2 of each b1 next to b1 and "
          "b1^2. Writes cells.csv, tuned.csv, study.json, heatmaps and "
          "summary.txt to --out."),
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--task", default=d["task"],
                 choices=("digits", "charlm", "quadratic", "rosenbrock"),
                 help="the training task")
  p.add_argument("--option", action="append", type=_parse_option, default=[],
                 metavar="KEY=VALUE",
                 help="an option of the task (repeatable), e.g. hidden=64, "
                      "context=64, noise=0.5")
  p.add_argument("--b1", default=d["b1"], metavar="SPEC", help="b1 " + _B_HELP)
  p.add_argument("--b2", default=d["b2"], metavar="SPEC", help="b2 " + _B_HELP)
  p.add_argument("--lrs", default=None, metavar="SPEC",
                 help="learning rates > 0, tuned per (b1, b2): a list "
                      "'1e-3,1e-2' or 'log:lo:hi:n'; default the task's")
  p.add_argument("--seeds", default=str(d["seeds"]), metavar="SPEC",
                 help="a number of seeds n (0..n-1) or a list '3,7'")
  p.add_argument("--steps", dest="train_steps", type=int, default=None,
                 metavar="N",
                 help="training steps per run; default the task's")
  p.add_argument("--eval-every", type=int, default=None, metavar="N",
                 help="validation every this many steps; default the task's")
  p.add_argument("--ema-decay", type=float, default=None, metavar="X",
                 help="decay of the parameter EMA; default the task's")
  p.add_argument("--eps", type=float, default=1e-8, metavar="X", help="Adam's epsilon")
  p.add_argument("--metric", default="val_loss",
                 choices=study_lib.TUNE_METRICS,
                 help="metric the learning rate is tuned on and the summary "
                      "ranks by")
  p.add_argument("--out", default=None, metavar="DIR",
                 help="results folder (resumable); default runs/study-<task>")
  p.add_argument("--chunk-size", type=int, default=d["chunk_size"], metavar="N",
                 help="runs per compiled chunk (memory, resume granularity)")
  p.add_argument("--overwrite", action="store_true",
                 help="discard the results in --out and start again")
  p.add_argument("--no-progress", action="store_true",
                 help="no progress line per chunk")
  p.add_argument("--no-plots", action="store_true", help="skip the heatmaps")
  _cli_common.add_distributed_options(p)
  p.set_defaults(func=_run_study_command, _study_parser=p)
  return p


def _run_study_command(args: argparse.Namespace) -> int:
  from ftrl_adam import grid  # pylint: disable=import-outside-toplevel
  from ftrl_adam.studies import study as study_lib  # pylint: disable=import-outside-toplevel
  from ftrl_adam.studies import tasks as tasks_lib  # pylint: disable=import-outside-toplevel

  parser = args._study_parser  # pylint: disable=protected-access
  _cli_common.start_distributed(args, parser)

  # Everything is validated here, before any compilation.
  options = dict(args.option)
  try:
    task = tasks_lib.make_task(args.task, **options)
    lrs = (task.defaults.learning_rates if args.lrs is None else args.lrs)
    study_lib.study_table(args.b1, args.b2, lrs, args.seeds)
    study_lib._settings(  # pylint: disable=protected-access
        task, args.train_steps, args.eval_every, args.ema_decay)
    if args.chunk_size < 1:
      raise ValueError(f"--chunk-size must be >= 1, got {args.chunk_size}.")
    if not args.eps >= 0:
      raise ValueError(f"--eps must be >= 0, got {args.eps}.")
  except ValueError as e:
    parser.error(_cli_words(str(e)))
  out = (args.out if args.out is not None
         else os.path.join("runs", f"study-{args.task}"))
  try:
    result = study_lib.run_study(
        task, b1=args.b1, b2=args.b2, learning_rates=lrs, seeds=args.seeds,
        steps=args.train_steps, eval_every=args.eval_every,
        ema_decay=args.ema_decay, eps=args.eps, metric=args.metric,
        chunk_size=args.chunk_size, out_dir=out,
        progress=not args.no_progress, overwrite=args.overwrite,
        plots=not args.no_plots, verbose=True)
  except grid.ResultsFolderError as e:
    print(f"{parser.prog}: error: {_cli_words(str(e))}", file=sys.stderr)
    return 2
  names = sorted(os.path.basename(f) for f in result.files.values())
  print(f"\nwrote {len(names)} files to {out}/: {', '.join(names)}")
  return 0


def _cli_words(message: str) -> str:
  """Names the command-line option for an argument named in a message."""
  for arg, flag in (("`learning_rates`", "--lrs (`learning_rates`)"),
                    ("`b1`", "--b1"), ("`b2`", "--b2"),
                    ("`seeds`", "--seeds"), ("`steps`", "--steps"),
                    ("`eval_every`", "--eval-every"),
                    ("`ema_decay`", "--ema-decay"),
                    ("overwrite=True", "--overwrite"),
                    ("chunk_size=", "--chunk-size "), ("out_dir", "--out")):
    message = message.replace(arg, flag)
  return message


def main(argv: Sequence[str] | None = None) -> int:
  """``python -m ftrl_adam.studies [options]``: the ``study`` subcommand alone."""
  parser = argparse.ArgumentParser(prog="ftrl-adam")
  sub = parser.add_subparsers(dest="command")
  add_study_parser(sub)
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] != "study":
    argv = ["study", *argv]
  args = parser.parse_args(argv)
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
