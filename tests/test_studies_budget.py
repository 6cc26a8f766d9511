"""Studies of any hyperparameter, on a budget (issue 23): the specification.

* a user optimizer function with a non-beta axis (weight decay) gives, in
  each cell, the run of that configuration trained alone;
* the post-hoc EMA synthesised at a stored width equals the EMA of that
  width kept directly during training, to float32 rounding;
* successive halving: a configuration continued from rung to rung ends in
  the state of its unpruned run, bit for bit under the reproducible options;
  its metrics are the full grid's; a study interrupted in a rung resumes to
  the identical table; one compiled program per rung; diverged runs stop at
  the next rung in any budget;
* bad axes are refused, before anything is compiled, with the reason.

Every study is a tiny noisy quadratic (a few dozen steps): compilation
dominates.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ftrl_adam as fa
from ftrl_adam import grid
from ftrl_adam import studies
from ftrl_adam.lab import experiment
from ftrl_adam.lab.studies import carry as carry_lib
from ftrl_adam.lab.studies import halving
from ftrl_adam.lab.studies import optimizers

QUIET = dict(progress=False, verbose=False, plots=False)


@pytest.fixture(scope="module")
def quad():
  return studies.make_task("quadratic", dim=6, noise=0.5)


def _decayed(hp):
  return optax.chain(optax.add_decayed_weights(hp["wd"]),
                     fa.ftrl_adam(hp["lr"], hp["b1"], hp["b2"]))


# ----------------------------------------------------------------------------
# Any axis.
# ----------------------------------------------------------------------------


def test_a_user_optimizer_axis_equals_the_configuration_trained_alone(quad):
  res = studies.run_study(quad, optimizer=_decayed, b1=[0.9], b2=[0.99],
                          learning_rates=[0.05], axes={"wd": [0.0, 0.3]},
                          seeds=[1], steps=40, eval_every=20, **QUIET)
  cells = res.cells
  assert list(cells["wd"]) == pytest.approx([0.0, 0.3])
  assert cells["val_loss"][0] != cells["val_loss"][1]   # the axis matters
  assert res.config["axes"]["wd"] == pytest.approx([0.0, 0.3])
  assert "user function _decayed" in res.config["optimizer"]
  for i, wd in enumerate((0.0, 0.3)):
    alone = jax.jit(lambda wd=wd: studies.train(
        quad, seed=1, steps=40, eval_every=20,
        optimizer=optax.chain(optax.add_decayed_weights(np.float32(wd)),
                              fa.ftrl_adam(0.05, 0.9, 0.99))),
        compiler_options=grid.compiler_options() or None)()
    for k, v in alone.items():
      np.testing.assert_allclose(cells[k][i], v, rtol=1e-6, err_msg=k)


def test_the_builtin_weight_decay_is_adamws():
  """--axis weight_decay: the update gains -lr * wd * params, as optax.adamw."""
  params = {"w": jnp.array([1.0, -2.0, 3.0])}
  grads = {"w": jnp.array([0.5, 0.1, -0.2])}
  ours = optimizers.builtin()({"lr": 0.1, "b1": 0.9, "b2": 0.99,
                               "weight_decay": 0.01})
  ref = optax.adamw(0.1, 0.9, 0.99, weight_decay=0.01)
  u1, _ = ours.update(grads, ours.init(params), params)
  u2, _ = ref.update(grads, ref.init(params), params)
  np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-6)


# ----------------------------------------------------------------------------
# The EMA's width, after training.
# ----------------------------------------------------------------------------


def test_posthoc_at_a_stored_width_equals_the_kept_ema(quad):
  common = dict(b1=[0.9], b2=[0.99], learning_rates=[0.05], seeds=2,
                steps=60, eval_every=10, **QUIET)
  post = studies.run_study(quad, sigma_rels=[0.07, 0.10], **common).cells
  kept = studies.run_study(quad, ema_sigma_rel=0.10, **common).cells
  np.testing.assert_allclose(post["val_loss_sigma_0.1"], kept["val_loss_ema"],
                             rtol=2e-6)
  # Another width is another average, and the best of them is reported.
  assert np.all(post["val_loss_sigma_0.07"] != post["val_loss_sigma_0.1"])
  best = np.minimum(post["val_loss_sigma_0.07"], post["val_loss_sigma_0.1"])
  np.testing.assert_array_equal(post["val_loss_posthoc"], best)
  assert set(post["best_sigma_rel"].tolist()) <= {np.float32(0.07),
                                                 np.float32(0.1)}


# ----------------------------------------------------------------------------
# Successive halving.
# ----------------------------------------------------------------------------

HALVING = dict(b1=[0.5, 0.9], b2=[0.9, 0.99], learning_rates=[0.03, 0.1],
               seeds=2, steps=90, eval_every=10)


def test_a_continued_run_ends_in_the_state_of_its_unpruned_run(quad):
  """advance(0, 30), packed into table columns and back, then advance(30,
  90) is advance(0, 90), every leaf bit for bit (reproducible options)."""
  trainer = studies.Trainer(quad, optimizers.builtin(), 90, 10,
                            ema_decay=0.9, sigma_rels=(0.07,))
  hp = {"lr": np.float32(0.1), "b1": np.float32(0.9), "b2": np.float32(0.99)}
  seed = np.int32(3)
  opts = grid.compiler_options() or None
  whole = jax.jit(lambda: trainer.advance(trainer.init(hp, seed), hp, seed,
                                          0, 90)[0], compiler_options=opts)()
  layout = trainer.layout(hp, 30)
  first = jax.jit(lambda: layout.pack(trainer.advance(
      trainer.init(hp, seed), hp, seed, 0, 30)[0]), compiler_options=opts)()
  host = {k: np.asarray(v) for k, v in first.items()}      # the table's copy
  rest = jax.jit(lambda v: trainer.advance(layout.unpack(v), hp, seed, 30,
                                           90)[0], compiler_options=opts)(host)
  jax.tree.map(np.testing.assert_array_equal, rest, whole)


@pytest.fixture(scope="module")
def halved(quad, tmp_path_factory):
  """A halving study run uninterrupted into a folder, and its compilations."""
  compiled = []
  original = grid.Program.compile

  def counting(self):
    if self._compiled is None:   # pylint: disable=protected-access
      compiled.append(self.layout.chunk)
    return original(self)

  spec = studies.make_study(quad, budget="halving", chunk_size=2, **HALVING)
  out = tmp_path_factory.mktemp("halved")
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(grid.Program, "compile", counting)
    result = experiment.run_experiment(spec, out_dir=str(out), progress=False,
                                       plots=False)
  return spec, result, out, compiled


def test_halving_rows_are_the_full_grids_bit_for_bit_one_program_per_rung(
    quad, halved):
  spec, result, _, compiled = halved
  assert compiled == [2, 2, 2]                          # one program per rung
  full = studies.run_study(quad, **HALVING, **QUIET).cells
  cells = result.table
  # 8 configurations: 8 to step 10, ceil(8/3) = 3 to step 30, 1 to step 90.
  counts = [np.sum(cells["stopped_at"] >= e) // 2 for e in (10, 30, 90)]
  assert counts == [8, 3, 1]
  assert set(np.unique(cells["rung"]).tolist()) == {0, 1, 2}
  end = cells["stopped_at"] == 90
  for k in full:
    np.testing.assert_array_equal(cells[k][end], full[k][end], err_msg=k)
  # The survivors of rung 0 are the best third by the mean over seeds of
  # the loss at step 10 (a 10-step study is rung 0, bit for bit).
  first = studies.run_study(quad, **{**HALVING, "steps": 10}, **QUIET).cells
  stopped = cells["stopped_at"] == 10
  np.testing.assert_array_equal(first["val_loss"][stopped],
                                cells["val_loss"][stopped])
  best = halving.survivors(first, spec.axis_names, "val_loss", 3.0)
  np.testing.assert_array_equal(best, cells["stopped_at"] >= 30)
  assert "compute: 400 training steps of the full grid's 1,440 (27.8%)" in \
      result.text
  assert "3 rungs ending at steps 10, 30, 90" in spec.size().describe()
  assert np.isnan(result.extra["tuned"]["val_loss"]).sum() == 3
  # ... and the summary and the figures say what those nan (grey) cells are
  assert "nan above: halving stopped every configuration of that row" in \
      result.text
  titles = {f.name: f.title for f in spec.figures(result)}
  for name in ("heatmap_val_loss", "heatmap_lr"):   # the tuned lr's greys too
    assert "grey: stopped by halving" in titles[name], (name, titles[name])
  assert "heatmap_stopped_at" in titles


def test_a_halving_study_interrupted_in_a_rung_resumes_to_the_same_table(
    halved, tmp_path, capsys):
  spec, whole, out, _ = halved

  class Stop(Exception):
    pass

  seen = []

  def stop_in_rung_one(info):
    seen.append(info)
    if len(seen) == 8 + 2:     # rung 0 has 8 chunks; then one of rung 1
      raise Stop

  with pytest.raises(Stop):
    experiment.run_experiment(spec, out_dir=str(tmp_path), progress=False,
                              plots=False, on_chunk=stop_in_rung_one)
  assert sorted(os.listdir(tmp_path)) == ["grid_rung0", "grid_rung1",
                                          "run.json"]
  capsys.readouterr()
  # With progress on: the training loops' step reports compiled in change no
  # bit, and the rungs are numbered out of the three announced.
  again = experiment.run_experiment(spec, out_dir=str(tmp_path),
                                    progress=True, plots=False)
  assert again.computed == 2 + 2     # rung 1's last chunk, then rung 2
  err = capsys.readouterr().err
  for label in ("study rung0 (1/3)", "study rung1 (2/3)", "study rung2 (3/3)"):
    assert label in err, err
  for name in ("results.csv", "tuned.csv"):
    with open(out / name) as f, open(tmp_path / name) as g:
      assert f.read() == g.read(), name


def test_diverged_runs_stop_at_the_next_rung_in_any_budget():
  """The gradient turns NaN for lr = 1 (tests/test_studies.py's task): with
  two rungs of the full budget that run stops at the first rung's end."""
  def loss(params, batch):
    w = params["w"]
    return jnp.sum(w ** 2) + jnp.sum(jnp.where(w < -0.5, 0.0,
                                               jnp.sqrt(w + 0.5)))

  task = studies.Task(
      name="hidden-nan", init_params=lambda key: {"w": jnp.full((3,), 1.0)},
      loss=loss, train_batch=lambda key, step: jnp.zeros(()),
      val_batch=jnp.zeros(()),
      defaults=studies.TaskDefaults(steps=40, learning_rates=(0.01, 1.0),
                                    ema_decay=0.9, eval_every=10))
  res = studies.run_study(task, b1=[0.9], b2=[0.99], seeds=1, rungs=2,
                          **QUIET)
  assert res.cells["diverged"].tolist() == [False, True]
  assert res.cells["stopped_at"].tolist() == [40, 20]
  assert "rungs" in res.summary


# ----------------------------------------------------------------------------
# Pieces: the schedule, the ranking, the carried state.
# ----------------------------------------------------------------------------


def test_rungs_and_survivors():
  assert halving.rung_ends(400, 50, 3, 3.0) == (50, 150, 400)
  assert halving.rung_ends(90, 10, 3, 3.0) == (10, 30, 90)
  assert halving.rung_ends(100, 10, 2, 1.0) == (50, 100)
  assert halving.compute([8, 3, 1], [10, 30, 90]) == 80 + 60 + 60
  t = grid.product(lr=[0.1, 0.2, 0.3, 0.4], seed=[0, 1])
  t["m"] = np.float32([1, 1, 2, 2, 0, 0, 0.5, 0.5])
  t["diverged"] = np.array([False] * 4 + [True, False] + [False] * 2)
  keep = halving.survivors(t, ["lr"], "m", 2.0)
  # lr = 0.3 has the lowest mean but a diverged seed: it never continues.
  assert t["lr"][keep].tolist() == pytest.approx([0.1, 0.1, 0.4, 0.4])
  assert halving.survivors(t, ["lr"], "m", 1.0).sum() == 6


def test_a_state_packs_into_table_columns_and_back_exactly():
  state = {"a": jnp.arange(6.0).reshape(2, 3), "b": jnp.bfloat16(1.5),
           "c": jnp.uint32(2 ** 32 - 1), "d": jnp.array([True, False]),
           "e": jnp.zeros((0, 2)), "f": jnp.int32(-7)}
  layout = carry_lib.Layout.of(jax.eval_shape(lambda: state))
  packed = layout.pack(state)
  assert packed["f32"].dtype == jnp.float32 and packed["i32"].dtype == jnp.int32
  back = layout.unpack(packed)
  for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(state), strict=True):
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(x, y)
  with pytest.raises(ValueError, match=r"\['z'\] has dtype complex64"):
    carry_lib.Layout.of(jax.eval_shape(lambda: {"z": jnp.zeros(2, jnp.complex64)}))


