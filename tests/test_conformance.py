"""One conformance matrix for every transform (STYLE.md; issue 20 item 7).

optax's ``contrib/_common_test.py`` idea, with chex: each transform is a row
of ``ROWS`` (``ftrl_adam`` unclipped with optax.adam's defaults, box, ball,
with a schedule; ``scale_by_ftrl_adam``, ``clip_box``, ``clip_ball``,
``ema_params``, ``posthoc_ema_params``, ``regret_monitor``,
``online_to_nonconvex``, ``with_ema``) and goes through the columns, the
methods of ``ConformanceTest``: a jitted loop compiles once and keeps the
placement (uncommitted, committed, sharded params), an un-jitted update
compiles nothing the second time; ``inject_hyperparams``, a constant
schedule, ``None`` and ``MaskedNode`` leaves, a taken ``lax.cond`` give the
reference's run (chex variants with and without jit, where jit makes a
difference); dtypes kept (f32, bf16, f16, complex64); ``MultiSteps``;
abstract ``init`` and ``optax.tree.map_params``; Python-scalar leaves;
``jax.export`` for GPU and TPU.  A row skips a column only where the column
has nothing of that row to test (:class:`Row`).  Every run but the
reference passes extra arguments; a row's reader (``ema_params_of``, ...)
must read through every wrapper what it reads without it.

Compiling is what costs, so the equivalence columns share one program per
row and mode: ``_runs`` steps the reference and the row's variants together
(jitted, or op by op) and keeps the numbers.  The variants that must compute
what the reference computes (None leaves, masked leaves, a constant
schedule, a taken lax.cond) step from the reference's state: compared step
by step, bit for bit, and XLA computes them once.  The injected run is
independent: op by op it equals the reference bit for bit; jitted, to float32
rounding (its hyperparameters are runtime values where the reference's are
constants XLA folds; measured <= 4e-7 relative).  One failing path fails the
row's equivalence columns together, with the path's error.

Transforms are built at import, never inside a trace: one built under
``jit`` holds that trace's tracers as hyperparameters, and a later program
closing over them gets them as extra arguments that JAX's dispatch fast path
does not pass ("Execution supplied 11 arguments but compiled program
expected 12").  ``_runs`` shares numbers, not compiled programs.

Then the lab's compiled cells export for GPU and TPU without host callbacks,
and the EMA's place in a chain is checked (issue 20 item 6).
"""

import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from optax._src import test_utils

import ftrl_adam as fa

T = 3                                  # steps of a run
KEYS = ("a", "b")                      # the params: a (3,) and a (2, 2) leaf
SHAPES = {"a": (3,), "b": (2, 2)}
MASK = {"a": True, "b": True, "c": False}   # optax.masked leaves "c" out
MASKED_OUT = {"c": [0.5, -0.25]}       # its param, and its gradient each step
DELTA = 0.5                            # MultiSteps: micro-steps g + DELTA, g - DELTA
LR = 0.05
RADIUS = 0.01                          # active: an unclipped step is ~LR
EXTRA = dict(unexpected_extra_arg=jnp.ones(3), loss=2.0)
RTOL, ATOL = 2e-6, 1e-8                # float32 rounding of a jitted run
PLATFORMS = ("cuda", "tpu")
PLACEMENTS = ("uncommitted", "committed", "sharded")
# Known, reported bugs: un-jitted, these rows compile again on every call.


def _inject(factory, static_args=(), **hp):
  return optax.inject_hyperparams(factory, static_args=static_args)(**hp)


