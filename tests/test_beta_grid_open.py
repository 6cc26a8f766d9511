"""An open, safe beta-grid: your adversaries, refused-before-allocated, 2 processes.

* user oblivious and adaptive adversaries run through ``beta_grid`` (as
  objects) and the CLI (as ``module:attribute``), every cell equal to
  ``regret.game`` with the same adversary and seed to float32 rounding;
* a changed user adversary never resumes old chunks;
* a grid too big for the machine is refused in seconds, with one line, exit
  status 2, little memory and nothing written;
* two ``jax.distributed`` processes on 127.0.0.1 write the table of one.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ftrl_adam import cli
from ftrl_adam import grid
from ftrl_adam import regret

T, D = 80, 3
AXES = dict(b1=[0.5, 0.9], b2=[0.25, 0.81, 0.99], seeds=2, T=T, d=D)


def _drift(scale):
  """An oblivious user adversary: a drift plus noise from the round's key."""
  def fn(t, key, d):
    return (scale * jnp.cos(0.1 * t) * jnp.ones((d,), jnp.float32)
            + 0.5 * jax.random.normal(key, (d,), jnp.float32))
  return regret.oblivious(fn, name="drift")


def _push():
  """An adaptive user adversary: pushes against the learner's iterate."""
  def fn(t, key, play, w):
    return jnp.where(w + play >= 0, 1.0, -1.0).astype(jnp.float32)
  return regret.adaptive(fn, w0=0.3, name="push")


def _assert_cells_equal_games(table, name, adversary):
  sel = np.flatnonzero(table["adversary"] == name)
  assert len(sel) == 2 * 3 * 2
  for i in sel[[0, 5, 7, len(sel) - 1]]:
    ref = regret.game(table["b1"][i], table["b2"][i], radius=1.0,
                      c=table["c"][i], T=T, d=D, adversary=adversary,
                      key=jax.random.key(int(table["seed"][i])))
    for ours, theirs in (("regret", ref.regret_box), ("bound", ref.bound),
                         ("max_regret", ref.max_regret_box)):
      np.testing.assert_allclose(table[ours][i], theirs, rtol=1e-6,
                                 atol=1e-6, err_msg=f"{name} {i} {ours}")


def test_user_oblivious_and_adaptive_adversaries_in_the_grid():
  spec = regret.beta_grid(**AXES, adversaries=["switch", _drift(1.0),
                                               _push()])
  assert spec.names == ("switch", "drift", "push")
  res = regret.run_beta_grid(spec, progress=False)
  t = res.table
  _assert_cells_equal_games(t, "drift", _drift(1.0))
  _assert_cells_equal_games(t, "push", _push())
  assert (t["regret_over_bound"] <= 1).all()           # D3 holds for yours too
  # the summary has a block per adversary and the worst case over them
  assert {r["adversary"] for r in res.summary} == {"switch", "drift", "push",
                                                   "worst"}
  assert "drift (mean regret over 2 seed(s))" in res.text


def test_changed_user_code_is_never_resumed(tmp_path):
  out = tmp_path / "run"
  spec = regret.beta_grid(**AXES, adversaries=[_drift(1.0)])
  regret.run_beta_grid(spec, out_dir=out, progress=False, plots=False)
  # the same code and values: a resume
  regret.run_beta_grid(regret.beta_grid(**AXES, adversaries=[_drift(1.0)]),
                       out_dir=out, progress=False, plots=False)
  # another value in the closure, same name: refused, never mixed
  with pytest.raises(grid.ResultsFolderError, match="adversary_identity"):
    regret.run_beta_grid(regret.beta_grid(**AXES, adversaries=[_drift(2.0)]),
                         out_dir=out, progress=False, plots=False)


