"""The ``ftrl-adam`` command line.

Subcommands:

* ``ftrl-adam regret``: the beta-grid of regret games (the package's main
  job): (b1, b2) x seeds (x radii, x c or learning rates) against switch,
  alternating, Gaussian, ... adversaries, as one vmapped program per
  adversary sharded over every device, resumable, with a summary on stdout and
  a CSV, a JSON and heatmaps in ``--out`` (:mod:`ftrl_adam.regret.study`);
* ``ftrl-adam study``: vectorised training studies (from
  :mod:`ftrl_adam.studies.cli`, when that package is installed);
* ``ftrl-adam demo``: trains a small least-squares model with
  :func:`ftrl_adam.ftrl_adam` and prints its loss.

``ftrl-adam`` alone prints this help.  Every option is checked before anything
is compiled; a bad value exits with status 2 and a message naming the option.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from ftrl_adam import _cli_common

# The embedded defaults of `ftrl-adam regret` (about 30 s on 2 CPU cores)
# and of `--quick` (seconds).  Options given on the command line win.
REGRET_DEFAULTS: dict[str, Any] = {
    "b1": "log1m:0.5:0.99:16",
    "b2": "log1m:0.25:0.995:24",
    "seeds": "8",
    "adversaries": "switch,alternating,gaussian",
    "T": 2000,
    "d": 64,
    "radius": "1.0",
    "out": os.path.join("runs", "regret-default"),
}
REGRET_QUICK: dict[str, Any] = {
    "b1": "log1m:0.5:0.9:3",
    "b2": "log1m:0.25:0.95:3",
    "seeds": "2",
    "adversaries": "switch,gaussian",
    "T": 300,
    "d": 4,
    "radius": "1.0",
    "out": os.path.join("runs", "regret-quick"),
}

_AXIS_HELP = ("a list '0.9,0.99', 'lin:lo:hi:n', 'log:lo:hi:n' or "
              "'log1m:lo:hi:n' (1 - b log-spaced)")


# ============================================================================
# ftrl-adam demo
# ============================================================================

def _demo(args: argparse.Namespace) -> int:
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel

  from ftrl_adam import ftrl_adam  # pylint: disable=import-outside-toplevel

  if args.steps < 1:
    args._parser.error("--steps must be >= 1")  # pylint: disable=protected-access
  key_x, key_w, key_n = jax.random.split(jax.random.key(args.seed), 3)
  x = jax.random.normal(key_x, (512, 32))
  w_true = jax.random.normal(key_w, (32,))
  y = x @ w_true + 0.1 * jax.random.normal(key_n, (512,))

  def loss(w):
    return 0.5 * jnp.mean((x @ w - y) ** 2)

  tx = ftrl_adam(args.lr, b1=args.b1, b2=args.b2, radius=args.radius)

  @jax.jit
  def step(w, state):
    value, grad = jax.value_and_grad(loss)(w)
    updates, state = tx.update(grad, state, w)
    return optax.apply_updates(w, updates), state, value

  w = jnp.zeros(32)
  state = tx.init(w)
  print(f"ftrl_adam demo: least squares, d=32, lr={args.lr}, b1={args.b1}, "
        f"b2={args.b2}, radius={args.radius}")
  for t in range(1, args.steps + 1):
    w, state, value = step(w, state)
    if t == 1 or t % max(1, args.steps // 10) == 0:
      print(f"  step {t:5d}  loss {float(value):.6f}")
  final = float(loss(w))
  print(f"final loss {final:.6f} (noise floor ~0.005)")
  return 0


def _add_demo_parser(sub: Any) -> None:
  demo = sub.add_parser(
      "demo", help="train a least-squares model with ftrl_adam; print the loss",
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  demo.add_argument("--steps", type=int, default=500, help="training steps")
  demo.add_argument("--lr", type=float, default=0.05, help="learning rate")
  demo.add_argument("--b1", type=float, default=0.9, help="beta1 in [0, 1)")
  demo.add_argument("--b2", type=float, default=0.99, help="beta2 in [0, 1)")
  demo.add_argument("--radius", type=float, default=None,
                    help="clip the update to a box of this radius")
  demo.add_argument("--seed", type=int, default=0, help="PRNG seed")
  demo.set_defaults(func=_demo, _parser=demo)


# ============================================================================
# ftrl-adam regret
# ============================================================================

# Argument names of regret.beta_grid / run_beta_grid -> command-line options.
_REGRET_FLAGS = (
    ("`adversaries`", "--adversaries"), ("`chunk_size`", "--chunk-size"),
    ("`radius`", "--radius"), ("`method`", "--method"),
    ("`domain`", "--domain"), ("`kappa`", "--kappa"), ("`seeds`", "--seeds"),
    ("`lr`", "--lrs"), ("`b1`", "--b1"), ("`b2`", "--b2"), ("`c`", "--c"),
    ("`G`", "--G"), ("`T`", "--T"), ("`d`", "--d"),
    ("overwrite=True", "--overwrite"), ("out_dir", "--out"),
)


def _cli_words(message: str) -> str:
  for arg, flag in _REGRET_FLAGS:
    message = message.replace(arg, flag)
  return message


def _add_regret_parser(sub: Any) -> argparse.ArgumentParser:
  d, q = REGRET_DEFAULTS, REGRET_QUICK
  p = sub.add_parser(
      "regret",
      help="the beta-grid: regret games over (b1, b2) x seeds, one program",
      description=(
          "Run the theory's learner (FTRL-Adam, Algorithm 1 of Nguyen 2026) "
          "against adversaries over a (b1, b2) x seeds grid (x radii, x c or "
          "learning rates): one vmapped program per adversary, sharded over "
          "every device JAX sees, in resumable chunks. Prints per b1 the b2 "
          "with the smallest regret next to b1^2 and the worst regret / D3 "
          "ratio; writes results.csv (one row per game, every setting a "
          "column), run.json (configuration, versions, timings), summary.txt "
          "and heatmaps regret_<adversary>.png (with the curve b2 = b1^2), "
          "ratio_<adversary>.png and regret_worst.png to --out. Running the "
          "same command again resumes an interrupted run; other arguments "
          "never reuse old results."),
      epilog=(
          "Defaults (9,216 games, about 30 s on 2 CPU cores): " + ", ".join(
              f"--{k.replace('_', '-')} {v}" for k, v in d.items())
          + ". With --quick: " + ", ".join(
              f"--{k.replace('_', '-')} {v}" for k, v in q.items())
          + ". Options given explicitly override both. Several devices: "
          "every device JAX sees is used (XLA_FLAGS="
          "--xla_force_host_platform_device_count=8 simulates 8 on a CPU); "
          "several hosts: start each process with jax.distributed and the "
          "same arguments."))
  p.add_argument("--b1", default=None,
                 help=f"b1 axis, values in (0, 1): {_AXIS_HELP}; "
                      f"default {d['b1']}")
  p.add_argument("--b2", default=None,
                 help=f"b2 axis, values in (0, 1): {_AXIS_HELP}; "
                      f"default {d['b2']}")
  p.add_argument("--seeds", default=None,
                 help=f"a number of seeds n (seeds 0..n-1) or a list '3,7'; "
                      f"default {d['seeds']}")
  p.add_argument("--adversaries", default=None,
                 help="comma-separated adversaries from: switch (D5, played "
                      "for its own L+k rounds), alternating (D6), gaussian, "
                      "rademacher, sparse, heavy_tailed, oppose, abs_w (D7, "
                      f"adaptive); default {d['adversaries']}")
  p.add_argument("--T", type=int, default=None,
                 help=f"rounds per game; default {d['T']}")
  p.add_argument("--d", type=int, default=None,
                 help=f"dimension of each game; default {d['d']}")
  p.add_argument("--radius", default=None,
                 help=f"radius D > 0 of the learner's domain: a value or an "
                      f"axis ({_AXIS_HELP}); default {d['radius']}")
  rate = p.add_mutually_exclusive_group()
  rate.add_argument("--c", default=None,
                    help="the constant c > 0 of Algorithm 1 as an axis "
                         "(learning rate c sqrt(1-b2)/(1-b1)); default c = D")
  rate.add_argument("--lrs", default=None,
                    help="learning rates > 0 as an axis instead of --c "
                         "(then c = lr (1-b1)/sqrt(1-b2) per cell)")
  p.add_argument("--G", type=float, default=1.0,
                 help="gradient scale of the adversaries (default 1)")
  p.add_argument("--kappa", type=float, default=1.0,
                 help="length factor of the switch sequence's -G phase "
                      "(default 1)")
  p.add_argument("--domain", default="box", choices=("box", "ball"),
                 help="the learner's domain (default box; ball uses one "
                      "global second moment)")
  p.add_argument("--method", default="sequential",
                 choices=("sequential", "parallel"),
                 help="sequential (lax.scan over rounds) or parallel "
                      "(associative scans over time; oblivious adversaries "
                      "only; O(T d) memory per game); default sequential")
  p.add_argument("--chunk-size", type=int, default=None,
                 help="games per compiled chunk (bounds device memory; the "
                      "resume granularity); default from T, d and the "
                      "platform (256 at d=64 on CPU)")
  p.add_argument("--out", default=None,
                 help=f"results folder (resumable); default {d['out']} "
                      f"({q['out']} with --quick)")
  p.add_argument("--overwrite", action="store_true",
                 help="discard the beta-grid results in --out and start again")
  p.add_argument("--no-progress", action="store_true",
                 help="no progress lines on stderr")
  p.add_argument("--no-plots", action="store_true", help="skip the heatmaps")
  p.add_argument("--xla-defaults", action="store_true",
                 help="compile with XLA's default options: about 2x faster on "
                      "CPU, but games equal their single runs only to float32 "
                      "rounding (default: the engine's bit-reproducible "
                      "options)")
  p.add_argument("--quick", action="store_true",
                 help="a tiny grid that runs in seconds (see below)")
  _cli_common.add_distributed_options(p)
  p.set_defaults(func=_regret, _parser=p)
  return p


def _regret(args: argparse.Namespace) -> int:
  from ftrl_adam import grid  # pylint: disable=import-outside-toplevel
  from ftrl_adam.regret import study  # pylint: disable=import-outside-toplevel

  parser = args._parser  # pylint: disable=protected-access
  _cli_common.start_distributed(args, parser)
  base = REGRET_QUICK if args.quick else REGRET_DEFAULTS
  pick = lambda name: (getattr(args, name) if getattr(args, name) is not None  # noqa: E731
                       else base[name])
  # Everything is checked here, before anything is traced or compiled.
  try:
    spec = study.beta_grid(
        b1=pick("b1"), b2=pick("b2"), seeds=pick("seeds"),
        adversaries=pick("adversaries"), T=pick("T"), d=pick("d"),
        radius=pick("radius"), c=args.c, lr=args.lrs, G=args.G,
        kappa=args.kappa, domain=args.domain, method=args.method,
        chunk_size=args.chunk_size)
  except ValueError as e:
    parser.error(_cli_words(str(e)))
  out = pick("out")
  try:
    result = study.run_beta_grid(
        spec, out_dir=out, progress=not args.no_progress,
        overwrite=args.overwrite, plots=not args.no_plots,
        reproducible=not args.xla_defaults)
  except grid.ResultsFolderError as e:
    print(f"{parser.prog}: error: {_cli_words(str(e))}", file=sys.stderr)
    return 2
  print(study.format_beta_summary(result))
  names = sorted(os.path.basename(f) for f in result.files.values())
  if names:
    print(f"\nwrote {len(names)} files to {out}{os.sep}: {', '.join(names)}")
  return 0


# ============================================================================
# The parser.
# ============================================================================

def _add_study_parser(sub: Any) -> None:
  # `ftrl-adam study` lives in ftrl_adam/studies/cli.py (add_study_parser);
  # without that package the command simply has no `study`.
  try:
    from ftrl_adam.studies.cli import add_study_parser  # pylint: disable=import-outside-toplevel
  except ModuleNotFoundError as e:
    if e.name not in ("ftrl_adam.studies", "ftrl_adam.studies.cli"):
      raise
    return
  add_study_parser(sub)


# ============================================================================
# ftrl-adam bench
# ============================================================================


def _bench(args: argparse.Namespace) -> int:
  import importlib  # pylint: disable=import-outside-toplevel
  module = importlib.import_module(f"ftrl_adam.bench.{args.benchmark}")
  return int(module.main(args.bench_args) or 0)


def _add_bench_parser(sub: Any) -> None:
  from ftrl_adam.bench import BENCHMARKS  # pylint: disable=import-outside-toplevel
  p = sub.add_parser(
      "bench", help="run a benchmark: a table naming the device, and a JSON",
      description=("Run one of the package's benchmarks (DESIGN.md targets). "
                   "Options after the name go to the benchmark: "
                   "`ftrl-adam bench step --help` lists them. Results: a "
                   "printed table naming the device and a JSON under --out "
                   "(default benchmarks/results in a checkout's root, else "
                   "./bench-results)."))
  p.add_argument("benchmark", choices=BENCHMARKS,
                 help="step: ftrl_adam vs optax.adam per step; grid: the "
                      "beta-grid, loop vs vmapped vs time-parallel; study: K "
                      "training runs in one program vs K runs")
  p.add_argument("bench_args", nargs=argparse.REMAINDER,
                 help="options of the benchmark")
  p.set_defaults(func=_bench, _parser=p)


def build_parser() -> argparse.ArgumentParser:
  """The ``ftrl-adam`` parser with its subcommands."""
  parser = argparse.ArgumentParser(
      prog="ftrl-adam",
      description=("Adam as FTRL on the updates: the regret lab's beta-grid "
                   "(`ftrl-adam regret`, the main job), training studies and "
                   "benchmarks and a demo. `ftrl-adam SUBCOMMAND --help` lists a "
                   "subcommand's options."))
  sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
  _add_regret_parser(sub)
  _add_study_parser(sub)
  _add_bench_parser(sub)
  _add_demo_parser(sub)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Runs ``ftrl-adam`` with ``argv`` (default ``sys.argv[1:]``); the exit status."""
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.command is None:
    parser.print_help()
    return 0
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
