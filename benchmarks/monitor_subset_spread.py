"""How far the regret monitor's whole-model estimate spreads over the subset's seed.

The box regret of a model is a sum over coordinates, R = sum_i R_i with
R_i = r_i + D |M_i|, and ``regret_monitor(..., coords=k, leaves=L)`` reports
the sum over k entries drawn by ``ftrl_adam._coords.draw_subset``; divided by
``fraction = k / n`` it estimates R without bias.  This script trains a
studies task with Algorithm 1 (every coordinate, float64 per-coordinate
streams kept on the side), then draws the subset for many seeds and prints,
for each design, the mean estimate over R (1 within its standard error: no
bias) and the relative standard deviation of the estimate (its spread).

Usage:  python benchmarks/monitor_subset_spread.py [--task charlm] [--coords 4096]
        [--steps 300] [--seeds 2000] [--leaves 4 8 16 32]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ftrl_adam as fa
from ftrl_adam import _coords
from ftrl_adam import studies


def per_coordinate_regret(task, steps, b1=0.9, b2=0.99, radius=0.003):
  """R_i of every coordinate after a run of Algorithm 1 (c = D), float64."""
  lr = radius * (1 - b2) ** 0.5 / (1 - b1)
  tx = fa.ftrl_adam(lr, b1, b2, eps=0.0, radius=radius, bias_correction=False)
  params = task.init_params(jax.random.key(0))
  key = jax.random.key(1)

  @jax.jit
  def step(params, state, r, m, play, i):
    g = jax.grad(task.loss)(params, task.train_batch(jax.random.fold_in(key, i), i))
    r = jax.tree.map(lambda r, g, d: b1 * r + g * d, r, g, play)
    m = jax.tree.map(lambda m, g: b1 * m + g, m, g)
    u, state = tx.update(g, state, params)
    return optax.apply_updates(params, u), state, r, m, u

  zeros = jax.tree.map(jnp.zeros_like, params)
  state, r, m, play = tx.init(params), zeros, zeros, zeros
  for i in range(steps):
    params, state, r, m, play = step(params, state, r, m, play, i)
  per = [np.asarray(a, np.float64).ravel() + radius * np.abs(np.asarray(b, np.float64)).ravel()
         for a, b in zip(jax.tree.leaves(r), jax.tree.leaves(m), strict=True)]
  return per, [np.shape(x) for x in jax.tree.leaves(params)]


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--task", default="charlm")
  ap.add_argument("--coords", type=int, default=4096)
  ap.add_argument("--steps", type=int, default=300)
  ap.add_argument("--seeds", type=int, default=2000)
  ap.add_argument("--leaves", type=int, nargs="+", default=[4, 8, 16, 32])
  args = ap.parse_args(argv)
  per, shapes = per_coordinate_regret(studies.make_task(args.task), args.steps)
  sizes = [x.size for x in per]
  n, k, whole = sum(sizes), args.coords, sum(x.sum() for x in per)
  print(f"{args.task}: {n:,} parameters in {len(sizes)} leaves, whole-model box regret "
        f"{whole:.5g}, {k:,} entries, {args.seeds} seeds")
  starts = np.cumsum([0] + sizes[:-1])
  flat = np.concatenate(per)

  def uniform(seed):   # the previous design: k of n, uniformly
    return np.random.default_rng(seed).choice(n, k, replace=False)

  def drawn(leaves):
    def entries(seed):
      local = _coords.draw_subset(shapes, k, leaves, seed)
      return np.concatenate([lo + i for lo, i in zip(starts, local, strict=True)])
    return entries

  designs = {"uniform over all leaves (previous)": uniform}
  designs.update({f"leaves={L}": drawn(L) for L in args.leaves})
  designs[f"leaves={k} (= coords)"] = drawn(k)
  print(f"{'design':34s} {'mean / R':>14s} {'relative std':>13s}")
  for name, entries in designs.items():
    est = np.array([flat[entries(s)].sum() * n / k for s in range(args.seeds)])
    se = est.std() / np.sqrt(args.seeds) / whole
    print(f"{name:34s} {est.mean() / whole:8.4f} ± {se:.4f} {est.std() / whole:12.1%}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