# ----------------------------------------------------------------------------
# Bad axes: refused before anything is compiled.
# ----------------------------------------------------------------------------


@pytest.fixture
def no_compile(monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError("the grid engine was reached")
  monkeypatch.setattr(grid, "run_grid", refuse)
  monkeypatch.setattr(grid, "compile_ahead", refuse)


def _schedule_steps(hp):
  # A step count must be a Python int: traced, it cannot be.
  sched = optax.cosine_decay_schedule(0.1, decay_steps=hp["steps_total"])
  return fa.ftrl_adam(sched, 0.9, 0.99)


@pytest.mark.parametrize("kwargs,match", [
    (dict(axes={"steps": [10, 20]}), r"'steps' cannot be an axis: the number "
                                     r"of steps is the length"),
    (dict(axes={"batch_size": [8, 16]}), r"'batch_size' cannot be an axis"),
    (dict(axes={"dim": [2, 3]}), r"'dim' cannot be an axis: a task option"),
    (dict(axes={"lr": [0.1]}), r"'lr' has its own option; pass "
                               r"`learning_rates`"),
    (dict(axes={"momentum": [0.1, 0.2]}), r"the built-in optimizer has no "
                                          r"hyperparameter 'momentum'"),
    (dict(axes={"weight_decay": [-0.1]}), r"`axes`: `weight_decay` values "
                                          r"must lie in \[0, inf\)"),
    (dict(optimizer=_schedule_steps, axes={"steps_total": [10.0, 20.0]},
          learning_rates=[0.1]),
     r"cannot take 'steps_total' as a traced value .*Python `if`"),
    (dict(optimizer=lambda hp: fa.ftrl_adam(0.1, 0.9, 0.99)),
     r"never reads hp\['lr'\], which has 3 values"),
    (dict(optimizer=3), r"`optimizer` must be a function"),
    (dict(show="b1,lr,b2"), r"`show` takes one or two axes"),
    (dict(show="b1", tune="b2"), r"neither: \['lr'\]"),
    (dict(show="b1,b2", tune="lr,b2"), r"both: \['b2'\]"),
    (dict(sigma_rels=[0.01]), r"`sigma_rels`: Too few snapshots for sigma_rel 0.01 "
                              r"\(rho=.*every 50 steps\)"),
    (dict(metric="val_loss_posthoc"), r"needs `sigma_rels`"),
    (dict(budget="halving", rungs=1), r"`rungs` must be >= 2"),
    (dict(budget="halving", halving_rate=1.0), r"`halving_rate` must be > 1"),
    (dict(budget="sometimes"), r"`budget` must be one of"),
])
def test_bad_axes_and_budgets_are_refused(no_compile, quad, kwargs, match):
  with pytest.raises(ValueError, match=match):
    studies.run_study(quad, **QUIET, **kwargs)


def test_the_size_counts_the_rungs_and_the_carried_state(no_compile, quad,
                                                         monkeypatch):
  """Refused before anything is allocated: a halving study carries every
  run's state from rung to rung, and the size check counts it."""
  from ftrl_adam.lab.engine import devices  # pylint: disable=import-outside-toplevel
  big = studies.make_task("quadratic", dim=100_000)
  kw = dict(b1=[0.5, 0.9], b2=[0.9, 0.99], learning_rates=[0.03, 0.1],
            seeds=4, steps=90, eval_every=10, chunk_size=4)
  full = studies.make_study(big, **kw).size()
  half = studies.make_study(big, budget="halving", **kw).size()
  state = 4 * 4 * 100_000          # params, two moments, the EMA (float32)
  assert half.host_bytes >= full.host_bytes + 2 * 32 * state
  assert half.work == 32 * 10 + 12 * 20 + 4 * 60 < full.work == 32 * 90
  assert "3 rungs ending at steps 10, 30, 90" in half.describe()
  memory = 2.0 * (full.host_bytes + full.chunk_bytes + state)
  assert half.host_bytes > memory
  monkeypatch.setattr(devices, "available_memory", lambda: memory)
  experiment.check_size(full)        # the full grid fits, the halving not
  with pytest.raises(experiment.TooBigError, match="too big for this machine"):
    studies.run_study(big, budget="halving", **kw, **QUIET)


def test_the_command_line_names_the_flag(no_compile, capsys):
  from ftrl_adam import cli  # pylint: disable=import-outside-toplevel
  for argv, match in (
      (["--axis", "steps=1,2"], "--axis: 'steps' cannot be an axis"),
      (["--axis", "weight_decay"], "expected NAME=VALUES"),
      (["--axis", "eps=1e-8", "--axis", "eps=1e-6"], "--axis: each axis once"),
      (["--show", "lr,b3"], "--show names ['b3']"),
      (["--sigma-rels", "0.5"], "--sigma-rels values must lie in")):
    with pytest.raises(SystemExit) as exc:
      cli.main(["study", "--task", "quadratic", *argv])
    assert exc.value.code == 2
    assert match in capsys.readouterr().err
