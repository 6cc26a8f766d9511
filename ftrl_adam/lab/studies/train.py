"""One training run as pure JAX functions, vmappable over hyperparameters, stoppable.

A run trains a :class:`~ftrl_adam.studies.Task` with

    optax.chain(optimizer(hp), ema_params(ema_decay) [, posthoc_ema_params()])

entirely inside ``jax.lax.scan`` (the data are sampled inside the loop from the
seed), evaluating the raw parameters and their EMA on the validation data
every ``eval_every`` steps and after the last.  ``hp`` is a dict of
hyperparameters that may be traced (the built-in optimizer is
``ftrl_adam(hp["lr"], hp["b1"], hp["b2"], eps)``, see
:mod:`ftrl_adam.lab.studies.optimizers`), and so is the seed: ``jax.vmap``
over them trains a whole grid in one program, and every cell is bit for bit
the run trained alone (tested): the hyperparameters are float32 arrays in
both cases and every reduction over examples is batching-independent.

A :class:`Trainer` cuts a run into pieces that a study can stop and continue
(successive halving): :meth:`Trainer.init`, :meth:`Trainer.advance` from one
evaluation step to a later one, and :meth:`Trainer.metrics`; the state
between two pieces is a pytree that :mod:`ftrl_adam.lab.studies.carry` packs
into table columns.  ``advance(0, a)`` then ``advance(a, steps)`` is the run
``advance(0, steps)``, step for step.  :func:`train` is the whole run in one
call.

With ``sigma_rels`` the run also keeps Karras' post-hoc EMA
(:func:`ftrl_adam.posthoc_ema_params`, EDM2's pair of widths), stores its
snapshots at every evaluation in device memory, and reports the validation
loss of the EMA of each width in ``sigma_rels``, synthesised after training
with :func:`ftrl_adam.posthoc_ema` (Karras et al. 2024,
https://arxiv.org/abs/2312.02696).

The seed fixes the initial parameters and the sequence of batches; cells with
the same seed share both (common random numbers), so differences between
cells are not sampling noise.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ftrl_adam as fa
from ftrl_adam import _checks
from ftrl_adam.lab.engine.progress import report_rounds
from ftrl_adam.lab.studies import carry as carry_lib
from ftrl_adam.lab.studies import optimizers as _optimizers
from ftrl_adam.lab.studies.task import Task
from ftrl_adam.lab.studies.task import mean

#: The scalar metrics of every run (accuracy ones only for tasks that define it).
LOSS_METRICS = (
    "val_loss", "val_loss_ema", "best_val_loss", "best_val_loss_ema",
    "best_step", "best_step_ema", "train_loss", "diverged")
ACCURACY_METRICS = ("val_acc", "val_acc_ema", "best_val_acc", "best_val_acc_ema")
#: The widths kept during training for the post-hoc EMA (EDM2's pair).
STORED_SIGMA_RELS = (0.05, 0.10)

Hyperparameters = Mapping[str, Any]
OptimizerFn = Callable[[Hyperparameters], optax.GradientTransformation]


def metric_names(task: Task, sigma_rels: Sequence[float] = ()) -> tuple[str, ...]:
  """The keys of :func:`train`'s result for ``task`` (without curves).

  Example:
    >>> from ftrl_adam import studies
    >>> studies.metric_names(studies.make_task("quadratic"), (0.07,))[-3:]
    ('val_loss_sigma_0.07', 'val_loss_posthoc', 'best_sigma_rel')
  """
  names = LOSS_METRICS + (ACCURACY_METRICS if task.accuracy is not None else ())
  if sigma_rels:
    names += tuple(sigma_column(s) for s in sigma_rels) + (
        "val_loss_posthoc", "best_sigma_rel")
  return names


def sigma_column(sigma_rel: float) -> str:
  """The column of the post-hoc EMA's validation loss at ``sigma_rel``."""
  return f"val_loss_sigma_{float(sigma_rel):g}"


def eval_steps(steps: int, eval_every: int) -> np.ndarray:
  """The steps after which :func:`train` evaluates: every ``eval_every`` and the last."""
  points = list(range(eval_every, steps + 1, eval_every))
  if not points or points[-1] != steps:
    points.append(steps)
  return np.asarray(points, np.int32)


