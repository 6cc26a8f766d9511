"""Vectorised training study: K configurations in one program vs K sequential runs.

For K = 16, 64, 256 (b1, b2, lr) configurations of a task (default: the
digits MLP of the default study, 400 steps each, and the noisy quadratic,
500 steps each), it times

* **vmapped**: the K runs as one program through the grid engine
  (``ftrl_adam.grid.run_grid`` with ``chunk_size=K``: ``jax.vmap`` of the whole
  ``lax.scan`` training loop, sharded over the devices), after a warm-up call
  that compiles it; the median of ``--repeats`` calls;
* **sequential**: one jitted training run (compiled once: the hyperparameters
  are float32 arrays, so no recompilation per configuration) called K times in
  a Python loop, blocking on each result.  When K exceeds ``--measure-max``,
  only the first ``--measure-max`` runs are timed and the total is
  extrapolated as K x (mean time per run); the table says so.

Both paths use the grid engine's compiler options (reproducible cells; on CPU
XLA's size-dependent library fusions are off), so they compute the same bits.
Compile times are reported separately and excluded from the speedup.

With ``--halving`` it measures successive halving against the full grid
instead (docs/studies.md, "A measured answer"): for each task of
:data:`HALVING_GRIDS` and each of ``--study-seeds`` disjoint sets of seeds, the
full study and the halving study (``budget="halving"``, 3 rungs, rate 3),
reporting the best configuration each finds, the halving one's tuned loss
relative to the full grid's best (the full grid's value of that
configuration: the same bits, since a halved run is its unpruned run), and
the fraction of the full grid's training steps it spent.  Target (DESIGN.md):
within 2 % with at most 35 % of the compute.

Usage:  ftrl-adam bench study [--tasks digits quadratic] [--ks 16 64 256]
        [--steps N] [--repeats 3] [--measure-max 64]
        ftrl-adam bench study --halving [--tasks digits charlm]
        [--study-seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from ftrl_adam.lab import engine as grid
from ftrl_adam.lab import studies
from ftrl_adam.lab.cli.bench import _common


def _table(task, k):
  lrs = list(task.defaults.learning_rates)
  n_seeds = max(1, -(-k // (64 * len(lrs))))
  full = grid.product(b1=grid.parse_axis(studies.OG_AXIS),
                      b2=grid.parse_axis(studies.OG_AXIS), lr=lrs,
                      seed=grid.seeds(n_seeds))
  idx = np.random.default_rng(0).permutation(len(full["b1"]))[:k]
  return {name: col[np.sort(idx)] for name, col in full.items()}


def _bench_task(name, args):
  """Times vmapped vs sequential for one task; returns (table rows, record)."""
  task = studies.make_task(name)
  steps = args.steps or task.defaults.steps
  settings = dict(steps=steps, eval_every=task.defaults.eval_every,
                  ema_decay=task.defaults.ema_decay)
  cell_fn = studies.make_cell_fn(task, **settings)
  options = grid.compiler_options()
  print(f"task {task.name}: {task.info['description']}, "
        f"{task.num_params()} parameters, {steps} steps per run", flush=True)

  # Sequential: one compiled run, called in a loop.
  single = jax.jit(cell_fn, compiler_options=options or None)
  probe = _table(task, 1)
  cell = {k: v[0] for k, v in probe.items()}
  t0 = time.perf_counter()
  single_c = single.lower(cell).compile()
  seq_compile = time.perf_counter() - t0
  _common.block(single_c(cell))

  rows, records = [], []
  for k in args.ks:
    table = _table(task, k)

    def vmapped(table=table, k=k):
      return grid.run_grid(cell_fn, table, chunk_size=k, progress=False)

    t0 = time.perf_counter()
    vmapped()                      # compiles the K-cell program
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      out = vmapped()
      times.append(time.perf_counter() - t0)
    t_vmap = statistics.median(times)

    n_meas = min(k, args.measure_max)
    per_run = []
    for i in range(n_meas):
      c = {col_name: col[i] for col_name, col in table.items()}
      t0 = time.perf_counter()
      res = single_c(c)
      _common.block(res)
      per_run.append(time.perf_counter() - t0)
      if i < 2:  # the same numbers as the grid cell (spot check)
        assert np.array_equal(np.asarray(res["val_loss"]), out["val_loss"][i])
    t_seq = float(np.mean(per_run)) * k
    extrapolated = n_meas < k
    speedup = t_seq / t_vmap
    rows.append([task.name, k, t_vmap, 1e3 * t_vmap / k, t_seq,
                 f"{n_meas}/{k}" + (" (extrap.)" if extrapolated else ""),
                 1e3 * t_seq / k, f"{speedup:.2f}x", first - t_vmap])
    records.append(dict(
        k=k, vmapped_s=t_vmap, vmapped_repeats=times,
        vmapped_compile_s=first - t_vmap, sequential_s=t_seq,
        sequential_runs_timed=n_meas, sequential_extrapolated=extrapolated,
        sequential_run_median_s=statistics.median(per_run),
        speedup=speedup, runs_per_s_vmapped=k / t_vmap,
        runs_per_s_sequential=k / t_seq))
    print(f"  K={k}: vmapped {t_vmap:.3f} s, sequential {t_seq:.3f} s, "
          f"speedup {speedup:.2f}x", flush=True)
  record = dict(task=task.name, task_description=task.info["description"],
                num_params=task.num_params(), steps=steps, settings=settings,
                sequential_compile_s=seq_compile, results=records)
  return rows, record


#: The studies the halving benchmark compares (``--halving``): the default
#: digits study, and a character Transformer sized for 2 CPU cores (a 1-layer
#: width-32 model, 300 steps; the full grid about 5 minutes there).
HALVING_GRIDS = {
    "digits": dict(seeds_per_study=4),
    "charlm": dict(task_options=dict(d_model=32, n_layers=1, n_heads=2,
                                     batch_size=16, val_windows=128),
                   b1="log1m:0.6:0.99375:4", b2="log1m:0.6:0.99375:4",
                   learning_rates="1e-3,3e-3,1e-2,3e-2", steps=300, eval_every=50,
                   seeds_per_study=2),
    "quadratic": dict(task_options=dict(dim=8), b1="0.5,0.9", b2="0.9,0.99",
                      learning_rates="0.03,0.1", steps=90, eval_every=10,
                      seeds_per_study=2),
}


def _best(tuned, metric="val_loss"):
  """(the best configuration of a tuned table, its value)."""
  values = np.where(np.isfinite(tuned[metric]), tuned[metric], np.inf)
  i = int(np.argmin(values))
  config = {k: float(tuned[k][i]) for k in ("b1", "b2")}
  config["lr"] = float(tuned[f"lr_{metric}"][i])
  return config, float(values[i])


def _halving_task(name, args, rows, records):
  grid_kw = dict(HALVING_GRIDS[name])
  per = grid_kw.pop("seeds_per_study")
  for s in range(args.study_seeds):
    seeds = list(range(s * per, (s + 1) * per))
    t0 = time.perf_counter()
    full = studies.run_study(name, seeds=seeds, progress=False, verbose=False,
                             plots=False, **grid_kw)
    t_full = time.perf_counter() - t0
    for metric in args.metrics:
      t0 = time.perf_counter()
      half = studies.run_study(name, seeds=seeds, budget="halving",
                               metric=metric, progress=False, verbose=False,
                               plots=False, **grid_kw)
      t_half = time.perf_counter() - t0
      best_full, v_full = _best(full.tuned, metric)
      best_half, v_half = _best(half.tuned, metric)
      spent = int(np.sum(half.cells["stopped_at"]))
      fraction = spent / (len(full.cells["seed"]) * full.config["steps"])
      rows.append([name, metric, ",".join(map(str, seeds)),
                   _fmt_config(best_full), v_full, _fmt_config(best_half),
                   v_half, f"{v_half / v_full:.4f}", f"{100 * fraction:.1f}%",
                   t_full, t_half])
      records.append(dict(task=name, metric=metric, seeds=seeds,
                          full_best=best_full, full_best_value=v_full,
                          halving_best=best_half, halving_best_value=v_half,
                          ratio=v_half / v_full, compute_fraction=fraction,
                          full_wall_s=t_full, halving_wall_s=t_half,
                          settings={k: str(v) for k, v in grid_kw.items()}))
      print(f"  {name} {metric} seeds {seeds}: halving best / full best = "
            f"{v_half / v_full:.4f} with {100 * fraction:.1f}% of the "
            f"compute ({t_full:.0f} s full, {t_half:.0f} s halving)",
            flush=True)


def _fmt_config(config):
  return " ".join(f"{k}={v:.6g}" for k, v in config.items())


def _halving_main(args) -> int:
  device = _common.device_name()
  print(f"halving benchmark on {device} ({jax.device_count()} device(s))")
  rows, records = [], []
  for name in args.tasks:
    _halving_task(name, args, rows, records)
  print()
  _common.print_table(
      ["task", "metric", "seeds", "full grid's best", "value",
       "halving's best", "value", "ratio", "compute", "full s", "halving s"],
      rows)
  ratios = {}
  for r in records:
    ratios.setdefault((r["task"], r["metric"]), []).append(r)
  for (name, metric), rs in ratios.items():
    print(f"{name}, {metric}: mean ratio "
          f"{np.mean([r['ratio'] for r in rs]):.4f}, "
          f"mean compute {100 * np.mean([r['compute_fraction'] for r in rs]):.1f}% "
          f"over {len(rs)} sets of seeds")
  path = _common.write_json(args.out, "study_halving", {
      "benchmark": "ftrl-adam bench study --halving", "device_name": device,
      "results": records})
  print(f"wrote {path}")
  return 0


def add_arguments(ap: argparse.ArgumentParser) -> None:
  """The options of ``ftrl-adam bench study``."""
  count = _common.positive_int
  ap.add_argument("--tasks", nargs="+", default=None,
                  choices=tuple(studies.TASKS),
                  help="built-in tasks to train (default digits quadratic; "
                       "with --halving digits charlm)")
  ap.add_argument("--halving", action="store_true",
                  help="measure successive halving against the full grid "
                       "instead (HALVING_GRIDS)")
  ap.add_argument("--metrics", nargs="+", default=["val_loss"],
                  choices=studies.TUNE_METRICS,
                  help="with --halving: the metrics halving ranks and tunes "
                       "on, one halving study each (default val_loss)")
  ap.add_argument("--study-seeds", type=count, default=3,
                  help="with --halving: disjoint sets of seeds, one full and "
                       "one halving study each (default 3)")
  ap.add_argument("--ks", type=count, nargs="+", default=[16, 64, 256],
                  help="numbers K of configurations trained in one program "
                       "(default 16 64 256)")
  ap.add_argument("--steps", type=count, default=None,
                  help="training steps per run; default each task's")
  ap.add_argument("--repeats", type=count, default=3,
                  help="interleaved repeats; the median is reported")
  ap.add_argument("--measure-max", type=count, default=64,
                  help="time at most this many sequential runs per K; "
                       "extrapolate the rest")


def run(args: argparse.Namespace) -> int:
  """Runs ``ftrl-adam bench study``; the exit status."""
  if args.halving:
    args.tasks = args.tasks or ["digits", "charlm"]
    unknown = [t for t in args.tasks if t not in HALVING_GRIDS]
    if unknown:
      args._parser.error(  # pylint: disable=protected-access
          f"--tasks with --halving: one of {', '.join(HALVING_GRIDS)}, got "
          f"{unknown}")
    return _halving_main(args)
  args.tasks = args.tasks or ["digits", "quadratic"]

  device = _common.device_name()
  print(f"study benchmark on {device} ({jax.device_count()} device(s)); "
        f"compiler options {grid.compiler_options()}")
  rows, tasks = [], []
  for name in args.tasks:
    r, rec = _bench_task(name, args)
    rows += r
    tasks.append(rec)
  print()
  _common.print_table(
      ["task", "K", "vmapped s", "ms/run", "sequential s", "seq. runs timed",
       "ms/run", "speedup", "vmap compile s"], rows)
  print("(sequential: one jitted run compiled once, called K times, blocking "
        "on each; totals marked 'extrap.' = K x mean time of the timed runs. "
        "Compilation excluded from both.)")
  path = _common.write_json(args.out, "study", {
      "benchmark": "ftrl-adam bench study", "device_name": device,
      "compiler_options": grid.compiler_options(), "repeats": args.repeats,
      "measure_max": args.measure_max, "tasks": tasks})
  print(f"wrote {path}")
  return 0