@dataclasses.dataclass(frozen=True)
class Row:
  """A transform under test.

  make: () -> the transform.
  inject: None, or () -> (the transform with injected hyperparameters, the
    names that must be in its state); it must give ``make()``'s run.
  with_lr: None, or lr -> the transform with learning rate lr; ``make()`` is
    ``with_lr(LR)``.
  reader: None, or the public function that reads the row's state.
  complex_ok: it takes complex params.
  f32_state: every float state leaf is float32 or wider (False: it keeps
    params-dtype copies, documented: the conversion's play and iterate).
  placements: where its params live in the jitted loop.  Sharded
    (``NamedSharding``) params are committed ones and the stricter probe of
    an ``init`` (its scalars placed like the params); the rows whose ``init``
    is other rows' (ftrl_adam's and a clip's) run uncommitted params only,
    and one device's sharding (``_numerics`` places it for every row alike)
    is run by two rows.
  """

  make: Callable[[], Any]
  inject: Optional[Callable[[], tuple]] = None
  with_lr: Optional[Callable[[Any], Any]] = None
  reader: Optional[Callable[[Any], Any]] = None
  complex_ok: bool = True
  f32_state: bool = True
  placements: tuple = ("uncommitted", "sharded")


ADAM = dict(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0)   # optax.adam's defaults
SCHEDULE = optax.linear_schedule(LR, LR / 5, T)
MONITOR = dict(radius=RADIUS, b1=0.9, b2=0.999, c=RADIUS)
KEY = jax.random.key(0)


def _ftrl_row(placements=("uncommitted",), **opts):
  lr = opts.pop("learning_rate", LR)
  names = set(ADAM) | {"learning_rate"} | ({"radius"} & set(opts))
  return Row(
      make=lambda: fa.ftrl_adam(lr, **ADAM, **opts),
      inject=lambda: (_inject(fa.ftrl_adam, learning_rate=lr, **ADAM, **opts),
                      names),
      with_lr=None if callable(lr) else (
          lambda rate: fa.ftrl_adam(rate, **ADAM, **opts)),
      placements=placements)


ROWS = {
    "ftrl_adam": _ftrl_row(placements=PLACEMENTS),
    "ftrl_adam_box": _ftrl_row(radius=RADIUS),
    "ftrl_adam_ball": _ftrl_row(radius=RADIUS, domain="ball"),
    "ftrl_adam_schedule": _ftrl_row(learning_rate=SCHEDULE),
    "scale_by_ftrl_adam": Row(
        make=lambda: fa.scale_by_ftrl_adam(0.9, 0.99),
        inject=lambda: (_inject(fa.scale_by_ftrl_adam, b1=0.9, b2=0.99),
                        {"b1", "b2", "eps"})),
    "clip_box": Row(
        make=lambda: fa.clip_box(0.3),
        inject=lambda: (_inject(fa.clip_box, radius=0.3), {"radius"})),
    "clip_ball": Row(
        make=lambda: fa.clip_ball(0.5),
        inject=lambda: (_inject(fa.clip_ball, radius=0.5), {"radius"})),
    "ema_params": Row(
        make=lambda: fa.ema_params(0.9),
        inject=lambda: (_inject(fa.ema_params, decay=0.9), {"decay"}),
        reader=fa.ema_params_of),
    "posthoc_ema_params": Row(   # nothing to inject: its widths are static
        make=fa.posthoc_ema_params, reader=fa.posthoc_emas_of),
    "regret_monitor": Row(
        make=lambda: fa.regret_monitor(optax.sgd(LR), **MONITOR),
        inject=lambda: (
            _inject(functools.partial(fa.regret_monitor, optax.sgd(LR)),
                    static_args=("leaves", "seed"), **MONITOR),
            set(MONITOR)),
        reader=fa.regret_of, complex_ok=False),
    "online_to_nonconvex": Row(
        make=lambda: fa.online_to_nonconvex(optax.sgd(LR), key=KEY),
        inject=lambda: (
            fa.online_to_nonconvex(_inject(optax.sgd, learning_rate=LR),
                                   key=KEY),
            {"learning_rate"}),
        reader=fa.nonconvex_iterate, f32_state=False),
    "with_ema": Row(
        make=lambda: fa.with_ema(fa.ftrl_adam(LR), 0.9),
        inject=lambda: (
            _inject(functools.partial(fa.with_ema, fa.ftrl_adam(LR)),
                    decay=0.9),
            {"decay"}),
        reader=fa.ema_params_of, placements=PLACEMENTS),
}

