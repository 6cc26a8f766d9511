"""Vectorised training studies (ftrl_adam.studies): the issue's specification.

* a grid cell of a study equals the single training run, bit for bit;
* the default digits configuration reaches >= 0.9 validation accuracy;
* the character language model goes below the unigram entropy of its corpus;
* ``ftrl-adam study`` end to end on a tiny study, and its resume;
* bad input (unknown task, empty grid, learning rate <= 0) fails clearly,
  before anything is compiled.

Compilation dominates on CPU, so each expensive program is compiled once
(module-scoped fixtures) and the CLI study is a tiny noisy quadratic.
"""

from __future__ import annotations

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ftrl_adam import grid
from ftrl_adam import studies

# The "default digits config": the digits task with its defaults (400 steps,
# EMA 0.98) and Adam's usual b1 = 0.9, b2 = 0.999, the middle learning rate.
DEFAULT_B1, DEFAULT_B2, DEFAULT_LR = 0.9, 0.999, 3e-3


@pytest.fixture(scope="module")
def digits_task():
  return studies.make_task("digits")


@pytest.fixture(scope="module")
def digits_study(digits_task):
  """A two-cell study of the default digits config (one grid program).

  Progress on: the training loop's progress reports are compiled into the
  grid program (and not into ``single_run``'s), and change no bit.
  """
  return studies.run_study(
      digits_task, b1=[DEFAULT_B1], b2=[0.99, DEFAULT_B2],
      learning_rates=[DEFAULT_LR], seeds=[3], chunk_size=2, progress=True,
      verbose=False)


@pytest.fixture(scope="module")
def digits_single(digits_task):
  """The default digits config trained alone (jit of one cell)."""
  return studies.single_run(digits_task, b1=DEFAULT_B1, b2=DEFAULT_B2,
                            learning_rate=DEFAULT_LR, seed=3)


# ----------------------------------------------------------------------------
# Grid cell == single run; the default digits config learns.
# ----------------------------------------------------------------------------


def test_grid_cell_equals_single_run_bit_for_bit(digits_study, digits_single):
  cells = digits_study.cells
  i = int(np.flatnonzero(cells["b2"] == np.float32(DEFAULT_B2))[0])
  assert set(digits_single) == set(studies.metric_names(
      studies.make_task("quadratic"))) | {
          "val_acc", "val_acc_ema", "best_val_acc", "best_val_acc_ema"}
  for name, value in digits_single.items():
    np.testing.assert_array_equal(cells[name][i], value, err_msg=name)
  # The other cell is another run: the comparison is not vacuous.
  assert cells["val_loss"][1 - i] != cells["val_loss"][i]


def test_default_digits_config_reaches_90_percent(digits_single):
  assert digits_single["val_acc"] >= 0.9
  assert digits_single["val_acc_ema"] >= 0.9
  assert not digits_single["diverged"]
  assert digits_single["best_val_loss"] <= digits_single["val_loss"]


@pytest.mark.parametrize("name", ["quadratic", "rosenbrock"])
def test_vmapped_train_equals_single_train_bit_for_bit(name):
  """The same contract for :func:`train` under a plain jit(vmap), not the engine.

  Evaluated every 10 steps: the noisy quadratic once differed in the last bit
  of some evaluations (XLA fused a*b+c into an FMA in one program only).
  """
  task = studies.make_task(name)
  opts = grid.compiler_options() or None

  def run(b1, b2, lr, seed):
    return studies.train(task, b1=b1, b2=b2, learning_rate=lr, seed=seed,
                         steps=120, eval_every=10, curves=True)

  b1 = np.float32([0.0, 0.9, 0.99])
  b2 = np.float32([0.5, 0.999, 0.9])
  lr = np.float32([0.01, 0.003, 0.03])
  seed = np.int32([0, 1, 2])
  batched = jax.jit(jax.vmap(run), compiler_options=opts)(b1, b2, lr, seed)
  single = jax.jit(run, compiler_options=opts)
  for i in range(3):
    one = single(b1[i], b2[i], lr[i], seed[i])
    for name in one:
      np.testing.assert_array_equal(batched[name][i], one[name], err_msg=name)
  np.testing.assert_array_equal(batched["curve_step"][0],
                                np.arange(10, 121, 10))


