"""What a user can get wrong on the command line: one line, an exit status.

File-system errors and interrupts name the path or option and what to do
(exit 2; Ctrl-C: 130) with no traceback and nothing half-written; bad options
of every subcommand exit 2; benchmarks never write into the committed
results unless asked.
"""

from __future__ import annotations

import errno
import json
import os
import pstats
import subprocess
import sys

import pytest

from ftrl_adam import cli
from ftrl_adam import grid

TINY = ["regret", "--b1", "0.5,0.9", "--b2", "0.5,0.99", "--seeds", "1",
        "--T", "20", "--d", "2", "--adversaries", "alternating",
        "--no-progress", "--no-plots"]


def _one_line(err):
  lines = [ln for ln in err.splitlines() if ln.strip()]
  assert "Traceback" not in err, err
  return lines[-1]


def test_version(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["--version"])
  assert e.value.code == 0
  assert capsys.readouterr().out.startswith("ftrl-adam ")


_PROGRAM = """
import atexit, sys, threading
atexit.register(lambda: print("atexit ran", flush=True))
done = threading.Event()
if sys.argv[1] == "thread":   # a thread of the caller's still running
  threading.Thread(target=done.wait, args=(60,)).start()
from ftrl_adam.lab.cli import run
status = run(sys.argv[2:])
done.set()
print("run returned", status, flush=True)
sys.exit(status)
"""


@pytest.mark.parametrize("argv,status", [
    (["--version"], 0), (["--bogus"], 2), (["regret", "--T", "0"], 2)])