# Built now, outside any trace (see the module docstring), once per process.
TX = {name: row.make() for name, row in ROWS.items()}
INJECTED = {name: row.inject() for name, row in ROWS.items() if row.inject}
SCHEDULED = {name: row.with_lr(optax.constant_schedule(LR))
             for name, row in ROWS.items() if row.with_lr}
MASKED = {name: optax.masked(tx, MASK) for name, tx in TX.items()}


def _rows(pred=lambda row: True):
  """(test-name suffix, row name) of the rows ``pred`` keeps."""
  return [(name, name) for name, row in ROWS.items() if pred(row)]


# ----------------------------------------------------------------------------
# Trees, runs, and the program the equivalence columns share.
# ----------------------------------------------------------------------------


def _params(dtype=jnp.float32):
  values = {"a": [0.5, -1.0, 1.5], "b": [[0.25, -0.75], [1.0, 2.0]]}
  return {k: jnp.asarray(values[k], dtype) for k in KEYS}


def _grads(n=T, dtype=jnp.float32):
  """n gradient trees of multiples of 1/8 in [-2, 2] (so g +- DELTA and
  their mean are exact in float32)."""
  rng = np.random.default_rng(0)
  out = []
  for _ in range(n):
    g = {k: rng.integers(-16, 17, SHAPES[k]) / 8.0 for k in KEYS}
    if jnp.issubdtype(dtype, jnp.complexfloating):
      g = {k: v + 1j * rng.integers(-16, 17, v.shape) / 8.0
           for k, v in g.items()}
    out.append({k: jnp.asarray(v, dtype) for k, v in g.items()})
  return out


def _update(tx, **extra):
  """A new function ``(g, state, params) -> (updates, state)``."""
  return lambda g, state, params: tx.update(g, state, params, **extra)


def _run(update, tx, params, grads):
  """The training loop: (updates of each step, state after each step,
  params after each step)."""
  state, us, states, ps = tx.init(params), [], [], []
  for g in grads:
    u, state = update(g, state, params)
    params = optax.apply_updates(params, u)
    us.append(u)
    states.append(state)
    ps.append(params)
  return us, states, ps


def _with_none(tree):
  return dict(tree, n=None)


def _with_masked_out(tree):
  return dict(tree, **{k: jnp.asarray(v) for k, v in MASKED_OUT.items()})


class Run(NamedTuple):
  """A path's run: per step its updates, state and params."""
  updates: list
  states: list
  params: list


def _like(template, state):
  """``state``'s leaves in ``template``'s structure (``None`` and
  ``MaskedNode`` add no leaves)."""
  return jax.tree.unflatten(jax.tree.structure(template),
                            jax.tree.leaves(state))


def _update_and_apply(tx, g, state, params, extra):
  u, state = tx.update(g, state, params, **extra)
  return u, state, optax.apply_updates(params, u)


def _step_every_path(name, templates, carry, g, on):
  """One step of each path of the row: path -> (updates, state, params).

  "plain" (no extra arguments) is the reference; "injected" runs on its own.
  "none" (a None leaf added), "masked" (optax.masked, a leaf added and
  masked out), "schedule" (a constant schedule) and, jitted, "cond" (the
  update as the taken branch of a lax.cond on the traced ``on``) step from
  the state of "plain": each of their steps is compared with the reference's
  from the same state, and XLA computes them once when they trace to the
  same operations.
  """
  state, params = carry["plain"]
  out = {"plain": _update_and_apply(TX[name], g, state, params, {}),
         "none": _update_and_apply(
             TX[name], _with_none(g), _like(templates["none"], state),
             _with_none(params), EXTRA),
         "masked": _update_and_apply(
             MASKED[name], _with_masked_out(g),
             _like(templates["masked"], state), _with_masked_out(params),
             EXTRA)}
  if on is not None:   # jitted only: un-jitted, lax.cond compiles each call
    u, new_state = jax.lax.cond(
        on, lambda: TX[name].update(g, state, params, **EXTRA),
        lambda: (jax.tree.map(jnp.zeros_like, g), state))
    out["cond"] = (u, new_state, optax.apply_updates(params, u))
  if name in SCHEDULED:
    out["schedule"] = _update_and_apply(SCHEDULED[name], g, state, params,
                                        EXTRA)
  if name in INJECTED:
    out["injected"] = _update_and_apply(INJECTED[name][0], g,
                                        *carry["injected"], EXTRA)
  return out


