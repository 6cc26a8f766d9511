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

Usage:  python benchmarks/study.py [--tasks digits quadratic] [--ks 16 64 256]
        [--steps N] [--repeats 3] [--measure-max 64]
"""

from __future__ import annotations

import statistics
import sys
import time

import jax
import numpy as np

from ftrl_adam.lab.cli import _common as _cli  # noqa: E402
from ftrl_adam.lab.cli.bench import _common  # noqa: E402

from ftrl_adam.lab import engine as grid  # noqa: E402
from ftrl_adam.lab import studies  # noqa: E402


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


def main(argv=None) -> int:
  ap = _cli.Parser(prog="ftrl-adam bench study", description=__doc__.splitlines()[0])
  ap.add_argument("--tasks", nargs="+", default=["digits", "quadratic"],
                  choices=tuple(studies.TASKS),
                  help="built-in tasks to train (default digits quadratic)")
  ap.add_argument("--ks", type=int, nargs="+", default=[16, 64, 256],
                  help="numbers K of configurations trained in one program "
                       "(default 16 64 256)")
  ap.add_argument("--steps", type=int, default=None,
                  help="training steps per run; default each task's")
  ap.add_argument("--repeats", type=int, default=3,
                  help="interleaved repeats; the median is reported")
  ap.add_argument("--measure-max", type=int, default=64,
                  help="time at most this many sequential runs per K; "
                       "extrapolate the rest")
  _common.add_out_option(ap)
  args = ap.parse_args(argv)
  _common.positive_ints(ap, "--ks", args.ks)
  _common.positive_ints(ap, "--repeats", [args.repeats])
  _common.positive_ints(ap, "--measure-max", [args.measure_max])
  if args.steps is not None:
    _common.positive_ints(ap, "--steps", [args.steps])
  _common.set_out(args.out)

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
  path = _common.write_json("study", {
      "benchmark": "benchmarks/study.py", "device_name": device,
      "compiler_options": grid.compiler_options(), "repeats": args.repeats,
      "measure_max": args.measure_max, "tasks": tasks})
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  grid.use_cpu_cores()   # a process of its own: as `ftrl-adam bench` does
  sys.exit(main())