def test_cli_takes_your_adversary_as_module_attribute(tmp_path, monkeypatch,
                                                       capsys):
  (tmp_path / "my_adversaries.py").write_text(textwrap.dedent("""
      import jax.numpy as jnp
      from ftrl_adam import regret

      def _fn(t, key, d):
        return jnp.where(t % 3 == 0, 1.0, -0.5) * jnp.ones((d,), jnp.float32)

      thirds = regret.oblivious(_fn, name="thirds")

      def make():
        return regret.oblivious(_fn, name="thirds_made")

      # each wrong in one way (the grid must not broadcast or cast them)
      as_int = regret.oblivious(lambda t, key, d: jnp.ones((d,), jnp.int32),
                                name="as_int")
      scalar = regret.oblivious(lambda t, key, d: jnp.float32(1.0),
                                name="scalar")
      shape = regret.oblivious(lambda t, key, d: jnp.ones((3,), jnp.float32),
                               name="shape")
      nan = regret.oblivious(lambda t, key, d: jnp.full((d,), jnp.nan),
                             name="nan")
      def _boom(t, key, d):
        raise ZeroDivisionError("no")
      boom = regret.oblivious(_boom, name="boom")
      """))
  monkeypatch.syspath_prepend(str(tmp_path))
  out = tmp_path / "out"
  argv = ["regret", "--b1", "0.5,0.9", "--b2", "0.25,0.99", "--seeds", "2",
          "--T", "40", "--d", "2", "--adversaries",
          "alternating,my_adversaries:thirds,my_adversaries:make",
          "--no-progress", "--no-plots", "--out", str(out)]
  assert cli.main(argv) == 0
  printed = capsys.readouterr().out
  assert "thirds (mean regret over 2 seed(s))" in printed
  assert "thirds_made" in printed
  text = (out / "results.csv").read_text()
  assert text.count("\nthirds,") == 2 * 2 * 2
  assert text.count("\nalternating,") == 2 * 2      # deterministic: once
  # a path that does not import: one line naming the option, exit 2
  bad = argv[:-3] + ["--out", str(tmp_path / "bad")]
  bad[bad.index("--adversaries") + 1] = "my_adversaries:nope"
  with pytest.raises(SystemExit) as e:
    cli.main(bad)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert "--adversaries" in err and "my_adversaries:nope" in err
  assert "Traceback" not in err
  # an output of the wrong kind: one line naming the adversary, exit 2
  for name, why in (("as_int", "got int32[2]"), ("scalar", "got float32[]"),
                    ("shape", "got float32[3]"), ("nan", "non-finite"),
                    ("boom", "ZeroDivisionError: no")):
    bad[bad.index("--adversaries") + 1] = f"my_adversaries:{name}"
    with pytest.raises(SystemExit) as e:
      cli.main(bad)
    assert e.value.code == 2, name
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"'{name}'" in err and why in err, err