_RUNS = {}


def _runs(name: str, variant=None) -> dict:
  """Every path of the row, run by one function that the chex ``variant``
  jits or not (None: ``jax.jit``): one compiled program per row for the
  equivalence columns, run once per process and shared as numbers.

  Returns path -> :class:`Run`, and for the jitted program "init" (the
  carry it starts from) and "compiles" (its traces, and the compilations
  logged after its first call).
  """
  jit = variant is None or _is_jit(variant)
  templates = {"none": TX[name].init(_with_none(_params())),
               "masked": MASKED[name].init(_with_masked_out(_params()))}
  traces = []

  def step(carry, g, on):
    traces.append(None)
    return _step_every_path(name, templates, carry, g, on)

  # Wrapped on every call (chex checks that a variant test uses its variant);
  # compiled and run only by the first.
  step = jax.jit(step) if variant is None else variant(step)
  if (name, jit) not in _RUNS:
    init = {"plain": (TX[name].init(_params()), _params())}
    if name in INJECTED:
      init["injected"] = (INJECTED[name][0].init(_params()), _params())
    carry, outs, logs = init, [], []
    for t, g in enumerate(_grads()):
      with test_utils.log_compilations() as logged:
        outs.append(step(carry, g, jnp.asarray(True) if jit else None))
      logs += logged if t else []
      carry = {k: outs[-1][k][1:] for k in carry}
    runs = {k: Run(*([out[k][i] for out in outs] for i in range(3)))
            for k in outs[0]}
    if jit:
      runs.update(init=init, compiles=(len(traces), len(logs)))
    _RUNS[name, jit] = runs
  return _RUNS[name, jit]


def _assert_reads_alike(name, state, want_state, key, missing):
  """The row's reader finds its state through a wrapper and reads what it
  reads in the reference's state; the added leaf ``key`` reads as
  ``missing`` (None, or MaskedNode) wherever the reading holds params."""
  if ROWS[name].reader is None:
    return
  read = ROWS[name].reader(state)
  added = [x for path, x in jax.tree_util.tree_flatten_with_path(
      read, is_leaf=lambda x: x is None or isinstance(x, optax.MaskedNode))[0]
           if path and path[-1] == jax.tree_util.DictKey(key)]
  assert all(missing(x) for x in added), added
  chex.assert_trees_all_equal(
      jax.tree.leaves(read),
      jax.tree.leaves(ROWS[name].reader(want_state)))


def _is_jit(variant) -> bool:
  return variant.type == chex.ChexVariantType.WITH_JIT


def _assert_same(got, want, exact: bool):
  """Bit for bit, or to float32 rounding (two jitted programs)."""
  if exact:
    chex.assert_trees_all_equal(got, want)
  else:
    chex.assert_trees_all_close(got, want, rtol=RTOL, atol=ATOL)


def _is_injected(x) -> bool:
  return hasattr(x, "hyperparams") and hasattr(x, "inner_state")


def _without_injection(state):
  return jax.tree.map(lambda x: x.inner_state if _is_injected(x) else x,
                      state, is_leaf=_is_injected)


def _types(tree):
  """Shape, dtype and weak type of each leaf (what a jitted call is keyed on)."""
  return jax.tree.map(
      lambda x: (tuple(x.shape), jnp.dtype(x.dtype),
                 bool(getattr(x, "weak_type", False))), tree)


def _assert_placed_like(a, b):
  """The same kind of sharding, committed or not, on the same devices."""
  a, b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(a) == len(b), (len(a), len(b))
  for x, y in zip(a, b, strict=True):
    assert type(x.sharding) is type(y.sharding), (x.sharding, y.sharding)
    assert getattr(x, "committed", True) == getattr(y, "committed", True), (
        x.sharding, y.sharding)
    assert x.sharding.is_equivalent_to(y.sharding, x.ndim), (
        x.sharding, y.sharding)


