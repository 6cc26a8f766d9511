"""One optimizer step of ftrl_adam vs optax.adam.

Targets: on 16M parameters, a CPU step no slower than ``optax.adam``
(ratio <= 1.0); on a GPU, >= 80% of the measured device-to-device copy
bandwidth for the bytes an Adam step moves (read p, g, m, v; write p, m, v).

Median wall time of a jitted step (update + apply_updates, params and state
donated), the two optimizers interleaved in the same process, at 1M and 16M
float32 parameters.  On a GPU it also measures a device-to-device copy and
reports the step's effective bandwidth for the bytes an Adam step must move
(read p, g, m, v; write p, m, v = 7 x 4 bytes per parameter).

A fourth row times ``ftrl_adam`` wrapped in ``regret_monitor`` following a
random subset of ``--monitor-coords`` coordinates (4,096 by default, with the
D3 streams), interleaved with the others; its overhead is reported as a ratio
to the plain ``ftrl_adam`` step (target: <= 1.10 at 16M parameters).

Usage:  python benchmarks/step.py [--sizes 1000000 16000000] [--repeats 30]
        [--monitor-coords 4096]
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import optax

from ftrl_adam.lab.cli import _common as _cli  # noqa: E402
from ftrl_adam.lab.cli.bench import _common  # noqa: E402

import ftrl_adam as fa  # noqa: E402


def _params(n: int) -> dict:
  # a few leaves, like a small network: 1/2, 1/4, 1/4 of the parameters
  sizes = [n // 2, n // 4, n - n // 2 - n // 4]
  return {f"w{i}": jnp.zeros((s,), jnp.float32) for i, s in enumerate(sizes)}


def _stepper(tx, params):
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


def main(argv=None) -> int:
  ap = _cli.Parser(prog="ftrl-adam bench step", description=__doc__.splitlines()[0])
  ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 16_000_000],
                  help="parameter counts to time (default 1M and 16M)")
  ap.add_argument("--repeats", type=int, default=30,
                  help="interleaved steps per optimizer; the median is "
                       "reported (default 30)")
  ap.add_argument("--monitor-coords", type=int, default=4096,
                  help="coordinates the regret monitor follows in the "
                       "monitored row (default 4096)")
  _common.add_out_option(ap)
  args = ap.parse_args(argv)
  _common.positive_ints(ap, "--sizes", args.sizes)
  _common.positive_ints(ap, "--repeats", [args.repeats])
  _common.positive_ints(ap, "--monitor-coords", [args.monitor_coords])
  _common.set_out(args.out)
  f32 = jnp.float32
  hp = dict(learning_rate=f32(1e-3), b1=f32(0.9), b2=f32(0.999), eps=f32(1e-8))
  gpu = jax.devices()[0].platform == "gpu"
  rows, records, overheads = [], [], []
  for n in args.sizes:
    params = _params(n)
    fns = {
        "optax.adam": _stepper(optax.adam(**hp), params),
        "ftrl_adam": _stepper(fa.ftrl_adam(**hp), params),
        "ftrl_adam box": _stepper(fa.ftrl_adam(**hp, radius=1e-3), params),
    }
    k = min(args.monitor_coords, n)
    monitored = f"ftrl_adam + monitor ({k} coords)"
    fns[monitored] = _stepper(fa.regret_monitor(
        fa.ftrl_adam(**hp), radius=f32(1e-3), b1=hp["b1"], b2=hp["b2"],
        lr=hp["learning_rate"], coords=k), params)
    med = _common.interleaved_medians(fns, args.repeats)
    base = med["optax.adam"]
    overheads.append((n, monitored, med[monitored] / med["ftrl_adam"]))
    bw = _copy_bandwidth(n, args.repeats) if gpu else None
    for name, t in med.items():
      gbs = 7 * 4 * n / t / 1e9
      row = {"params": n, "optimizer": name, "median_ms": 1e3 * t,
             "ratio_vs_optax_adam": t / base, "step_GB_per_s": gbs}
      if name == monitored:
        row["ratio_vs_ftrl_adam"] = t / med["ftrl_adam"]
      if bw is not None:
        row["copy_GB_per_s"] = bw
        row["fraction_of_copy_bw"] = gbs / bw
      records.append(row)
      rows.append([n, name, 1e3 * t, t / base, gbs] + (
          [bw, gbs / bw] if bw is not None else []))
  print(f"device: {_common.device_name()}  (median of {args.repeats} interleaved steps)")
  headers = ["params", "optimizer", "median ms", "ratio vs optax.adam", "GB/s"]
  if gpu:
    headers += ["copy GB/s", "fraction of copy"]
  _common.print_table(headers, rows)
  for n, name, ratio in overheads:
    print(f"regret monitor overhead at {n:,} params: {name} / ftrl_adam = "
          f"{ratio:.3f} (target <= 1.10)")
  path = _common.write_json("step", {"repeats": args.repeats, "results": records})
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  from ftrl_adam import grid as _grid  # pylint: disable=ungrouped-imports
  _grid.use_cpu_cores()   # a process of its own: as `ftrl-adam bench` does
  sys.exit(main())
