"""The constant c of Algorithm 1 and the learning rate (private, shared).

Nguyen's Algorithm 1 (docs/theory.md section 2) is ``ftrl_adam`` with
learning rate lr and FTRL rate eta_t = c b1^(t-1) / sqrt(V_(t-1)), where

    c = lr (1 - b1) / sqrt(1 - b2)        [D, the mapping derived here]

(the theory's choice is c = D [R]).  One place for the formula: the regret
lab's learner, the beta-grid's table and the regret monitor use it.  float32
arithmetic (correctly rounded sqrt and division, so NumPy and XLA agree).
"""

from __future__ import annotations

from typing import Any

from ftrl_adam import _numerics


def c_from_lr(lr: Any, b1: Any, b2: Any) -> Any:
  """c = lr (1 - b1) / sqrt(1 - b2), in float32 (NumPy for host inputs)."""
  xp = _numerics.host_or_jnp(lr, b1, b2)
  lr, b1, b2 = (xp.asarray(x, xp.float32) for x in (lr, b1, b2))
  return lr * (1.0 - b1) / xp.sqrt(1.0 - b2)


def lr_from_c(c: Any, b1: Any, b2: Any) -> Any:
  """lr = c sqrt(1 - b2) / (1 - b1), the inverse of :func:`c_from_lr`."""
  xp = _numerics.host_or_jnp(c, b1, b2)
  c, b1, b2 = (xp.asarray(x, xp.float32) for x in (c, b1, b2))
  return c * xp.sqrt(1.0 - b2) / (1.0 - b1)