def _placement(name: str):
  """(placed params, their ``jax.ShapeDtypeStruct`` twins or None)."""
  params = _params()
  if name == "uncommitted":
    return params, None
  if name == "committed":
    return jax.device_put(params, jax.devices()[0]), None
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("d",))

  def sharding(x):
    split = x.ndim and x.shape[0] % mesh.size == 0
    return jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec("d" if split else None))

  return ({k: jax.device_put(v, sharding(v)) for k, v in params.items()},
          {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding(v))
           for k, v in params.items()})


# ----------------------------------------------------------------------------
# The matrix.
# ----------------------------------------------------------------------------


class ConformanceTest(chex.TestCase):

  @parameterized.named_parameters(
      (f"{name}_{placement}", name, placement) for name, row in ROWS.items()
      for placement in row.placements)
  def test_jitted_loop_compiles_once_and_keeps_placement(self, name,
                                                         placement):
    if placement == "uncommitted":   # every path, in the shared program
      runs = _runs(name)
      self.assertEqual(runs["compiles"], (1, 0), "(traces, recompilations)")
      for path, (state, params) in runs["init"].items():
        _assert_placed_like(runs[path].states[0], state)
        _assert_placed_like(runs[path].params[0], params)
      return
    tx = TX[name]
    params, abstract = _placement(placement)
    state = tx.init(params)
    committed = {x.committed for x in jax.tree.leaves((params, state))}
    self.assertEqual(committed, {True})
    if abstract is not None:
      _assert_placed_like(tx.init(abstract), state)
    traces = []

    def step(params, state, g):
      traces.append(None)
      u, state = tx.update(g, state, params, **EXTRA)
      return optax.apply_updates(params, u), state, u

    step = jax.jit(step)
    grads = _grads()
    new_params, new_state, u = step(params, state, grads[0])
    _assert_placed_like(new_state, state)
    _assert_placed_like((new_params, u), (params, params))
    with test_utils.log_compilations() as logs:
      for g in grads[1:]:
        new_params, new_state, u = step(new_params, new_state, g)
    self.assertEmpty(logs, "recompiled on a later call")
    self.assertLen(traces, 1)

  @parameterized.named_parameters(_rows())
  def test_unjitted_update_compiles_nothing_the_second_time(self, name):
    tx, params, (g,) = TX[name], _params(), _grads(1)
    state = tx.init(params)
    tx.update(g, state, params, **EXTRA)
    with test_utils.log_compilations() as logs:
      tx.update(g, state, params, **EXTRA)
    self.assertEmpty(logs, "a second identical call compiled")

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(_rows(lambda row: row.inject is not None))
  def test_inject_hyperparams_gives_the_same_run(self, name):
    injected, names = INJECTED[name]
    found = set()
    for s in jax.tree.leaves(injected.init(_params()), is_leaf=_is_injected):
      if _is_injected(s):
        found |= set(s.hyperparams)
    self.assertContainsSubset(names, found)   # really injected
    runs = _runs(name, self.variant)
    got, want = runs["injected"], runs["plain"]
    exact = not _is_jit(self.variant)
    _assert_same(got.updates, want.updates, exact)
    _assert_same(_without_injection(got.states), want.states, exact)
    if ROWS[name].reader is not None:
      _assert_same(ROWS[name].reader(got.states[-1]),
                   ROWS[name].reader(want.states[-1]), exact)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(_rows(lambda row: row.with_lr is not None))
  def test_constant_schedule_gives_the_float_learning_rate(self, name):
    runs = _runs(name, self.variant)
    got, want = runs["schedule"], runs["plain"]
    self.assertEqual(jax.tree.structure(got.states),
                     jax.tree.structure(want.states))
    chex.assert_trees_all_equal((got.updates, got.states),
                                (want.updates, want.states))

  @parameterized.named_parameters(
      [(f"{name}_{dt}", name, dt) for name in ROWS
       for dt in ("float32", "bfloat16", "float16")]
      + [(f"{name}_complex64", name, "complex64")
         for name, _ in _rows(lambda row: row.complex_ok)])
  def test_dtypes_kept(self, name, dtype):
    tx, dtype = TX[name], jnp.dtype(dtype)
    params, (g,) = _params(dtype), _grads(1, dtype)
    state = tx.init(params)
    if ROWS[name].f32_state and not jnp.issubdtype(dtype, jnp.complexfloating):
      for x in jax.tree.leaves(state):   # bf16 would round b2 = 0.999 to 1
        if jnp.issubdtype(x.dtype, jnp.inexact):
          self.assertGreaterEqual(jnp.finfo(x.dtype).bits, 32, (name, x.dtype))
    # Exactly the types that lax.cond (and MultiSteps, a lax.cond) needs in
    # both branches, and that a jitted loop needs not to compile again.
    u, new_state = jax.eval_shape(_update(tx, **EXTRA), g, state, params)
    self.assertEqual(_types(u), _types(g))
    self.assertEqual(_types(new_state), _types(state))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(_rows())
  def test_none_leaves_change_nothing_else(self, name):
    runs = _runs(name, self.variant)
    got, want = runs["none"], runs["plain"]
    self.assertTrue(all(u["n"] is None and p["n"] is None
                        for u, p in zip(got.updates, got.params, strict=True)))
    chex.assert_trees_all_equal([{k: u[k] for k in KEYS} for u in got.updates],
                                want.updates)
    chex.assert_trees_all_equal([jax.tree.leaves(s) for s in got.states],
                                [jax.tree.leaves(s) for s in want.states])
    _assert_reads_alike(name, got.states[-1], want.states[-1], "n",
                        lambda x: x is None)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(_rows())
  def test_masked_leaves_pass_through_and_change_nothing_else(self, name):
    runs = _runs(name, self.variant)
    got, want = runs["masked"], runs["plain"]
    for u in got.updates:   # passed through
      chex.assert_trees_all_equal({k: u[k] for k in MASKED_OUT},
                                  _with_masked_out({}))
    chex.assert_trees_all_equal([{k: u[k] for k in KEYS} for u in got.updates],
                                want.updates)
    chex.assert_trees_all_equal(
        [jax.tree.leaves(s.inner_state) for s in got.states],
        [jax.tree.leaves(s) for s in want.states])
    _assert_reads_alike(name, got.states[-1], want.states[-1], "c",
                        lambda x: isinstance(x, optax.MaskedNode))

  @chex.variants(with_jit=True)
  @parameterized.named_parameters(_rows())
  def test_under_lax_cond_a_taken_step_is_the_step(self, name):
    runs = _runs(name, self.variant)
    got, want = runs["cond"], runs["plain"]
    chex.assert_trees_all_equal((got.updates, got.states),
                                (want.updates, want.states))

  @chex.variants(with_jit=True)
  @parameterized.named_parameters(_rows())
  def test_multisteps_skips_then_steps_on_the_mean_gradient(self, name):
    """Micro-steps g + DELTA then g - DELTA: the first is the skipped branch
    of MultiSteps' lax.cond (zero updates, the inner state unchanged), the
    second the step on their mean, g exactly."""
    multi = optax.MultiSteps(TX[name], every_k_schedule=2)
    update = self.variant(_update(multi, **EXTRA))
    params = _params()
    state, us, states = multi.init(params), [], []
    for g in _grads():
      inner = state.inner_opt_state
      u, state = update(jax.tree.map(lambda x: x + DELTA, g), state, params)
      chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, g))
      chex.assert_trees_all_equal(state.inner_opt_state, inner)
      u, state = update(jax.tree.map(lambda x: x - DELTA, g), state, params)
      params = optax.apply_updates(params, u)
      us.append(u)
      states.append(state.inner_opt_state)
    want = _runs(name)["plain"]
    _assert_same(us, want.updates, exact=False)
    _assert_same(states, want.states, exact=False)
    if ROWS[name].reader is not None:
      _assert_same(ROWS[name].reader(state),
                   ROWS[name].reader(want.states[-1]), exact=False)

  @parameterized.named_parameters(_rows())
  def test_abstract_init_and_map_params(self, name):
    tx = TX[name]
    params = dict(_params(), b=jnp.zeros((2, 2), jnp.bfloat16), n=None)
    abstract = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype),
                            params)
    concrete, shapes = tx.init(params), tx.init(abstract)
    self.assertEqual(jax.tree.structure(concrete), jax.tree.structure(shapes))
    self.assertEqual(_types(concrete), _types(shapes))
    self.assertEqual(jax.eval_shape(tx.init, params),
                     jax.eval_shape(tx.init, abstract))
    # optax.tree.map_params reaches the state: a no-op map keeps it.
    chex.assert_trees_all_equal(
        optax.tree.map_params(tx, lambda v: v, concrete), concrete)

  @parameterized.named_parameters(_rows())
  def test_python_scalar_leaves(self, name):
    tx = TX[name]
    scalars = {"a": 1.5, "b": -2.0}
    arrays = jax.tree.map(jnp.float32, scalars)
    grads = [{"a": jnp.float32(1.0), "b": jnp.float32(-0.5)},
             {"a": jnp.float32(-0.25), "b": jnp.float32(2.0)}]
    state = tx.init(scalars)
    self.assertEqual(_types(state), _types(tx.init(arrays)))
    for x in jax.tree.leaves(state):
      self.assertIn(x.dtype, (jnp.float32, jnp.int32, jnp.uint32))
    update = _update(tx, **EXTRA)
    chex.assert_trees_all_equal(_run(update, tx, scalars, grads),
                                _run(update, tx, arrays, grads))
    # 0-d leaves keep their types through a step (a jitted loop compiles once)
    state = tx.init(arrays)
    u, new_state = jax.eval_shape(update, grads[0], state, arrays)
    self.assertEqual(_types(u), _types(grads[0]))
    self.assertEqual(_types(new_state), _types(state))

  @parameterized.named_parameters(_rows())
  def test_step_exports_for_gpu_and_tpu(self, name):
    tx, params = TX[name], _params()
    exported = jax.export.export(
        jax.jit(_update(tx, **EXTRA)), platforms=PLATFORMS)(
            _grads(1)[0], tx.init(params), params)
    self.assertEqual(exported.platforms, PLATFORMS)


