"""The beta-grid (ftrl_adam.regret.study) and the ``ftrl-adam regret`` command.

Specification by equivalence, as in test_grid_engine.py:

* a grid cell is the single game (``regret.game`` compiled alone with
  ``grid.compiler_options()``) bit for bit;
* the same command on 8 simulated CPU devices (a subprocess) writes the same
  CSV, byte for byte, as on one device;
* an interrupted run, started again, computes only the missing chunks and
  writes the same CSV as an uninterrupted one;
* folders of other runs, damaged folders and foreign folders are refused with
  a clear message; bad options fail, naming the option, before anything is
  compiled; the CLI end to end writes the documented files.

Grids are tiny (compilation dominates); T and d are small.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ftrl_adam import cli
from ftrl_adam import grid
from ftrl_adam import regret
from ftrl_adam.lab.protocol import Result
from ftrl_adam.regret import study

T, D = 120, 3
SMALL = dict(b1=[0.5, 0.9], b2="log1m:0.25:0.99:3", seeds=2, T=T, d=D,
             radius="0.5,1", chunk_size=5)


def _csv_rows(path):
  with open(path, newline="") as f:
    return list(csv.reader(f))


class _Stop(Exception):
  pass


# ----------------------------------------------------------------------------
# A cell is the single game.
# ----------------------------------------------------------------------------

def _single_game(adversary, T_=T, d=D):
  def single(b1, b2, radius, c, seed):
    adv = {"switch": lambda: regret.switch(1.0, b1, b2, 1.0),
           "alternating": lambda: regret.alternating(1.0),
           "gaussian": lambda: regret.gaussian(1.0),
           "oppose": lambda: regret.oppose(1.0)}[adversary]() if isinstance(
               adversary, str) else adversary
    horizon = None
    if adversary == "switch":
      big_l, k = regret.bounds.switch_lengths(b1, b2, 1.0)
      horizon = jnp.minimum(big_l + k, T_)
    return regret.game(b1, b2, radius=radius, c=c, T=T_, d=d, adversary=adv,
                       key=jax.random.key(seed), horizon=horizon)
  return single


@pytest.mark.parametrize("adversary,rate", [("switch", "c"),
                                            ("gaussian", "lr"),
                                            ("oppose", "c")])
@pytest.mark.parametrize("reproducible", [True, False])
def test_grid_cell_equals_single_game(adversary, rate, reproducible):
  """Shared streams (gaussian, switch) and per-cell games (oppose) alike.

  With reproducible=True every cell is the single game compiled with
  grid.compiler_options() bit for bit; by default it equals the single game
  to float32 rounding (<= 1e-6 relative).
  """
  kw = dict(SMALL, adversaries=[adversary])
  kw.update(c=[0.3, 1.0] if rate == "c" else None,
            lr=[0.05, 0.2] if rate == "lr" else None)
  spec = regret.beta_grid(**kw)
  res = regret.run_beta_grid(spec, progress=False, reproducible=reproducible)
  t = res.table
  # deterministic adversaries play once per learner cell, not once per seed
  seeds = 2 if adversary == "gaussian" else 1
  assert len(t["b1"]) == spec.n_games == 2 * 3 * 2 * 2 * seeds
  assert t["stochastic"].tolist() == [adversary == "gaussian"] * len(t["b1"])
  opts = grid.compiler_options() if reproducible else None
  single = jax.jit(_single_game(adversary), compiler_options=opts)
  for i in (0, 7, 13, len(t["b1"]) - 1):
    # c and lr: one is the axis, the other derived (in float32)
    np.testing.assert_allclose(
        t["c"][i], t["lr"][i] * (1 - t["b1"][i]) / np.sqrt(1 - t["b2"][i]),
        rtol=1e-6)
    ref = single(t["b1"][i], t["b2"][i], t["radius"][i], t["c"][i],
                 t["seed"][i])
    for ours, theirs in (("regret", ref.regret_box),
                         ("max_regret", ref.max_regret_box),
                         ("bound", ref.bound), ("bound_d4", ref.bound_d4)):
      if reproducible:
        assert np.asarray(theirs).tobytes() == t[ours][i].tobytes(), (
            adversary, i, ours, float(theirs), float(t[ours][i]))
      else:
        np.testing.assert_allclose(t[ours][i], theirs, rtol=1e-6, atol=1e-6,
                                   err_msg=f"{adversary} {i} {ours}")
    assert t["horizon"][i] == (T if adversary != "switch" else min(
        T, sum(int(x) for x in regret.bounds.switch_lengths(
            t["b1"][i], t["b2"][i]))))


def test_summary_finds_the_best_b2_next_to_b1_squared():
  b1 = np.repeat(np.float32([0.5, 0.9]), 6)
  b2 = np.tile(np.repeat(np.float32([0.25, 0.5, 0.81]), 2), 2)
  seed = np.tile(np.int32([0, 1]), 6)
  regret_v = (np.abs(np.log(1 - b2) - np.log(1 - b1 ** 2)) + 1 + seed).astype(
      np.float32)
  table = {"adversary": np.full(12, "switch"), "b1": b1, "b2": b2,
           "radius": np.ones(12, np.float32), "c": np.ones(12, np.float32),
           "seed": seed, "regret": regret_v,
           "regret_over_bound": regret_v / 10,
           "regret_over_minimax": regret_v}
  spec = regret.beta_grid(b1=[0.5, 0.9], b2=[0.25, 0.5, 0.81],
                          adversaries="switch")
  rows = spec.summarize(table)
  assert [r["adversary"] for r in rows] == ["switch", "switch"]
  assert [r["best_b2"] for r in rows] == [0.25, np.float32(0.81)]
  assert rows[0]["best"] == 1.5          # mean over the two seeds
  assert rows[1]["b2_near_b1_squared"] == np.float32(0.81)
  assert rows[1]["worst_regret_over_bound"] == pytest.approx(
      float(regret_v[(b1 == np.float32(0.9))].max()) / 10)


def test_the_summary_shows_no_ratio_to_a_best_regret_that_is_not_positive():
  # A ratio to a best regret <= 0 means nothing: '-' and a line saying why
  # (it printed 'nan', which reads as a diverged run).
  b1 = np.repeat(np.float32([0.5, 0.9]), 6)
  b2 = np.tile(np.repeat(np.float32([0.25, 0.5, 0.81]), 2), 2)
  regret_v = np.where(b1 == np.float32(0.5), -1.0 - b2, 1.0 + b2).astype(
      np.float32)
  table = {"adversary": np.full(12, "gaussian"), "b1": b1, "b2": b2,
           "radius": np.ones(12, np.float32), "c": np.ones(12, np.float32),
           "seed": np.tile(np.int32([0, 1]), 6), "regret": regret_v,
           "regret_over_bound": regret_v / 10,
           "regret_over_minimax": regret_v,
           "nonfinite_round": np.zeros(12, np.int32)}
  spec = regret.beta_grid(b1=[0.5, 0.9], b2=[0.25, 0.5, 0.81],
                          adversaries="gaussian")
  text = spec.format_summary(Result(spec, table, {}, spec.summarize(table),
                                    {"wall": 1.0, "compute": 0.5}, {}))
  lines = text.splitlines()
  header = next(i for i, ln in enumerate(lines) if "at b1^2 / best" in ln)
  row_05, row_09 = lines[header + 1].split(), lines[header + 2].split()
  assert row_05[0] == "0.5" and row_05[-2] == "-", text
  assert row_09[0] == "0.9" and row_09[-2] == "1.448", text   # 1.81 / 1.25
  assert "nan" not in text
  assert ("  - at b1^2 / best: the best regret is not positive, so a ratio to "
          "it means nothing.") in lines
  # Regrets that are not finite (diverged games) stay 'nan', without that line.
  table["regret"] = np.where(b1 == np.float32(0.5), np.nan, regret_v).astype(
      np.float32)
  text = spec.format_summary(Result(spec, table, {}, spec.summarize(table),
                                    {"wall": 1.0, "compute": 0.5}, {}))
  lines = text.splitlines()
  assert lines[header + 1].split()[-2] == "nan", text
  assert "not positive" not in text


# ----------------------------------------------------------------------------
# The command line: end to end, 8 devices, resume, refusals, bad options.
# ----------------------------------------------------------------------------

QUICK_FILES = ["ratio_gaussian.png", "ratio_switch.png", "regret_gaussian.png",
               "regret_switch.png", "regret_worst.png", "results.csv",
               "run.json", "summary.txt"]


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_cli_end_to_end_and_on_eight_devices(tmp_path, capsys):
  """In process on 1 device, and as `python -m ftrl_adam.cli` on 8.

  The subprocess also goes through --distributed (jax.distributed with one
  process).  Bit-identity across device counts (batch shapes) is the
  --reproducible mode's promise, so both runs use it.
  """
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=(
      os.environ.get("XLA_FLAGS", "") +
      " --xla_force_host_platform_device_count=8").strip())
  eight = tmp_path / "eight"
  proc = subprocess.Popen(
      [sys.executable, "-m", "ftrl_adam.cli", "regret", "--quick",
       "--chunk-size", "5", "--no-plots", "--reproducible", "--out",
       str(eight),
       "--distributed", "--coordinator", f"localhost:{_free_port()}",
       "--num-processes", "1", "--process-id", "0"],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    one = tmp_path / "one"
    devices = jax.device_count()
    assert cli.main(["regret", "--quick", "--chunk-size", "5",
                     "--reproducible", "--out", str(one)]) == 0
    printed = capsys.readouterr()
    # cli.main called in a running program leaves its devices (the command
    # `ftrl-adam` splits the CPU: test_the_command_uses_one_device_per_core)
    assert jax.device_count() == devices
    stdout, stderr = proc.communicate(timeout=240)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, stderr[-3000:]

  # files exist and parse; the CSV has the documented columns
  assert sorted(os.listdir(one)) == sorted(
      QUICK_FILES + ["grid_gaussian", "grid_switch"])
  rows = _csv_rows(one / "results.csv")
  assert tuple(rows[0]) == regret.BETA_GRID_COLUMNS
  spec = regret.beta_grid(b1=study.QUICK["b1"], b2=study.QUICK["b2"],
                          seeds=2, adversaries="switch,gaussian")
  # switch is deterministic: once per (b1, b2); gaussian: per seed
  assert len(rows) - 1 == spec.n_games == 3 * 3 + 3 * 3 * 2
  body = np.array(rows[1:], dtype=object)
  cols = {name: body[:, j] for j, name in enumerate(rows[0])}
  assert set(cols["adversary"]) == {"switch", "gaussian"}
  for name in rows[0][3:]:         # after adversary, stochastic, domain
    values = cols[name].astype(np.float64)
    assert np.isfinite(values).all(), name
  assert (cols["regret_over_bound"].astype(float) <= 1).all()     # D3
  np.testing.assert_array_equal(cols["c"], cols["radius"])        # c = D
  run = json.loads((one / "run.json").read_text())
  assert run["status"] == "complete" and run["format"] == study.FORMAT
  assert run["config"]["T"] == 300 and run["config"]["chunk_size"] == 5
  assert run["versions"]["jax"] == jax.__version__
  assert run["config"]["reproducible"] is True
  assert {r["adversary"] for r in run["summary"]} == {"switch", "gaussian",
                                                     "worst"}
  assert run["seconds"]["compute"] > 0
  for png in [n for n in QUICK_FILES if n.endswith(".png")]:
    assert (one / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert "best b2" in printed.out and "worst (max over adversaries" in (
      printed.out)
  assert (one / "summary.txt").read_text().strip() in printed.out.strip()
  assert "beta-grid: 27 cells" in printed.err     # the size, first
  assert "chunk 2/2" in printed.err       # the progress lines

  # 8 devices: the same table, byte for byte
  assert (eight / "results.csv").read_bytes() == (
      one / "results.csv").read_bytes()
  run8 = json.loads((eight / "run.json").read_text())
  assert run8["versions"]["device_count"] == 8
  assert "best b2" in stdout and "8 device(s)" in stderr

  # The same arguments in the fast (default) mode are another run: refused,
  # never mixed with the reproducible one.
  assert cli.main(["regret", "--quick", "--chunk-size", "5", "--out", str(one),
                   "--no-progress", "--no-plots"]) == 2
  assert "different beta-grid" in capsys.readouterr().err


def test_interrupted_run_resumes_to_the_identical_table(tmp_path):
  # switch: 6 learner cells, one deterministic stream -> 1 chunk;
  # gaussian: 2 seeds x 6 learner cells, a chunk holds one seed's group -> 2
  spec = regret.beta_grid(**dict(SMALL, adversaries="switch,gaussian",
                                 radius=1.0))
  whole = regret.run_beta_grid(spec, out_dir=tmp_path / "whole",
                               progress=False)
  folder = tmp_path / "run"
  computed = []

  def stop_after_two(info):
    computed.append(info.index)
    if len(computed) == 2:
      raise _Stop

  with pytest.raises(_Stop):
    regret.run_beta_grid(spec, out_dir=folder, progress=False,
                         on_chunk=stop_after_two)
  assert computed == [0, 0]                  # switch done, gaussian chunk 0
  assert json.loads((folder / "run.json").read_text())["status"] == (
      "interrupted")
  assert not (folder / "results.csv").exists()
  assert sorted(os.listdir(folder / "grid_gaussian")) == [
      "chunk_000000.npz", "manifest.json"]

  computed.clear()
  again = regret.run_beta_grid(spec, out_dir=folder, progress=False,
                               on_chunk=lambda info: computed.append(info.index))
  assert computed == [1]                      # only what was missing
  assert (folder / "results.csv").read_bytes() == (
      tmp_path / "whole" / "results.csv").read_bytes()
  for k in regret.BETA_GRID_COLUMNS:
    assert again.table[k].tobytes() == whole.table[k].tobytes(), k

  # the same arguments through the CLI resume (nothing left to compute)
  assert cli.main(["regret", "--b1", "0.5,0.9", "--b2", "log1m:0.25:0.99:3",
                   "--seeds", "2", "--T", str(T), "--d", str(D), "--radius",
                   "1", "--adversaries", "switch,gaussian", "--chunk-size",
                   "5", "--out", str(folder), "--no-plots",
                   "--no-progress"]) == 0
  assert (folder / "results.csv").read_bytes() == (
      tmp_path / "whole" / "results.csv").read_bytes()


def _quick(folder, *extra):
  return cli.main(["regret", "--quick", "--adversaries", "switch", "--T",
                   "40", "--no-plots", "--no-progress", "--out", str(folder),
                   *extra])


def test_foreign_corrupt_and_changed_folders_are_refused(tmp_path, capsys):
  foreign = tmp_path / "home"
  foreign.mkdir()
  (foreign / "thesis.tex").write_text("precious")
  for extra in ((), ("--overwrite",)):
    assert _quick(foreign, *extra) == 2
    err = capsys.readouterr().err
    assert "is not a beta-grid results folder" in err and "thesis.tex" in err
  assert os.listdir(foreign) == ["thesis.tex"]

  folder = tmp_path / "run"
  assert _quick(folder) == 0
  csv_before = (folder / "results.csv").read_bytes()
  capsys.readouterr()

  assert _quick(folder, "--d", "3") == 2          # changed arguments
  err = capsys.readouterr().err
  assert "different beta-grid" in err and "--d: 4 -> 3" in err
  assert "--overwrite" in err and "--out" in err
  assert "To resume it, give the values it was run with" in err

  chunk = folder / "grid_switch" / "chunk_000000.npz"
  good = chunk.read_bytes()
  chunk.write_bytes(good[: len(good) // 2])        # a damaged chunk
  json_before = (folder / "run.json").read_bytes()
  assert _quick(folder) == 2
  err = capsys.readouterr().err
  assert "chunk_000000.npz" in err and "corrupt" in err and "Delete it" in err
  # refused, not interrupted: run.json says what it said before
  assert (folder / "run.json").read_bytes() == json_before
  chunk.write_bytes(good)

  run_json = folder / "run.json"
  text = run_json.read_text()
  run_json.write_text(text[:40])                   # a damaged run.json
  assert _quick(folder) == 2
  assert "unreadable" in capsys.readouterr().err
  run_json.write_text(json.dumps({"format": "something else"}))
  assert _quick(folder) == 2
  assert "not the run.json of a beta-grid" in capsys.readouterr().err
  run_json.write_text(text)

  assert _quick(folder) == 0                       # intact again: resumes
  assert (folder / "results.csv").read_bytes() == csv_before
  (folder / "notes.txt").write_text("mine")
  assert _quick(folder, "--d", "3", "--overwrite") == 0
  assert (folder / "notes.txt").read_text() == "mine"
  assert json.loads(run_json.read_text())["config"]["d"] == 3


@pytest.mark.parametrize("argv,match", [
    (["--b1", "0,0.9"], "--b1 values must lie in (0, 1)"),
    (["--b2", "0.9,1.0"], "--b2 values must lie in (0, 1)"),
    (["--b2", "0.999999999"], "--b2 values must lie in (0, 1) (as float32)"),
    (["--b1", "log1m:0.5:0.9"], "--b1: Cannot parse axis"),
    (["--seeds", "0"], "--seeds must be a number of seeds"),
    (["--seeds", "1,1"], "--seeds has duplicates"),
    (["--seeds", "2.0"], "--seeds must be a number of seeds (an integer >= 1: seeds 0..n-1) or a list of integer seeds such as 3,7"),
    (["--seeds", "1e0"], "--seeds must be a number of seeds (an integer >= 1: seeds 0..n-1) or a list of integer seeds such as 3,7"),
    (["--adversaries", "switch,nope"], "--adversaries: unknown adversary 'nope'"),
    (["--T", "0"], "--T must be an integer >= 1"),
    (["--T", "ten"], "argument --T: invalid int value"),
    (["--d", "-1"], "--d must be an integer >= 1"),
    (["--radius", "0"], "--radius values must lie in (0, inf)"),
    (["--c", "-1"], "--c values must lie in (0, inf)"),
    (["--lrs", "0.1,nan"], "--lrs values must lie in (0, inf)"),
    (["--c", "1", "--lrs", "0.1"], "Give --c or --lrs"),
    (["--G", "0"], "--G must be a finite number > 0"),
    (["--kappa", "inf"], "--kappa must be a finite number > 0"),
    (["--domain", "sphere"], "argument --domain: invalid choice"),
    (["--method", "parallel", "--adversaries", "switch,oppose"],
     "--adversaries oppose are adaptive; use --method 'sequential'"),
    (["--chunk-size", "0"], "--chunk-size must be an integer >= 1"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--process-id", "1"], "--process-id need --distributed"),
    (["--distributed", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be in 0..num-processes-1"),
])
def test_bad_options_fail_before_compilation(argv, match, capsys, monkeypatch,
                                             tmp_path):
  def no_run(*args, **kwargs):
    raise AssertionError("run_beta_grid was called for bad options")

  monkeypatch.setattr(study, "run_beta_grid", no_run)
  with pytest.raises(SystemExit) as e:
    cli.main(["regret", "--out", str(tmp_path / "never"), *argv])
  assert e.value.code == 2
  assert match in capsys.readouterr().err
  assert not (tmp_path / "never").exists()


def test_help_documents_every_option_and_bare_command_prints_help(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["regret", "--help"])
  assert e.value.code == 0
  text = " ".join(capsys.readouterr().out.split())
  for action in cli.build_parser()._subparsers._group_actions[0].choices[  # pylint: disable=protected-access
      "regret"]._actions:
    for flag in action.option_strings:
      assert flag in text
    assert action.help, action.option_strings
  for o in regret.BETA_GRID_OPTIONS:       # flags and defaults from the spec
    assert o.cli_flag in text
    if o.default is not None:
      assert str(o.default) in text
  for value in study.QUICK.values():
    assert str(value) in text
  assert cli.main([]) == 0
  assert "regret" in capsys.readouterr().out
  assert cli.main(["demo", "--steps", "3"]) == 0
  assert "final loss" in capsys.readouterr().out


def test_learning_rate_and_radius_axes(tmp_path, capsys):
  out = tmp_path / "lrs"
  assert cli.main(["regret", "--b1", "0.9", "--b2", "0.81,0.99", "--seeds",
                   "1", "--T", "50", "--d", "2", "--adversaries",
                   "alternating", "--radius", "0.5,1", "--lrs", "0.01,0.1",
                   "--no-progress", "--out", str(out)]) == 0
  rows = _csv_rows(out / "results.csv")
  body = {name: np.array([r[j] for r in rows[1:]])
          for j, name in enumerate(rows[0])}
  assert len(rows) - 1 == 2 * 2 * 2
  assert sorted(set(body["lr"].tolist())) == ["0.01", "0.1"]
  lr, b1, b2 = (body[k].astype(np.float64) for k in ("lr", "b1", "b2"))
  np.testing.assert_allclose(body["c"].astype(float),
                             lr * (1 - b1) / np.sqrt(1 - b2), rtol=1e-5)
  names = os.listdir(out)
  for r in ("0.5", "1"):
    for lr_text in ("0.01", "0.1"):
      assert f"regret_alternating_radius={r}_lr={lr_text}.png" in names
  printed = capsys.readouterr().out
  assert "alternating, D=0.5, lr=0.01" in printed


def test_the_command_uses_one_device_per_core(tmp_path):
  # `ftrl-adam` (cli.run) splits the CPU into one XLA device per core before
  # JAX starts (a tiny grid: the device count is the property); cli.main
  # called in a running program leaves its devices (checked in
  # test_cli_end_to_end_and_on_eight_devices).
  env = {k: v for k, v in os.environ.items()
         if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
  env["JAX_PLATFORMS"] = "cpu"
  proc = subprocess.run(
      [sys.executable, "-m", "ftrl_adam.cli", "regret", "--b1", "0.5",
       "--b2", "0.9", "--seeds", "1", "--T", "20", "--d", "1",
       "--adversaries", "alternating", "--no-plots", "--out",
       str(tmp_path / "run")],
      env=env, capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stderr[-3000:]
  cores = len(os.sched_getaffinity(0))
  assert f"on {cores} device(s)" in proc.stderr
