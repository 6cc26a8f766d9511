"""``ftrl-adam regret``: the beta-grid of regret games (flags from the spec)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ftrl_adam.lab.cli import _common

DEFAULT_OUT = os.path.join("runs", "regret-default")
QUICK_OUT = os.path.join("runs", "regret-quick")


#: The one-line help of the subcommand (``ftrl-adam --help``).
HELP = "the beta-grid: regret games over (b1, b2) x seeds, one program"

def _options():
  from ftrl_adam.lab.regret import study  # pylint: disable=import-outside-toplevel
  return study


def add_parser(sub: Any) -> argparse.ArgumentParser:
  study = _options()
  p = sub.add_parser(
      "regret",
      help=HELP,
      description=(
          "Play the theory's learner (FTRL-Adam, Algorithm 1 of Nguyen 2026) "
          "against adversaries over a (b1, b2) x seeds grid (x radii, x c or "
          "learning rates). Each oblivious seed's gradients are drawn once "
          "and played by every learner cell; deterministic adversaries play "
          "once. One program per adversary, sharded over every device JAX "
          "sees, in resumable chunks. Prints per b1 the b2 with the smallest "
          "regret next to b1^2 and the worst regret / D3 ratio; writes "
          "results.csv (one row per game, every setting a column), run.json, "
          "summary.txt and heatmaps regret_<adversary>.png (with the curve "
          "b2 = b1^2), ratio_<adversary>.png and regret_worst.png to --out. "
          "The same command again resumes an interrupted run; other "
          "arguments never reuse old results."),
      epilog=(
          "With --quick: " + ", ".join(
              f"--{k} {v}" for k, v in study.QUICK.items())
          + f", --out {QUICK_OUT}. Options given explicitly override it. "
          "Your own adversary: --adversaries switch,mypkg.mymodule:my_adv "
          "(an Adversary, or a function returning one). Several devices: "
          "every device JAX sees is used (XLA_FLAGS="
          "--xla_force_host_platform_device_count=8 simulates 8 on a CPU); "
          "several hosts: start each process with --distributed and the same "
          "arguments."))
  _common.add_spec_options(p, study.BETA_GRID_OPTIONS)
  p.add_argument("--quick", action="store_true",
                 help="a tiny grid that runs in seconds (see below)")
  p.add_argument("--reproducible", action="store_true",
                 help="compile with the engine's bit-reproducible options: "
                      "every game then equals its single run bit for bit "
                      "(2-3x slower on CPU); default: XLA's options, equal to "
                      "float32 rounding")
  _common.add_output_options(p, DEFAULT_OUT, "beta-grid")
  _common.add_distributed_options(p)
  p.set_defaults(func=run, _parser=p)
  return p


def run(args: argparse.Namespace) -> int:
  study = _options()
  parser = args._parser  # pylint: disable=protected-access
  _common.start_distributed(args, parser)
  kwargs = dict(study.QUICK) if args.quick else {}
  kwargs.update(_common.given(args, study.BETA_GRID_OPTIONS))
  words = _common.words_for(study.BETA_GRID_OPTIONS)
  # Everything is checked here, before anything is traced or compiled.
  try:
    spec = study.beta_grid(**kwargs)
  except ValueError as e:
    raise SystemExit(_common.error(parser, words(str(e)))) from None
  out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)

  def go() -> int:
    result = study.run_beta_grid(
        spec, out_dir=out, progress=not args.no_progress,
        overwrite=args.overwrite, plots=not args.no_plots, redraw=args.redraw,
        reproducible=args.reproducible)
    print(result.text)
    _common.print_written(result.files, out)
    return 0

  return _common.run_guarded(parser, go, words, out)