# ----------------------------------------------------------------------------
# The lab's compiled cells, for GPU and TPU, without host callbacks.
# ----------------------------------------------------------------------------


def _lab_cell(kind):
  """(the cell or group function, a chunk of two of its inputs)."""
  from ftrl_adam.lab.regret import cells
  from ftrl_adam.lab.regret import registry

  def column(v, dtype=np.float32):
    return np.full((2,), v, dtype)

  game = dict(T=4, d=3, G=1.0, kappa=1.0)
  learner = {"b1": column(0.9), "b2": column(0.99), "radius": column(0.1),
             "c": column(0.1), "seed": column(0, np.int32)}
  if kind == "beta_grid_group":   # the learners of one seed share a stream
    (adv,) = registry.resolve("gaussian")
    fn = cells.shared_group_fn(adv, domain="box", **game)
    return fn, jax.tree.map(lambda x: x[None], learner)   # one group of 2
  if kind == "beta_grid_cell":    # an adaptive adversary: one game per cell
    (adv,) = registry.resolve("oppose")
    fn = cells.per_cell_fn(adv, domain="ball", method="sequential", **game)
    return fn, learner
  from ftrl_adam import studies
  fn = studies.make_cell_fn(studies.make_task("quadratic", dim=4), steps=4,
                            eval_every=2, ema_decay=0.9)
  return fn, {"b1": column(0.9), "b2": column(0.99), "lr": column(0.1),
              "seed": column(0, np.int32)}


