"""``ftrl-adam demo``: train a least-squares model with ftrl_adam."""

from __future__ import annotations

import argparse
from typing import Any


#: The one-line help of the subcommand (``ftrl-adam --help``).
HELP = "train a least-squares model with ftrl_adam; print the loss"

def run(args: argparse.Namespace) -> int:
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel

  from ftrl_adam import ftrl_adam  # pylint: disable=import-outside-toplevel

  parser = args._parser  # pylint: disable=protected-access
  if args.steps < 1:
    parser.error(f"--steps must be >= 1, got {args.steps}")
  try:   # the transform checks its hyperparameters; name the flags
    tx = ftrl_adam(args.lr, b1=args.b1, b2=args.b2, radius=args.radius)
  except ValueError as e:
    message = str(e)
    for name, flag in (("`learning_rate`", "--lr"), ("`b1`", "--b1"),
                       ("`b2`", "--b2"), ("`radius`", "--radius")):
      message = message.replace(name, flag)
    parser.error(message)
  key_x, key_w, key_n = jax.random.split(jax.random.key(args.seed), 3)
  x = jax.random.normal(key_x, (512, 32))
  w_true = jax.random.normal(key_w, (32,))
  y = x @ w_true + 0.1 * jax.random.normal(key_n, (512,))

  def loss(w):
    return 0.5 * jnp.mean((x @ w - y) ** 2)

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


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
  """Shows a default only where there is one."""

  def _get_help_string(self, action):
    if action.default is None:
      return action.help
    return super()._get_help_string(action)


def add_parser(sub: Any) -> argparse.ArgumentParser:
  demo = sub.add_parser(
      "demo", help=HELP,
      formatter_class=_Defaults)
  demo.add_argument("--steps", type=int, default=500, help="training steps")
  demo.add_argument("--lr", type=float, default=0.05, help="learning rate")
  demo.add_argument("--b1", type=float, default=0.9, help="beta1 in [0, 1)")
  demo.add_argument("--b2", type=float, default=0.99, help="beta2 in [0, 1)")
  demo.add_argument("--radius", type=float, default=None,
                    help="clip the update to a box of this radius (default: no clipping)")
  demo.add_argument("--seed", type=int, default=0, help="PRNG seed")
  demo.set_defaults(func=run, _parser=demo)
  return demo
