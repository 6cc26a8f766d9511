"""The ``ftrl-adam`` command line.

``ftrl-adam demo`` trains a small least-squares model with :func:`ftrl_adam`
and prints its loss; later subcommands (``regret``, ``study``, ``bench``) are
added as the lab and the studies land.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def _demo(args: argparse.Namespace) -> int:
  import jax
  import jax.numpy as jnp
  import optax

  from ftrl_adam import ftrl_adam

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


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="ftrl-adam",
      description="Adam as FTRL on the updates: demos, regret lab and studies.")
  sub = parser.add_subparsers(dest="command")
  demo = sub.add_parser(
      "demo", help="train a least-squares model with ftrl_adam; print the loss")
  demo.add_argument("--steps", type=int, default=500, help="training steps")
  demo.add_argument("--lr", type=float, default=0.05, help="learning rate")
  demo.add_argument("--b1", type=float, default=0.9, help="beta1 in [0, 1)")
  demo.add_argument("--b2", type=float, default=0.99, help="beta2 in [0, 1)")
  demo.add_argument("--radius", type=float, default=None,
                    help="clip the update to a box of this radius")
  demo.add_argument("--seed", type=int, default=0, help="PRNG seed")
  demo.set_defaults(func=_demo)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.command is None:
    args = parser.parse_args(["demo", *(argv or [])])
  if getattr(args, "steps", 1) < 1:
    parser.error("--steps must be >= 1")
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