def _has_callback(jaxpr) -> bool:
  return "callback" in str(jaxpr)


@pytest.mark.parametrize("kind", ["beta_grid_group", "beta_grid_cell",
                                  "study_cell"])
def test_lab_cells_export_for_gpu_and_tpu(kind):
  fn, chunk = _lab_cell(kind)
  program = jax.jit(jax.vmap(fn))   # what the grid engine compiles
  assert not _has_callback(program.trace(chunk).jaxpr)
  exported = jax.export.export(program, platforms=PLATFORMS)(chunk)
  assert exported.platforms == PLATFORMS


def test_lab_cell_traced_with_progress_has_a_callback():
  """The check above can fail: progress on, the cell reports its rounds."""
  from ftrl_adam.lab.engine import progress
  fn, chunk = _lab_cell("beta_grid_cell")
  with progress.reporting_to(progress.Progress(enabled=True)):
    assert _has_callback(jax.jit(jax.vmap(fn)).trace(chunk).jaxpr)


# ----------------------------------------------------------------------------
# An EMA is the last transform of its chain (issue 20).
# ----------------------------------------------------------------------------


def _trained(tx, steps=2):
  """The state after ``steps`` un-jitted steps (0: ``init``'s)."""
  if not steps:
    return tx.init(_params())
  return _run(_update(tx), tx, _params(), _grads(steps))[1][-1]