def stored_powers() -> tuple[float, ...]:
  """Exponents of the post-hoc EMAs kept during training, as the transform holds them."""
  return tuple(float(np.float32(fa.power_from_sigma_rel(s)))
               for s in STORED_SIGMA_RELS)


def _finite(x: jax.Array) -> jax.Array:
  return jnp.all(jnp.isfinite(x))


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
  """A training run of ``task``, cut at evaluation steps (module docstring).

  Attributes:
    task: the :class:`~ftrl_adam.studies.Task`.
    optimizer: ``hp -> optax.GradientTransformation`` (the EMAs are added
      after it).
    steps: training steps of the whole run.
    eval_every: steps between evaluations (at most ``steps``).
    ema_decay: the decay of the parameter EMA, unless ``hp["ema_decay"]``
      or ``ema_power`` is given.
    ema_power: Karras' power-EMA exponent for the parameter EMA instead.
    sigma_rels: widths of the post-hoc EMA to report (empty: none kept).

  Example:
    >>> import jax, numpy as np
    >>> from ftrl_adam import studies
    >>> from ftrl_adam.lab.studies import optimizers
    >>> run = studies.Trainer(studies.make_task("quadratic", dim=4),
    ...                       optimizers.builtin(), steps=40, eval_every=10)
    >>> hp = {"lr": np.float32(0.1), "b1": np.float32(0.9),
    ...       "b2": np.float32(0.99)}
    >>> whole, _ = run.advance(run.init(hp, 0), hp, 0, 0, 40)
    >>> half, _ = run.advance(run.init(hp, 0), hp, 0, 0, 20)
    >>> rest, _ = run.advance(half, hp, 0, 20, 40)   # stopped, continued
    >>> bool(run.metrics(rest, 40)["val_loss"] == run.metrics(whole, 40)[
    ...     "val_loss"])
    True
  """

  task: Task
  optimizer: OptimizerFn
  steps: int
  eval_every: int
  ema_decay: float = 0.99
  ema_power: Optional[float] = None
  sigma_rels: tuple[float, ...] = ()

  # --------------------------------------------------------------- pieces --
  def transform(self, hp: Hyperparameters) -> optax.GradientTransformation:
    """The optimizer of ``hp`` followed by the EMAs (kept last in the chain)."""
    if self.ema_power is not None:
      ema = fa.ema_params(power=self.ema_power)
    else:
      ema = fa.ema_params(hp.get("ema_decay", self.ema_decay))
    parts = [self.optimizer(hp), ema]
    if self.sigma_rels:
      parts.append(fa.posthoc_ema_params(powers=stored_powers()))
    return optax.chain(*parts)

  def evaluation_steps(self) -> np.ndarray:
    return eval_steps(self.steps, self.eval_every)

  def init(self, hp: Hyperparameters, seed: Any) -> dict[str, Any]:
    """The state before the first step (parameters from the seed)."""
    k_init, _ = jax.random.split(jax.random.key(seed))
    # Optimization barriers around what the task's code produces: XLA's
    # algebraic simplifier may otherwise fold constants across the boundary
    # between data (or initialisation) and loss differently in a vmapped
    # program than in the single one, and the last bits would differ.
    params = jax.lax.optimization_barrier(self.task.init_params(k_init))
    n_vals = 4 if self.task.accuracy is not None else 2
    state = dict(
        params=params, opt_state=self.transform(hp).init(params),
        evals=jnp.full((n_vals,), jnp.nan, jnp.float32),
        best=jnp.full((2,), jnp.inf, jnp.float32),
        best_step=jnp.full((2,), self.evaluation_steps()[0], jnp.int32),
        best_acc=jnp.full((2,), -jnp.inf, jnp.float32),
        train_loss=jnp.float32(jnp.nan), finite=jnp.bool_(True))
    if self.sigma_rels:
      state["snaps"] = jax.tree.map(
          lambda p: jnp.zeros((0, len(STORED_SIGMA_RELS)) + jnp.shape(p),
                              jnp.float32), params)
    return state

  def _step_fn(self, tx, k_data, report):
    task = self.task

    def step_fn(carry, step):
      report(step)
      params, opt_state = carry
      batch = jax.lax.optimization_barrier(
          task.train_batch(jax.random.fold_in(k_data, step), step))
      loss, grads = jax.value_and_grad(task.loss)(params, batch)
      updates, opt_state = tx.update(grads, opt_state, params)
      # A non-finite gradient marks the run diverged even if the loss stays
      # finite (the update is non-finite too, as in optax.adam).
      grads_ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g))
                                    for g in jax.tree.leaves(grads)]))
      loss = jnp.where(grads_ok, loss, jnp.nan)
      return (optax.apply_updates(params, updates), opt_state), loss

    return step_fn

  def _evaluate(self, params, opt_state) -> jax.Array:
    task, val = self.task, self.task.val_batch
    ema = fa.ema_params_of(opt_state)
    out = [task.loss(params, val), task.loss(ema, val)]
    if task.accuracy is not None:
      out += [task.accuracy(params, val), task.accuracy(ema, val)]
    return jnp.stack([jnp.asarray(x, jnp.float32) for x in out])

  def _segment(self, tx, k_data, state, first, n, report):
    """``n`` steps from ``first``, then an evaluation: the new state and
    what the curves and snapshots keep of it."""
    (params, opt_state), losses = jax.lax.scan(
        self._step_fn(tx, k_data, report),
        (state["params"], state["opt_state"]),
        first + jnp.arange(n, dtype=jnp.int32))
    evals = self._evaluate(params, opt_state)
    at = first + n
    new = jnp.where(jnp.isfinite(evals[:2]), evals[:2], jnp.inf)
    better = new < state["best"]         # the first minimiser stays
    state = dict(state, params=params, opt_state=opt_state, evals=evals,
                 best=jnp.where(better, new, state["best"]),
                 best_step=jnp.where(better, at, state["best_step"]),
                 train_loss=mean(losses),
                 finite=state["finite"] & _finite(losses) & _finite(evals[:2]))
    if self.task.accuracy is not None:
      acc = jnp.where(jnp.isfinite(evals[2:]), evals[2:], -jnp.inf)
      state["best_acc"] = jnp.maximum(state["best_acc"], acc)
    keep = (evals, state["train_loss"])
    if self.sigma_rels:
      keep += (jax.tree.map(lambda *xs: jnp.stack(xs).astype(jnp.float32),
                            *fa.posthoc_emas_of(opt_state)),)
    return state, keep

  def advance(self, state: dict[str, Any], hp: Hyperparameters, seed: Any,
              start: int, stop: int) -> tuple[dict[str, Any], tuple]:
    """Trains from step ``start`` to ``stop`` (evaluation steps, or 0).

    Returns:
      The state after step ``stop``, and the curves of this piece:
      ``(steps, evals[n, k], train_loss[n])`` at its evaluations.
    """
    points = self.evaluation_steps()
    if start not in (0, *points.tolist()) or stop not in points.tolist() or \
        stop <= start:
      raise ValueError(f"`start`, `stop` must be evaluation steps (or 0 for "
                       f"`start`) with start < stop; got {start}, {stop}.")
    _, k_data = jax.random.split(jax.random.key(seed))
    tx = self.transform(hp)
    e = self.eval_every

    def report(step):
      # Steps done of this piece, for the engine's progress lines (about 50
      # a chunk); a Ctrl-C stops the chunk at the next one.
      report_rounds(step + 1 - start, stop - start, unit="step")

    n_full = (min(stop, self.steps // e * e) - start) // e
    firsts = start + e * jnp.arange(n_full, dtype=jnp.int32)
    state, keep = jax.lax.scan(
        lambda s, first: self._segment(tx, k_data, s, first, e, report), state,
        firsts)
    if stop - (start + n_full * e):      # the last, shorter piece
      state, last = self._segment(tx, k_data, state,
                                  jnp.int32(start + n_full * e),
                                  stop - (start + n_full * e), report)
      keep = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), keep,
                          last)
    if self.sigma_rels:
      state["snaps"] = jax.tree.map(lambda a, b: jnp.concatenate([a, b]),
                                    state["snaps"], keep[2])
    at = points[(points > start) & (points <= stop)]
    return state, (jnp.asarray(at), keep[0], keep[1])

  # -------------------------------------------------------------- results --
  def metrics(self, state: Mapping[str, Any], stop: int) -> dict[str, jax.Array]:
    """The scalar metrics of a run whose last step was ``stop``."""
    ev = state["evals"]
    out = dict(
        val_loss=ev[0], val_loss_ema=ev[1], best_val_loss=state["best"][0],
        best_val_loss_ema=state["best"][1],
        best_step=state["best_step"][0], best_step_ema=state["best_step"][1],
        train_loss=state["train_loss"], diverged=~state["finite"])
    if self.task.accuracy is not None:
      out.update(val_acc=ev[2], val_acc_ema=ev[3],
                 best_val_acc=state["best_acc"][0],
                 best_val_acc_ema=state["best_acc"][1])
    if self.sigma_rels:
      out.update(self._posthoc_metrics(state["snaps"], stop))
    return out

  def posthoc_fit(self, stop: int) -> tuple[list, list]:
    """The snapshots' (steps, powers) at ``stop``.

    Raises:
      ValueError: the widths cannot be synthesised there (too few snapshots
        for the fit's residual), from :func:`ftrl_adam.posthoc_ema_weights`.
    """
    times = [int(t) for t in self.evaluation_steps() if t <= stop]
    powers = stored_powers()
    steps = [t for t in times for _ in powers]
    fa.posthoc_ema_weights(steps, list(powers) * len(times),
                           list(self.sigma_rels), step=stop)
    return steps, list(powers) * len(times)

  def _posthoc_metrics(self, snaps: Any, stop: int) -> dict[str, jax.Array]:
    names = [sigma_column(s) for s in self.sigma_rels]
    try:
      fit = self.posthoc_fit(stop)
    except ValueError:   # a rung too early for the fit: reported as NaN
      fit = None
    if fit is None:
      nan = jnp.float32(jnp.nan)
      return {**{n: nan for n in names}, "val_loss_posthoc": nan,
              "best_sigma_rel": nan}
    steps, powers = fit
    flat = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), snaps)
    synth = fa.posthoc_ema(fa.PosthocSnapshots(steps, powers, flat),
                           list(self.sigma_rels), step=stop)
    losses = jnp.stack([
        jnp.asarray(self.task.loss(jax.tree.map(lambda a, j=j: a[j], synth),
                                   self.task.val_batch), jnp.float32)
        for j in range(len(self.sigma_rels))])
    ok = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
    j = jnp.argmin(ok)
    return {**{n: losses[i] for i, n in enumerate(names)},
            "val_loss_posthoc": jnp.where(jnp.isfinite(ok[j]), ok[j], jnp.nan),
            "best_sigma_rel": jnp.asarray(self.sigma_rels, jnp.float32)[j]}

  def layout(self, hp: Hyperparameters, stop: int) -> carry_lib.Layout:
    """The packed layout of the state after step ``stop`` (nothing is run)."""
    shapes = jax.eval_shape(lambda: self.init(
        {k: jnp.float32(v) for k, v in hp.items()}, jnp.int32(0)))
    if self.sigma_rels:
      n = int(np.sum(self.evaluation_steps() <= stop))
      shapes["snaps"] = jax.tree.map(
          lambda s: jax.ShapeDtypeStruct((n,) + s.shape[1:], s.dtype),
          shapes["snaps"])
    return carry_lib.Layout.of(shapes)