def test_charlm_goes_below_unigram_entropy():
  task = studies.make_task("charlm", val_windows=64)
  h = task.info["unigram_entropy"]
  assert 2.5 < h < 4.0  # nats per character of English-like text
  assert task.info["unigram_cross_entropy_val"] >= h - 0.1
  out = jax.jit(lambda: studies.train(
      task, b1=0.9, b2=0.99, learning_rate=3e-3, seed=0, steps=150,
      eval_every=75))()
  assert float(out["val_loss"]) < h
  assert float(out["val_loss_ema"]) < h
  assert float(out["train_loss"]) < h


# ----------------------------------------------------------------------------
# The command line.
# ----------------------------------------------------------------------------


def _study_cli(argv):
  """``ftrl-adam study ...`` through the one entry point."""
  from ftrl_adam import cli  # pylint: disable=import-outside-toplevel
  return cli.main(["study", *argv])


TINY = ["--task", "quadratic", "--option", "dim=8", "--b1", "0.5,0.9",
        "--b2", "0.9,0.99", "--lrs", "0.03,0.1", "--seeds", "2",
        "--steps", "60", "--eval-every", "20", "--chunk-size", "8"]


def test_cli_end_to_end_and_resume(tmp_path, capsys):
  out = str(tmp_path / "study")
  assert _study_cli([*TINY, "--out", out]) == 0
  printed = capsys.readouterr()
  assert "best b2 for each b1 (val_loss" in printed.out
  assert "study train (1/1): 16 cells in 2 chunk(s)" in printed.err
  files = set(os.listdir(out))
  assert {"results.csv", "tuned.csv", "run.json", "summary.txt",
          "heatmap_val_loss.png", "heatmap_val_loss_ema.png",
          "heatmap_lr.png", "grid_train"} == files
  assert "manifest.json" in os.listdir(os.path.join(out, "grid_train"))
  with open(os.path.join(out, "results.csv")) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 16
  assert {"b1", "b2", "lr", "seed", "val_loss", "val_loss_ema",
          "best_val_loss", "best_val_loss_ema", "diverged"} <= set(rows[0])
  with open(os.path.join(out, "tuned.csv")) as f:
    tuned = list(csv.DictReader(f))
  assert len(tuned) == 4 and {r["lr_val_loss"] for r in tuned} <= {"0.03",
                                                                  "0.1"}
  with open(os.path.join(out, "run.json")) as f:
    meta = json.load(f)
  assert meta["config"]["task"] == "quadratic"
  assert meta["config"]["steps"] == 60
  assert meta["config"]["axes"]["lr"] == pytest.approx([0.03, 0.1])
  assert meta["status"] == "complete" and len(meta["summary"]) == 2
  assert "jax" in meta["versions"]
  for png in ("heatmap_val_loss.png", "heatmap_lr.png"):
    with open(os.path.join(out, png), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(os.path.join(out, "results.csv")) as f:
    first = f.read()

  # Same command again: every chunk is loaded, nothing recomputed.
  assert _study_cli([*TINY, "--out", out, "--no-progress"]) == 0
  assert _study_cli([*TINY, "--out", out]) == 0
  printed = capsys.readouterr()
  assert "16 cells already done" in printed.err
  assert "nothing to compute" in printed.err
  assert "no new cells: every chunk was on disk" in printed.out
  with open(os.path.join(out, "results.csv")) as f:
    assert f.read() == first

  # Another study into the same folder is refused, cleanly.
  assert _study_cli([*TINY, "--steps", "30", "--out", out]) == 2
  err = capsys.readouterr().err
  assert "different study" in err and "steps: 60 -> 30" in err
  # A changed axis names the entry that changed, in float32's short form.
  assert _study_cli([*TINY, "--seeds", "3", "--out", out]) == 2
  err = capsys.readouterr().err
  assert "changed: axes (seed: [0, 1] -> [0, 1, 2])" in err, err
  assert "0.89999" not in err and "b1:" not in err


# ----------------------------------------------------------------------------
# Bad input: clear errors, before any compilation.
# ----------------------------------------------------------------------------


@pytest.fixture
def no_compile(monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError("the grid engine was reached")
  monkeypatch.setattr(grid, "run_grid", refuse)


@pytest.mark.parametrize("kwargs,match", [
    (dict(task="mnist"), r"`task` must be one of 'digits', 'charlm'"),
    (dict(b1=[]), r"`b1`: .*non-empty"),
    (dict(b2=""), r"`b2`"),
    (dict(seeds=0), r"`seeds` must be a number of seeds >= 1"),
    (dict(learning_rates=[]), r"`learning_rates`: .*non-empty"),
    (dict(learning_rates=[1e-3, 0.0]), r"`learning_rates` values must lie in \(0, inf\)"),
    (dict(learning_rates=[-1e-3]), r"`learning_rates` values must lie in \(0, inf\)"),
    (dict(b1=[0.9, 1.0]), r"`b1` values must lie in \[0, 1\)"),
    (dict(steps=0), r"`steps` must be an integer >= 1"),
    (dict(metric="accuracy"), r"`metric` must be one of"),
    (dict(task_options={"hidden": 0}), r"`hidden` must be an integer >= 1"),
    (dict(task_options={"depth": 3}), r"no option 'depth'; its options are hidden"),
])
def test_run_study_bad_input(no_compile, kwargs, match):
  kwargs = {"task": "digits", **kwargs}
  with pytest.raises(ValueError, match=match):
    studies.run_study(kwargs.pop("task"), progress=False, verbose=False,
                      **kwargs)


def test_make_task_and_train_bad_input():
  with pytest.raises(ValueError, match=r"`task` must be one of 'digits', "
                                       r"'charlm', 'quadratic', 'rosenbrock'"):
    studies.make_task("cifar10")
  task = studies.make_task("quadratic", dim=4)
  for lr in (0.0, -0.1):
    with pytest.raises(ValueError, match=r"`learning_rate` must lie in \(0"):
      studies.train(task, b1=0.9, b2=0.99, learning_rate=lr, seed=0, steps=5)
    with pytest.raises(ValueError, match=r"`learning_rate` must lie in \(0"):
      studies.single_run(task, b1=0.9, b2=0.99, learning_rate=lr, seed=0)
  with pytest.raises(ValueError, match=r"`b2` must lie in \[0, 1\)"):
    studies.train(task, b1=0.9, b2=1.5, learning_rate=0.1, seed=0, steps=5)
  with pytest.raises(ValueError, match=r"`text` is too short"):
    studies.make_task("charlm", text="tiny")


@pytest.mark.parametrize("argv,match", [
    (["--task", "mnist"], "invalid choice: 'mnist'"),
    (["--b1", ""], "--b1"),
    (["--lrs", "0"], r"--lrs values must lie in \(0, inf\)"),
    (["--lrs", "1e-3,-1e-3"], r"--lrs"),
    (["--seeds", "0"], "--seeds must be a number of seeds >= 1"),
    (["--steps", "0"], "--steps must be an integer >= 1"),
    (["--option", "nope"], "expected KEY=VALUE"),
    (["--task", "quadratic", "--option", "dim=abc"],
     r"error: --option dim must be an integer >= 1, got 'abc'"),
    (["--b2", "log1m:0.9:1.2:3"], "--b2"),
])
def test_cli_bad_input(no_compile, capsys, argv, match):
  with pytest.raises(SystemExit) as exc:
    _study_cli(argv)
  assert exc.value.code == 2
  err = capsys.readouterr().err
  assert "error:" in err
  assert __import__("re").search(match, err), err


# ----------------------------------------------------------------------------
# Pieces: tuning, the summary, a user task.
# ----------------------------------------------------------------------------


def test_tune_learning_rate_per_b1_b2_mean_over_seeds():
  cells = grid.product(b1=[0.5, 0.9], b2=[0.9, 0.99], lr=[0.01, 0.1],
                       seed=[0, 1])
  rng = np.random.default_rng(0)
  loss = rng.uniform(1.0, 2.0, len(cells["b1"])).astype(np.float32)
  loss[(cells["b1"] == 0.5) & (cells["lr"] == np.float32(0.1))
       & (cells["seed"] == 1)] = np.nan   # a diverged seed
  cells["val_loss"] = loss
  tuned = studies.tune_learning_rate(cells, metrics=["val_loss"])
  for j in range(4):
    b1, b2 = tuned["b1"][j], tuned["b2"][j]
    means = {}
    for lr in np.float32([0.01, 0.1]):
      v = loss[(cells["b1"] == b1) & (cells["b2"] == b2) & (cells["lr"] == lr)]
      means[float(lr)] = np.mean(v) if np.all(np.isfinite(v)) else np.inf
    best = min(means, key=means.get)
    assert tuned["lr_val_loss"][j] == np.float32(best)
    assert tuned["val_loss"][j] == pytest.approx(means[best])
  # b1 = 0.5 never picks lr = 0.1 (a seed diverged there).
  assert np.all(tuned["lr_val_loss"][tuned["b1"] == 0.5] == np.float32(0.01))

  rows = studies.best_b2_per_b1(tuned, "val_loss")
  assert [r["b1"] for r in rows] == pytest.approx([0.5, 0.9])
  for r in rows:
    sel = tuned["b1"] == np.float32(r["b1"])
    assert r["value"] == pytest.approx(np.min(tuned["val_loss"][sel]))
    assert r["b1_squared"] == pytest.approx(r["b1"] ** 2)
    assert r["beta_ratio"] == pytest.approx(r["b1"] / np.sqrt(r["best_b2"]))
  text = studies.format_summary(rows, "val_loss")
  assert "b1^2" in text and "best b2" in text
  # b2 = b1 is on the grid for b1 = 0.9 only: "-" for 0.5, not a nan that
  # reads as a diverged run.
  assert [r["b2_eq_b1_on_grid"] for r in rows] == [False, True]
  assert np.isnan(rows[0]["value_at_b2_eq_b1"])
  lines = {ln.split()[0]: ln.split() for ln in text.splitlines()
           if ln.split() and ln.split()[0] in ("0.5", "0.9")}
  at_diagonal = float(tuned["val_loss"][(tuned["b1"] == np.float32(0.9))
                                        & (tuned["b2"] == np.float32(0.9))][0])
  assert lines["0.5"][-1] == "-" and "nan" not in text
  assert float(lines["0.9"][-1]) == pytest.approx(at_diagonal, rel=1e-3)


def test_flax_task_from_an_iterable_of_batches():
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(0)
  w = rng.normal(size=(5, 1)).astype(np.float32)

  def batches():
    while True:
      x = rng.normal(size=(16, 5)).astype(np.float32)
      yield x, x @ w

  xv = rng.normal(size=(64, 5)).astype(np.float32)
  task = studies.flax_task(nn.Dense(1), optax.l2_loss, batches(), (xv, xv @ w),
                           num_batches=20, name="linear")
  assert task.num_params() == 6
  out = studies.train(task, b1=0.9, b2=0.99, learning_rate=0.05, seed=0,
                      steps=200, ema_decay=0.9, eval_every=100)
  assert float(out["val_loss"]) < 1e-2
  with pytest.raises(ValueError, match="`batch_size` is required"):
    studies.flax_task(nn.Dense(1), optax.l2_loss, (xv, xv), (xv, xv))


def test_resuming_a_user_task_with_other_data_is_refused(tmp_path):
  """The results folder's fingerprint covers a flax_task's data and model:
  same shapes, other numbers -> refused, never silently reused."""
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel

  def task_with(seed, model=None):
    model = nn.Dense(1) if model is None else model
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    return studies.flax_task(model, optax.l2_loss, (x, x[:, :1]), (x, x[:, :1]),
                             batch_size=8, name="user")

  kw = dict(b1=[0.9], b2=[0.99], learning_rates=[0.01], seeds=1, steps=5,
            eval_every=5, out_dir=str(tmp_path / "run"), progress=False,
            plots=False)
  studies.run_study(task_with(0), **kw)
  studies.run_study(task_with(0), **kw)  # same task: resumes
  with pytest.raises(ValueError, match="run"):
    studies.run_study(task_with(1), **kw)  # other data, same shapes
  with pytest.raises(ValueError, match="run"):
    studies.run_study(task_with(0, nn.Dense(1, use_bias=False)), **kw)


def _hidden_nan_task(threshold):
  """A task whose gradient turns NaN where its loss is still finite.

  loss = sum(w**2) + sum(where(w < threshold, 0, sqrt(w - threshold))): below
  the threshold the selected value is 0, but the gradient of the other branch
  is 0 * (1 / sqrt(negative)) = NaN.  (After that step the NaN update makes
  the parameters, and so the later losses, NaN too: non-finite is loud.)
  """
  def loss(params, batch):
    w = params["w"]
    return jnp.sum(w ** 2) + jnp.sum(
        jnp.where(w < threshold, 0.0, jnp.sqrt(w - threshold)))

  return studies.Task(
      name="hidden-nan", init_params=lambda key: {"w": jnp.full((3,), 1.0)},
      loss=loss, train_batch=lambda key, step: jnp.zeros(()),
      val_batch=jnp.zeros(()),
      defaults=studies.TaskDefaults(steps=20, learning_rates=(0.01, 1.0),
                                    ema_decay=0.9, eval_every=10))


def test_a_nonfinite_gradient_marks_the_run_diverged_even_with_finite_losses():
  """The gradient turns NaN once w < -0.5 (lr = 1.0 steps there, lr = 0.01
  never does): that run is diverged, and the study never tunes to its
  learning rate."""
  task = _hidden_nan_task(-0.5)
  w = jnp.full((3,), -0.6)
  assert np.isfinite(float(task.loss({"w": w}, None)))
  assert np.isnan(np.asarray(jax.grad(task.loss)({"w": w}, None)["w"])).all()
  small = studies.train(task, b1=0.9, b2=0.99, learning_rate=0.01, seed=0)
  big = studies.train(task, b1=0.9, b2=0.99, learning_rate=1.0, seed=0)
  assert not bool(small["diverged"]) and bool(big["diverged"])
  res = studies.run_study(task, b1=[0.9], b2=[0.99], seeds=1, progress=False,
                          verbose=False, plots=False)
  assert res.cells["diverged"].tolist() == [False, True]
  assert res.tuned["lr_val_loss"].tolist() == [np.float32(0.01)]
  assert "1 of 2 runs diverged" in res.summary


def test_tuning_never_picks_a_learning_rate_where_a_seed_diverged():
  cells = grid.product(b1=[0.9], b2=[0.99], lr=[0.1, 0.01], seed=[0, 1])
  cells["val_loss"] = np.float32([0.5, 0.5, 1.0, 1.0])   # lr 0.1 looks better
  cells["diverged"] = np.array([False, True, False, False])   # but a seed diverged
  t = studies.tune_learning_rate(cells, metrics=["val_loss"])
  assert t["lr_val_loss"].tolist() == [np.float32(0.01)]
  assert float(t["val_loss"][0]) == 1.0