def test_the_misplaced_ema_of_the_issue_is_refused():
  state = _trained(optax.chain(fa.ema_params(0.9), fa.ftrl_adam(0.1)))
  with np.testing.assert_raises_regex(
      ValueError, r"EmaParamsState at state\[0\] comes before a transform "
      r"that changes the updates \(state\[1\]\).*must be the last transform"
      r".*ftrl_adam.with_ema"):
    fa.ema_params_of(state)


def test_a_misplaced_posthoc_ema_is_refused_by_its_readers():
  state = _trained(optax.chain(fa.posthoc_ema_params(), fa.ftrl_adam(0.1)))
  for read in (fa.posthoc_emas_of,
               fa.PosthocSnapshotKeeper(every=1).update):
    with np.testing.assert_raises_regex(
        ValueError, r"PosthocEmaState at state\[0\].*with_posthoc_ema"):
      read(state)


def test_misplaced_inside_wrappers_is_refused_too():
  for tx in (optax.MultiSteps(optax.chain(fa.ema_params(0.9), optax.adam(0.1)),
                              every_k_schedule=1),
             optax.chain(optax.chain(optax.identity(), fa.ema_params(0.9)),
                         fa.ftrl_adam(0.1))):
    with np.testing.assert_raises_regex(ValueError, "must be the last"):
      fa.ema_params_of(_trained(tx, steps=0))   # the order is in the structure


def test_emas_may_follow_each_other():
  tx = optax.chain(
      fa.ftrl_adam(0.1), fa.ema_params(0.9, name="a"),
      optax.inject_hyperparams(fa.ema_params)(decay=0.5, name="b"),
      optax.masked(fa.ema_params(0.8, name="c"), {"a": True, "b": False}),
      fa.posthoc_ema_params())
  state = _trained(tx)
  for name in "abc":
    fa.ema_params_of(state, name)
  fa.posthoc_emas_of(state)


def test_with_ema_is_the_chain_in_the_right_order():
  kw = dict(warmup_power=0.75, every=2, debias=False, name="slow")
  got = _trained(fa.with_ema(fa.ftrl_adam(0.1), 0.99, **kw), steps=T)
  want = _trained(optax.chain(fa.ftrl_adam(0.1), fa.ema_params(0.99, **kw)),
                  steps=T)
  chex.assert_trees_all_equal(got, want)
  chex.assert_trees_all_equal(fa.ema_params_of(got, "slow"),
                              fa.ema_params_of(want, "slow"))
  got = _trained(fa.with_posthoc_ema(fa.ftrl_adam(0.1), powers=(1.0, 3.0)))
  want = _trained(optax.chain(fa.ftrl_adam(0.1),
                              fa.posthoc_ema_params(powers=(1.0, 3.0))))
  chex.assert_trees_all_equal(got, want)
  for wrap in (fa.with_ema, fa.with_posthoc_ema):
    with np.testing.assert_raises_regex(ValueError, "`optimizer` must be"):
      wrap(0.1)
  with np.testing.assert_raises_regex(ValueError, "`decay` must lie"):
    fa.with_ema(fa.ftrl_adam(0.1), 1.5)