def train(
    task: Task,
    *,
    b1: Any = 0.9,
    b2: Any = 0.999,
    learning_rate: Any = None,
    seed: Any,
    steps: int | None = None,
    ema_decay: Any = None,
    eval_every: int | None = None,
    eps: Any = 1e-8,
    curves: bool = False,
    optimizer: Optional[optax.GradientTransformation] = None,
    sigma_rels: Sequence[float] = (),
) -> dict[str, jax.Array]:
  r"""Trains ``task`` with FTRL-Adam (or ``optimizer``) + EMA; returns the metrics.

  The optimizer is ``optax.chain(ftrl_adam(learning_rate, b1, b2, eps),
  ema_params(ema_decay))`` (docs/theory.md sections 2 and 5; with the defaults
  ``ftrl_adam`` is Adam), or ``optax.chain(optimizer, ema_params(ema_decay))``.
  Evaluation happens after every ``eval_every`` steps and after the last
  step, on the raw parameters and on the EMA.

  Args:
    task: a :class:`~ftrl_adam.studies.Task`.
    b1, b2: Adam's decays in [0, 1) (floats or float32 arrays; may be traced).
    learning_rate: > 0 (may be traced); required without ``optimizer``.
    seed: an integer (may be a traced int32): the initial parameters and the
      batches.
    steps: training steps (Python int); default ``task.defaults.steps``.
    ema_decay: decay of the parameter EMA in [0, 1] (may be traced); default
      ``task.defaults.ema_decay``.
    eval_every: evaluate every this many steps (Python int); default
      ``task.defaults.eval_every``, at most ``steps``.
    eps: Adam's epsilon.
    curves: also return the curves ``curve_step``, ``curve_val_loss``,
      ``curve_val_loss_ema`` and ``curve_train_loss`` (mean training loss since
      the previous evaluation).
    optimizer: any optax transformation instead of FTRL-Adam (then ``b1``,
      ``b2``, ``learning_rate`` and ``eps`` are not used).
    sigma_rels: widths of the post-hoc EMA to report (``val_loss_sigma_<s>``,
      the best ``val_loss_posthoc`` and its ``best_sigma_rel``).

  Returns:
    A dict of float32 scalars (int32 for ``best_step*``, bool for ``diverged``):
    ``val_loss`` and ``val_loss_ema`` (after the last step), ``best_val_loss``,
    ``best_val_loss_ema`` (minimum over the evaluations, +inf if none is
    finite) and the steps where they were reached, ``train_loss`` (mean
    training loss over the last ``eval_every`` steps), ``diverged`` (a
    non-finite gradient, training loss or validation loss at any step), and for
    tasks with an accuracy ``val_acc``, ``val_acc_ema``, ``best_val_acc``,
    ``best_val_acc_ema``.

  Raises:
    ValueError: ``learning_rate <= 0``, b1 or b2 outside [0, 1), bad
      ``ema_decay``, ``steps`` or ``eval_every`` (checked when concrete).

  Example:
    >>> from ftrl_adam import studies
    >>> task = studies.make_task("quadratic", dim=10, noise=0.0)
    >>> r = studies.train(task, b1=0.9, b2=0.99, learning_rate=0.1, seed=0,
    ...                   steps=130, eval_every=50, curves=True)
    >>> r["curve_step"].tolist()   # evaluations: every 50 steps and the last
    [50, 100, 130]
    >>> bool(r["val_loss"] < 1e-3 < r["curve_val_loss"][0])
    True
  """
  steps = _checks.check_positive_int(
      "steps", task.defaults.steps if steps is None else steps)
  eval_every = min(steps, _checks.check_positive_int(
      "eval_every", task.defaults.eval_every if eval_every is None
      else eval_every))
  ema_decay = task.defaults.ema_decay if ema_decay is None else ema_decay
  if optimizer is None:
    if learning_rate is None:
      raise ValueError("`learning_rate` is required without `optimizer`.")
    hp = {"lr": _checks.as_f32("learning_rate", learning_rate, low=0.0,
                               low_closed=False), "b1": b1, "b2": b2}
    make = _optimizers.builtin(eps)
  else:
    hp, make = {}, lambda _: optimizer
  trainer = Trainer(task, make, steps, eval_every, ema_decay=ema_decay,
                    sigma_rels=tuple(float(s) for s in sigma_rels))
  seed = seed if _checks.is_traced(seed) else jnp.asarray(seed, jnp.int32)
  state, (at, evals, train_means) = trainer.advance(
      trainer.init(hp, seed), hp, seed, 0, steps)
  out = trainer.metrics(state, steps)
  if curves:
    out.update(curve_step=at, curve_val_loss=evals[:, 0],
               curve_val_loss_ema=evals[:, 1], curve_train_loss=train_means)
  return out