@pytest.mark.parametrize("mode", ["alone", "thread"])
def test_the_program_exits_with_its_status_output_and_atexit(argv, status,
                                                              mode):
  # run() ends the process itself (no interpreter teardown) once the command
  # is done, after the atexit handlers and with every line out; with another
  # thread running it returns the status instead.
  proc = subprocess.run([sys.executable, "-c", _PROGRAM, mode, *argv],
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == status, proc.stderr
  lines = proc.stdout.splitlines()
  assert lines[-1] == "atexit ran"
  assert ("run returned %d" % status in lines) == (mode == "thread")
  if argv == ["--version"]:
    assert lines[0].startswith("ftrl-adam ")
  else:
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_a_profiled_program_leaves_its_profile(tmp_path):
  # Under a profiler the program returns instead of ending the process, so
  # that `python -m cProfile -o FILE` writes FILE.
  out = tmp_path / "cli.prof"
  proc = subprocess.run(
      [sys.executable, "-m", "cProfile", "-o", str(out), "-m",
       "ftrl_adam.lab.cli", "--version"],
      capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith("ftrl-adam ")
  stats = pstats.Stats(str(out))
  assert any(name == "run" for _, _, name in stats.stats), "no run() in profile"


def test_a_reader_that_goes_away_is_not_a_folder_error(tmp_path):
  # ftrl-adam regret | head: the results are written; the closed pipe is
  # neither blamed on --out nor a traceback (status 1, as Python advises).
  out = tmp_path / "run"
  proc = subprocess.Popen(
      [sys.executable, "-c", "import sys; from ftrl_adam.lab.cli import run; "
       "sys.exit(run(sys.argv[1:]))", *TINY, "--out", str(out)],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  proc.stdout.close()   # the reader is gone before the first line
  err = proc.stderr.read()
  assert proc.wait(timeout=120) == 1, err
  assert "error" not in err and "Traceback" not in err, err
  assert json.loads((out / "run.json").read_text())["status"] == "complete"
  assert (out / "results.csv").exists() and (out / "summary.txt").exists()


def test_unwritable_out_is_one_line_naming_the_path(tmp_path, monkeypatch,
                                                     capsys):
  out = tmp_path / "ro"
  real = os.makedirs

  def deny(path, *a, **k):
    if os.fspath(path).startswith(os.fspath(out)):
      raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
    return real(path, *a, **k)

  monkeypatch.setattr(os, "makedirs", deny)
  assert cli.main([*TINY, "--out", str(out)]) == 2
  line = _one_line(capsys.readouterr().err)
  assert "permission denied" in line and str(out) in line and "--out" in line


def test_full_disk_is_one_line_and_the_run_resumes(tmp_path, monkeypatch,
                                                    capsys):
  out = tmp_path / "full"
  from ftrl_adam import _store
  real = _store.atomic_write

  def full(path, data):          # the disk fills up at the first chunk
    if os.path.basename(path).startswith("chunk_"):
      raise OSError(errno.ENOSPC, "No space left on device", path)
    return real(path, data)

  monkeypatch.setattr(_store, "atomic_write", full)
  assert cli.main([*TINY, "--out", str(out)]) == 2
  line = _one_line(capsys.readouterr().err)
  assert "the disk is full" in line and "--out" in line
  run = json.loads((out / "run.json").read_text())
  assert run["status"] == "interrupted"
  assert not (out / "results.csv").exists()        # nothing half-written
  monkeypatch.setattr(_store, "atomic_write", real)
  assert cli.main([*TINY, "--out", str(out)]) == 0  # the same command goes on
  assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_ctrl_c_exits_130_with_how_to_resume(tmp_path, monkeypatch, capsys):
  out = tmp_path / "int"

  def interrupt(*a, **k):
    raise KeyboardInterrupt

  monkeypatch.setattr(grid, "run_grid", interrupt)
  assert cli.main([*TINY, "--out", str(out)]) == 130
  line = _one_line(capsys.readouterr().err)
  assert "interrupted" in line and "run the same command again" in line
  assert json.loads((out / "run.json").read_text())["status"] == "interrupted"


@pytest.mark.parametrize("argv,match", [
    (["demo", "--steps", "0"], "--steps must be >= 1"),
    (["demo", "--b1", "1.5"], "--b1"),
    (["demo", "--lr", "-1"], "--lr"),
    (["demo", "--radius", "-1"], "--radius"),
    (["bench", "grid", "--cells", "3"], "--cells: must be multiples of 16"),
    (["bench", "grid", "--workloads", "gaussian"], "ADVERSARY:D"),
    (["bench", "grid", "--workloads", "nope:4"], "unknown adversary 'nope'"),
    (["bench", "study", "--ks", "0"], "--ks: must be an integer >= 1"),
    (["bench", "study", "--halving", "--tasks", "rosenbrock"],
     "--tasks with --halving"),
    (["bench", "step", "--sizes", "0"], "--sizes: must be an integer >= 1"),
    (["bench", "step", "--min-time", "-1"], "--min-time: must be >= 0"),
    (["bench", "step", "--models", "--sizes"], "nothing to time"),
    (["regret", "--b1", "0.9,0.9"], "--b1 has duplicate values"),
    (["regret", "--b1", "0.9,,0.99"], "empty item"),
    (["regret", "--adversaries", "switch,switch"], "duplicate names"),
    (["study", "--b2", "0.9,0.9"], "--b2 has duplicate values"),
])
def test_bad_options_exit_2_with_one_line(argv, match, capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(argv)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert match in _one_line(err), err


def test_help_has_no_argparse_artefacts(capsys):
  for sub in ("regret", "study", "demo"):
    with pytest.raises(SystemExit):
      cli.main([sub, "--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "(default: [])" not in text
  # every option of a benchmark has help text
  for name, helps in (("step", ("parameter counts", "the median over rounds")),
                      ("grid", ("games per workload", "median is")),
                      ("study", ("built-in tasks", "numbers K", "median is"))):
    with pytest.raises(SystemExit):
      cli.main(["bench", name, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for h in helps + ("./bench-results",):
      assert h in text, (name, h)


def test_bench_in_a_checkout_leaves_the_committed_results_alone(
    tmp_path, monkeypatch, capsys):
  repo = tmp_path / "checkout"
  (repo / "benchmarks" / "results").mkdir(parents=True)
  subprocess.run(["git", "init", "-q", str(repo)], check=True)
  monkeypatch.chdir(repo)
  # (the array size of test_bench_cli.py's step run: the session's
  # compilation cache shares its programs)
  assert cli.main(["bench", "step", "--models", "--sizes", "4096",
                   "--repeats", "1", "--rounds", "1", "--min-time", "0"]) == 0
  assert os.listdir(repo / "benchmarks" / "results") == []
  assert len(list((repo / "bench-results").glob("step-*.json"))) == 1
  ignored = open(os.path.join(os.path.dirname(__file__), "..",
                              ".gitignore")).read().split()
  assert "/bench-results/" in ignored


def test_a_folder_of_the_previous_results_format_is_refused_saying_why(
    tmp_path, capsys):
  out = tmp_path / "old"
  assert cli.main([*TINY, "--out", str(out)]) == 0
  meta = json.loads((out / "run.json").read_text())
  meta["format_version"] = 2          # as version 0.1.0 wrote it
  (out / "run.json").write_text(json.dumps(meta))
  capsys.readouterr()
  assert cli.main([*TINY, "--out", str(out)]) == 2
  line = _one_line(capsys.readouterr().err)
  assert "earlier ftrl_adam (results format 2" in line
  assert "--overwrite" in line and "--out" in line
  assert cli.main([*TINY, "--out", str(out), "--overwrite"]) == 0
