"""Ready-made optimizers assembled from the package's transforms."""

from __future__ import annotations

from typing import Any, Optional

import jax.numpy as jnp
import optax

from ftrl_adam import _checks
from ftrl_adam import conversion
from ftrl_adam import ema
from ftrl_adam import ftrl

_DOMAINS = ftrl.DOMAINS


def ahn_cutkosky(
    beta: Any,
    radius: Any,
    *,
    key: Any,
    domain: str = "ball",
    eps: Any = 0.0,
    scaling: str = "uniform",
    ema_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""The Ahn & Cutkosky algorithm: clipped FTRL-Adam, random scaling, model EMA.

  Algorithm of Ahn & Cutkosky (NeurIPS 2024), docs/theory.md section 4 [R]:

  * learner: clipped FTRL-Adam without bias correction, ``b1 = beta``,
    ``b2 = beta**2``, learning rate ``alpha = D sqrt(1 - beta**2) / (1 - beta)``
    (computed as ``D sqrt((1 + beta) / (1 - beta))``), i.e. the scale-free FTRL
    rate c = D of docs/theory.md section 2 [R constant]; on the ball the second moment
    is one scalar built from ``||g||**2`` and the clip is the l2 projection, on
    the box both are per coordinate;
  * :func:`ftrl_adam.online_to_nonconvex`: the gradient is taken at
    y_t = w_{t-1} + s_t delta_t, s_t ~ U[0, 1);
  * :func:`ftrl_adam.ema_params` with decay ``beta``, zero start debiased, of the
    gradient points: the output
    ``ybar_n = (1 - beta) / (1 - beta**n) sum_{s<=n} beta**(n-s) y_s``.

  Evaluate the model at ``ema_params_of(state)`` (the paper's output);
  ``nonconvex_iterate(state)`` is the iterate w.  Theory's orders (docs/theory.md
  section 4 [R]): ``beta = 1 - Theta(eps**2 / (G + sigma)**2)``,
  ``D = Theta((1 - beta) sqrt(eps / lambda))``; in practice tune D like a
  learning rate (each step moves at most D).

  Args:
    beta: the common discount beta in [0, 1) (float or float32 array; can be
      vmapped).
    radius: D >= 0, the radius of the learner's domain (the largest step).
    key: PRNG key of the random scaling.
    domain: ``"ball"`` (l2 ball, scalar second moment; the paper's main
      algorithm) or ``"box"`` (per-coordinate, Adam-like).
    eps: eps >= 0 added to sqrt(v) (0 in the theory; 0/0 is 0).
    scaling: ``"uniform"`` (the paper), ``"exponential"`` or ``"none"`` (see
      :func:`ftrl_adam.online_to_nonconvex`).
    ema_dtype: dtype of the EMA (default: params promoted to float32).

  Returns:
    ``optax.chain(online_to_nonconvex(learner), ema_params(beta))``: an
    ``optax.GradientTransformationExtraArgs`` whose update needs ``params``.

  Example:
    >>> import jax, jax.numpy as jnp, optax, ftrl_adam as fa
    >>> tx = fa.ahn_cutkosky(beta=0.9, radius=0.1, key=jax.random.key(0))
    >>> params = jnp.array([3.0, -4.0])
    >>> state = tx.init(params)
    >>> grads = jax.grad(lambda x: x @ x)(params)
    >>> updates, state = tx.update(grads, state, params)
    >>> w = fa.nonconvex_iterate(state)   # w_2 = w_1 + delta_2, a step of norm D
    >>> round(float(jnp.linalg.norm(w - params)), 5)
    0.1
    >>> fa.ema_params_of(state).tolist()  # ybar_1 = y_1, the first gradient point
    [3.0, -4.0]

  References:
    Ahn & Cutkosky, *Adam with model exponential moving average is effective
    for nonconvex optimization*, NeurIPS 2024, https://arxiv.org/abs/2405.18199.
  """
  beta = _checks.as_f32("beta", beta, low=0.0, high=1.0)
  radius = _checks.as_f32("radius", radius, low=0.0)
  _checks.check_choice("domain", domain, _DOMAINS)
  alpha = radius * jnp.sqrt((1.0 + beta) / (1.0 - beta))
  learner = ftrl.ftrl_adam(
      alpha, beta, beta * beta, eps, radius=radius, domain=domain,
      second_moment="global" if domain == "ball" else "per_coordinate",
      bias_correction=False)
  return optax.chain(
      conversion.online_to_nonconvex(learner, key=key, scaling=scaling),
      ema.ema_params(beta, debias=True, source="gradient_point",
                     ema_dtype=ema_dtype),
  )
