"""``ftrl-adam study``: a (b1, b2) x learning-rate x seed training study."""

from __future__ import annotations

import argparse
import ast
import os
from typing import Any

from ftrl_adam.lab.cli import _common


#: The one-line help of the subcommand (``ftrl-adam --help``).
HELP = "train a model over a (b1, b2) x lr x seed grid in one program"

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


def _study():
  from ftrl_adam.lab import studies as study  # pylint: disable=import-outside-toplevel
  return study


def add_parser(sub: Any) -> argparse.ArgumentParser:
  study = _study()
  p = sub.add_parser(
      "study",
      help=HELP,
      description=(
          "Train a model over b1 x b2 x learning rates x seeds with "
          "ftrl_adam + ema_params, vmapped in chunks over every device "
          "(resumable), tune the learning rate per (b1, b2) as Orvieto & "
          "Gower (2025), and report the best b2 of each b1 next to b1 and "
          "b1^2. Writes results.csv, tuned.csv, run.json, heatmaps and "
          "summary.txt to --out."),
      epilog="Examples: ftrl-adam study --task quadratic --option dim=50 "
             "--b1 0.9,0.99 --b2 0.9,0.999 --lrs 0.01,0.1 --seeds 2 "
             "--steps 200")
  _common.add_spec_options(p, study.STUDY_OPTIONS)
  p.add_argument("--option", action="append", type=_parse_option, default=[],
                 metavar="KEY=VALUE",
                 help="an option of the task (repeatable), e.g. hidden=64, "
                      "context=64, noise=0.5")
  _common.add_output_options(p, os.path.join("runs", "study-<task>"), "study")
  _common.add_distributed_options(p)
  p.set_defaults(func=run, _parser=p)
  return p


def run(args: argparse.Namespace) -> int:
  study = _study()
  parser = args._parser  # pylint: disable=protected-access
  _common.start_distributed(args, parser)
  kwargs = _common.given(args, study.STUDY_OPTIONS)
  task = kwargs.pop("task", "digits")
  words = _common.words_for(study.STUDY_OPTIONS,
                            (("`task_options`", "--option"),))
  try:
    spec = study.make_study(task, task_options=dict(args.option), **kwargs)
  except (ValueError, TypeError) as e:
    parser.error(words(str(e)))
  out = args.out or os.path.join("runs", f"study-{spec.task.name}")

  def go() -> int:
    result = study.run_study(
        spec.task, out_dir=out, progress=not args.no_progress,
        overwrite=args.overwrite, plots=not args.no_plots, verbose=True,
        **kwargs)
    _common.print_written(result.files, out)
    return 0

  return _common.run_guarded(parser, go, words, out)
