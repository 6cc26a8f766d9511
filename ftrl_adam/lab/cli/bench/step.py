"""One optimizer step of ftrl_adam vs optax.adam, with the EMA and the regret monitor.

Targets: a CPU step of ``ftrl_adam`` no slower than ``optax.adam`` on 16M
parameters (ratio <= 1.0); the regret monitor (a 4,096-entry subset, with the
D3 streams) at most 1.10x the plain ``ftrl_adam`` step on a single array and
on model-shaped trees; on a GPU, >= 80% of the measured device-to-device copy
bandwidth for the bytes an Adam step moves (read p, g, m, v; write p, m, v).

Median wall time of a jitted step (update + apply_updates, params and state
donated) of ``optax.adam``, ``ftrl_adam``, ``ftrl_adam`` with the box clip,
``ftrl_adam`` + ``ema_params`` and ``regret_monitor(ftrl_adam)``, interleaved
in one process (A B C D E A B ...), on each tree:

* model-shaped trees (``--models``): an embedding and ``L`` blocks of a layer
  norm (scale, bias), attention (qkv, out) and an MLP (two matrices, two
  biases) of width ``d`` - ``small`` (L=4, d=64: 33 leaves, 0.26M
  parameters) and ``large`` (L=12, d=256: 97 leaves, 9.7M);
* arrays (``--sizes``): n float32 parameters in three leaves (1/2, 1/4, 1/4).

Each of ``--rounds`` rounds times ``--repeats`` interleaved steps per
optimizer (more on a tree whose step is short, so that a round lasts about
``--min-time`` seconds per optimizer); the ratios are taken within a round
and reported as the median over the rounds and their range.  On a GPU it also
measures a device-to-device copy and reports the step's effective bandwidth.

Usage:  ftrl-adam bench step [--models small large] [--sizes 1000000 16000000]
        [--repeats 30] [--rounds 3] [--monitor-coords 4096]
        [--monitor-leaves 8] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import ftrl_adam as fa
from ftrl_adam.lab.cli.bench import _common

MODELS = {"small": (4, 64), "large": (12, 256)}   # (blocks L, width d)
VOCAB = 1000


def model_tree(blocks: int, width: int, vocab: int = VOCAB) -> dict:
  """A transformer-shaped parameter tree (zeros): 1 + 8 L leaves."""
  d = width
  tree = {"embed": jnp.zeros((vocab, d), jnp.float32)}
  for i in range(blocks):
    tree[f"block{i:02d}"] = {
        "ln": {"scale": jnp.ones((d,)), "bias": jnp.zeros((d,))},
        "attn": {"qkv": jnp.zeros((d, 3 * d)), "out": jnp.zeros((d, d))},
        "mlp": {"w1": jnp.zeros((d, 4 * d)), "b1": jnp.zeros((4 * d,)),
                "w2": jnp.zeros((4 * d, d)), "b2": jnp.zeros((d,))}}
  return tree


def array_tree(n: int) -> dict:
  """n parameters in three leaves (1/2, 1/4, 1/4), like a few large layers."""
  sizes = [n // 2, n // 4, n - n // 2 - n // 4]
  return {f"w{i}": jnp.zeros((s,), jnp.float32) for i, s in enumerate(sizes)}


def _trees(models, sizes) -> dict:
  out = {}
  for name in models:
    tree = model_tree(*MODELS[name])
    leaves = jax.tree.leaves(tree)
    n = sum(x.size for x in leaves)
    out[f"model {name}: {len(leaves)} leaves, {n / 1e6:.2g}M"] = tree
  for n in sizes:
    out[f"array: 3 leaves, {n / 1e6:.3g}M"] = array_tree(n)
  return out


def stepper(tx, params):
  def step(p, s, g):
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s
  step = jax.jit(step, donate_argnums=(0, 1))
  params = jax.tree.map(jnp.copy, params)  # each stepper owns (and donates) its own
  state = {"p": params, "s": tx.init(params)}
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.01), params)

  def run():
    state["p"], state["s"] = step(state["p"], state["s"], grads)
    _common.block(state["p"])

  run()  # compile
  return run


def optimizers(k: int, leaves: int) -> dict:
  f32 = jnp.float32
  hp = dict(learning_rate=f32(1e-3), b1=f32(0.9), b2=f32(0.999), eps=f32(1e-8))
  return {
      "optax.adam": lambda n: optax.adam(**hp),
      "ftrl_adam": lambda n: fa.ftrl_adam(**hp),
      "ftrl_adam box": lambda n: fa.ftrl_adam(**hp, radius=f32(1e-3)),
      "+ ema_params": lambda n: optax.chain(fa.ftrl_adam(**hp),
                                            fa.ema_params(0.999)),
      # b1, b2 and lr read from the wrapped ftrl_adam (unclipped: a radius).
      f"+ monitor ({k} coords)": lambda n: fa.regret_monitor(
          fa.ftrl_adam(**hp), radius=f32(1e-3), coords=min(k, n),
          leaves=leaves),
  }


def _copy_bandwidth(n: int, repeats: int) -> float:
  x = jnp.ones((n,), jnp.float32)
  copy = jax.jit(lambda a: a * 1.0 + 0.0)  # a real read + write, not elided
  state = {"x": copy(x)}
  def run():
    state["x"] = copy(state["x"])
    _common.block(state["x"])
  run()
  t = _common.interleaved_medians({"copy": run}, repeats)["copy"]
  return 2 * 4 * n / t / 1e9


def _measure(tree, made, repeats, rounds, min_time):
  """Per optimizer, the median step time of each round (seconds)."""
  n = sum(x.size for x in jax.tree.leaves(tree))
  fns = {name: stepper(make(n), tree) for name, make in made.items()}
  per_step = math.inf
  for _ in range(3):
    t0 = time.perf_counter()
    fns["optax.adam"]()
    per_step = min(per_step, time.perf_counter() - t0)
  reps = max(repeats, min(50 * repeats, math.ceil(min_time / max(per_step, 1e-6))))
  return [_common.interleaved_medians(fns, reps) for _ in range(rounds)], reps


def _spread(values) -> str:
  """'median (min-max)' of ratios over the rounds."""
  if len(values) == 1:
    return f"{values[0]:.2f}"
  return (f"{statistics.median(values):.2f} "
          f"({min(values):.2f}-{max(values):.2f})")


def _summary(label, rounds_ms, monitored):
  """The row of the issue-24 table: ratios to optax.adam and monitor/plain."""
  cols = ["ftrl_adam", "+ ema_params", monitored]
  ratio = {c: [r[c] / r["optax.adam"] for r in rounds_ms] for c in cols}
  ratio["monitor / ftrl_adam"] = [r[monitored] / r["ftrl_adam"]
                                  for r in rounds_ms]
  return {"tree": label, **{c: {"median": statistics.median(v), "min": min(v),
                                "max": max(v), "rounds": v}
                            for c, v in ratio.items()}}


def _nonnegative(text: str) -> float:
  """An argparse ``type``: a float >= 0."""
  try:
    value = float(text)
  except ValueError:
    value = float("nan")
  if not value >= 0:
    raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
  return value


def add_arguments(ap: argparse.ArgumentParser) -> None:
  """The options of ``ftrl-adam bench step``."""
  count = _common.positive_int
  ap.add_argument("--models", nargs="*", default=["small", "large"],
                  choices=sorted(MODELS),
                  help="model-shaped trees to time (default: small large)")
  ap.add_argument("--sizes", type=count, nargs="*", default=[1_000_000, 16_000_000],
                  help="parameter counts of the array trees (default 1M and 16M)")
  ap.add_argument("--repeats", type=count, default=30,
                  help="interleaved steps per optimizer and round, at least "
                       "(default 30)")
  ap.add_argument("--rounds", type=count, default=3,
                  help="rounds of interleaved medians; ratios are reported as "
                       "the median over rounds and their range (default 3)")
  ap.add_argument("--min-time", type=_nonnegative, default=0.3,
                  help="seconds per optimizer and round that set the repeats "
                       "of a short step (default 0.3)")
  ap.add_argument("--monitor-coords", type=count, default=4096,
                  help="entries the regret monitor follows (default 4096)")
  ap.add_argument("--monitor-leaves", type=count, default=8,
                  help="the most leaves that hold them (regret_monitor's "
                       "`leaves`, default 8)")


def run(args: argparse.Namespace) -> int:
  """Runs ``ftrl-adam bench step``; the exit status."""
  if not args.models and not args.sizes:
    args._parser.error("nothing to time: give --models or --sizes")  # pylint: disable=protected-access
  made = optimizers(args.monitor_coords, args.monitor_leaves)
  monitored = list(made)[-1]
  gpu = jax.devices()[0].platform == "gpu"
  rows, records, table = [], [], []
  for label, tree in _trees(args.models, args.sizes).items():
    n = sum(x.size for x in jax.tree.leaves(tree))
    rounds_s, reps = _measure(tree, made, args.repeats, args.rounds,
                              args.min_time)
    rounds_ms = [{k: 1e3 * v for k, v in r.items()} for r in rounds_s]
    table.append(_summary(label, rounds_ms, monitored))
    bw = _copy_bandwidth(n, args.repeats) if gpu else None
    for name in made:
      ms = statistics.median(r[name] for r in rounds_ms)
      base = statistics.median(r["optax.adam"] for r in rounds_ms)
      gbs = 7 * 4 * n / (ms / 1e3) / 1e9
      row = {"tree": label, "params": n, "optimizer": name, "repeats": reps,
             "median_ms": ms, "rounds_ms": [r[name] for r in rounds_ms],
             "ratio_vs_optax_adam": ms / base, "step_GB_per_s": gbs}
      if bw is not None:
        row.update(copy_GB_per_s=bw, fraction_of_copy_bw=gbs / bw)
      records.append(row)
      rows.append([label, name, ms, ms / base, gbs] + (
          [bw, gbs / bw] if bw is not None else []))
  print(f"device: {_common.device_name()}  (medians of interleaved steps, "
        f"{args.rounds} round(s))")
  headers = ["tree", "optimizer", "median ms", "ratio vs optax.adam", "GB/s"]
  _common.print_table(headers + (["copy GB/s", "fraction of copy"] if gpu else []),
                      rows)
  print(f"\nratio to optax.adam, median over {args.rounds} round(s) (range); "
        "monitor target <= 1.10")
  cols = ["ftrl_adam", "+ ema_params", monitored, "monitor / ftrl_adam"]
  _common.print_table(["tree"] + cols,
                      [[t["tree"]] + [_spread(t[c]["rounds"]) for c in cols]
                       for t in table])
  path = _common.write_json(args.out, "step", {
      "repeats": args.repeats, "rounds": args.rounds, "min_time": args.min_time,
      "monitor_coords": args.monitor_coords,
      "monitor_leaves": args.monitor_leaves, "results": records,
      "table": table})
  print(f"wrote {path}")
  return 0