def test_impossible_grid_is_refused_before_it_allocates(tmp_path):
  out = tmp_path / "huge"
  before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  t0 = time.perf_counter()
  proc = subprocess.run(
      [sys.executable, "-m", "ftrl_adam.cli", "regret", "--b1",
       "lin:0.01:0.99:10000", "--b2", "lin:0.01:0.99:10000", "--seeds",
       "1000", "--out", str(out)], capture_output=True, text=True,
      timeout=120)
  seconds = time.perf_counter() - t0
  peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
  assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
  assert "too big for this machine" in lines[0]
  assert "--b1" in lines[0] and "--seeds" in lines[0]
  assert not out.exists()                       # nothing written
  assert seconds < 20
  assert max(peak_kib, before) < 2 * 1024 * 1024   # < 2 GB (ru_maxrss: KiB)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_write_the_table_of_one(tmp_path):
  args = ["regret", "--quick", "--T", "60", "--chunk-size", "4",
          "--no-plots", "--no-progress"]
  one = tmp_path / "one"
  assert cli.main([*args, "--out", str(one)]) == 0
  port = _free_port()
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  two = tmp_path / "two"
  # Output to files: one process blocked on a full pipe that is not being
  # read would block the other in their collectives.
  logs = [tmp_path / f"process{i}.log" for i in range(2)]
  procs = [subprocess.Popen(
      [sys.executable, "-m", "ftrl_adam.cli", *args, "--out", str(two),
       "--distributed", "--coordinator", f"127.0.0.1:{port}",
       "--num-processes", "2", "--process-id", str(i)],
      env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
      for i, log in enumerate(logs)]
  try:
    for p in procs:
      p.wait(timeout=300)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, log in zip(procs, logs, strict=True):
    assert p.returncode == 0, log.read_text()[-3000:]
  assert (two / "results.csv").read_bytes() == (one / "results.csv").read_bytes()


def test_worst_case_search_in_the_grid_and_the_cli(tmp_path, capsys):
  """--adversaries worst: each cell is the search alone, >= the constructions
  played in the same run, <= D3; the CLI run reuses the compiled search."""
  from ftrl_adam.regret import worst
  kw = dict(b1=[0.5, 0.9], b2=[0.25, 0.81, 0.99], seeds=1, T=60, d=1,
            search_restarts=2, search_steps=8)
  spec = regret.beta_grid(**kw, adversaries="switch,alternating,worst")
  assert spec.names == ("switch", "alternating", "worst_case")
  t = regret.run_beta_grid(spec, progress=False).table
  w = t["adversary"] == "worst_case"
  assert w.sum() == 6 and (t["search_steps"][w] == 8).all()
  assert (t["search_steps"][~w] == -1).all()
  assert (t["regret"][w] <= t["bound"][w] * (1 + 1e-6)).all()       # D3
  for name in ("switch", "alternating"):
    assert (t["regret"][w] >= t["regret"][t["adversary"] == name]
            - 1e-5).all()
  one = jax.jit(worst.worst_case_cell_fn(T=60, restarts=2, steps=8))
  i = int(np.flatnonzero(w)[4])
  ref = one({"b1": t["b1"][i], "b2": t["b2"][i], "radius": t["radius"][i],
             "c": t["c"][i], "seed": t["seed"][i]})
  np.testing.assert_allclose(t["regret"][i], ref["worst_regret"], rtol=1e-6)
  # (d > 1 is the 1-D sequence tiled: tests/test_worst_case.py)
  # the CLI: a heatmap of the worst case, a summary block, budget columns
  out = tmp_path / "wc"
  assert cli.main(["regret", "--b1", "0.5,0.9", "--b2", "0.25,0.81,0.99",
                   "--seeds", "1", "--T", "60", "--d", "1", "--adversaries",
                   "switch,alternating,worst", "--search-restarts", "2",
                   "--search-steps", "8", "--no-progress", "--out",
                   str(out)]) == 0
  printed = capsys.readouterr().out
  assert "worst_case (the worst sequence per cell, searched: 2 restarts x 8" \
      in printed
  assert (out / "regret_worst_case.png").exists()
  header = (out / "results.csv").read_text().splitlines()[0].split(",")
  assert header[-6:] == list(regret.cells.WORST_COLUMNS)
  with pytest.raises(SystemExit):
    cli.main(["regret", "--adversaries", "worst", "--domain", "ball",
              "--out", str(tmp_path / "x")])
  assert "box domain" in capsys.readouterr().err


def test_a_sequence_shorter_than_T_is_refused():
  seq = regret.from_array(np.ones((50, 2), np.float32))
  with pytest.raises(ValueError, match=r"`T` = 100 is longer than the 50 "
                                       r"rounds of adversary"):
    regret.beta_grid(b1=[0.9], b2=[0.99], seeds=1, T=100, d=2,
                     adversaries=[seq])
  spec = regret.beta_grid(b1=[0.9], b2=[0.99], seeds=1, T=30, d=2,
                          adversaries=[seq])           # the first 30 rounds
  t = regret.run_beta_grid(spec, progress=False).table
  assert (t["nonfinite_round"] == 0).all()
