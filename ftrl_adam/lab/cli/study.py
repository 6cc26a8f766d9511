"""``ftrl-adam study``: a training study over b1 x b2 x lr (x any axis) x seeds."""

from __future__ import annotations

import argparse
import ast
import os
from typing import Any

from ftrl_adam.lab.cli import _common


#: The one-line help of the subcommand (``ftrl-adam --help``).
HELP = ("train a model over a (b1, b2) x lr (x any axis) x seed grid, one "
        "program per rung")


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


def _parse_axis(text: str) -> tuple[str, str]:
  key, sep, value = text.partition("=")
  if not sep or not key.strip() or not value.strip():
    raise argparse.ArgumentTypeError(
        f"expected NAME=VALUES (e.g. weight_decay=log:1e-5:1e-1:5 or "
        f"eps=1e-8,1e-6), got {text!r}")
  return key.strip(), value.strip()


def _study():
  from ftrl_adam.lab import studies as study  # pylint: disable=import-outside-toplevel
  return study


def add_parser(sub: Any) -> argparse.ArgumentParser:
  study = _study()
  p = sub.add_parser(
      "study",
      help=HELP,
      description=(
          "Train a model over b1 x b2 x learning rates (x --axis ...) x seeds "
          "with ftrl_adam + ema_params, vmapped in chunks over every device "
          "(resumable), tune the learning rate (and the other axes not "
          "shown) per (b1, b2) as Orvieto & Gower (2025), and report the "
          "best b2 of each b1 next to b1 and b1^2. --budget halving stops "
          "the worst configurations early (successive halving); "
          "--sigma-rels reports the post-hoc EMA of each width. Writes "
          "results.csv, tuned.csv, run.json, heatmaps and summary.txt to "
          "--out."),
      epilog="Examples: ftrl-adam study --task quadratic --option dim=50 "
             "--b1 0.9,0.99 --b2 0.9,0.999 --lrs 0.01,0.1 --seeds 2 "
             "--steps 200;  ftrl-adam study --task charlm --b1 0.9 --b2 0.99 "
             "--axis weight_decay=log:1e-4:1e-1:4 --show lr,weight_decay;  "
             "ftrl-adam study --budget halving")
  _common.add_spec_options(p, study.STUDY_OPTIONS)
  p.add_argument("--axis", action="append", type=_parse_axis, default=[],
                 metavar="NAME=VALUES",
                 help="another axis of the built-in optimizer (repeatable): "
                      + ", ".join(study.HYPERPARAMETERS) + "; values as "
                      "--b1 (a list or lin:/log:/log1m: range)")
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
  names = {o.name for o in study.STUDY_OPTIONS}
  words = _common.words_for(study.STUDY_OPTIONS,
                            (("`task_options`", "--option"),
                             ("`axes`", "--axis"))
                            + tuple((f"`{k}`", f"--option {k}")   # the task's
                                    for k, _ in args.option if k not in names))
  axes = dict(args.axis)
  if len(axes) != len(args.axis):
    parser.error("--axis: each axis once")
  try:
    spec = study.make_study(task, task_options=dict(args.option),
                            axes=axes or None, **kwargs)
  except (ValueError, TypeError) as e:
    raise SystemExit(_common.error(parser, words(str(e)))) from None
  out = args.out or os.path.join("runs", f"study-{spec.task.name}")

  def go() -> int:
    result = study.run_study(
        spec, out_dir=out, progress=not args.no_progress,
        overwrite=args.overwrite, plots=not args.no_plots, redraw=args.redraw,
        verbose=True)
    _common.print_written(result.files, out)
    return 0

  return _common.run_guarded(parser, go, words, out)
