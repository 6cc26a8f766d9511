"""`ftrl-adam bench`: each benchmark is a subcommand of the one CLI; it runs,
prints a table naming the device, and writes its JSON where --out says and
nowhere else (tiny sizes; no timing is asserted).  Its module is imported only
when its subcommand is parsed, and ``benchmarks/NAME.py`` is the same command."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from ftrl_adam import cli
from ftrl_adam.lab.cli import bench

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name,args,check", [
    ("step", ["--models", "small", "--sizes", "4096", "--repeats", "2",
              "--rounds", "2", "--min-time", "0"],
     lambda d: {r["optimizer"] for r in d["results"]}
     == {"optax.adam", "ftrl_adam", "ftrl_adam box", "+ ema_params",
         "+ monitor (4096 coords)"}
     and [t["tree"] for t in d["table"]] == [
         "model small: 33 leaves, 0.26M", "array: 3 leaves, 0.0041M"]
     and len(d["table"][0]["monitor / ftrl_adam"]["rounds"]) == 2),
    ("grid", ["--cells", "16", "--T", "20", "--workloads", "switch:1",
              "gaussian:2", "--repeats", "1"],
     lambda d: {r["path"] for r in d["results"]} == {
         "(a) loop", "(b) grid", "(b0) per-cell grid (0.1.0)"}),
    ("study", ["--tasks", "quadratic", "--ks", "2", "--steps", "20",
               "--repeats", "1"],
     lambda d: d["tasks"][0]["results"][0]["k"] == 2),
    ("kernels", ["--steps", "3"],
     lambda d: d["monitor_kernels_us"] and set(d["gather_from_n_arrays_us"])
     == {"1", "2", "4", "8"}),
])
def test_bench_subcommand_writes_json_naming_the_device_in_out_only(
    name, args, check, tmp_path, monkeypatch, capsys):
  out, cwd = tmp_path / "out", tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  assert cli.main(["bench", name, *args, "--out", str(out)]) == 0
  printed = capsys.readouterr().out
  assert "cpu" in printed.lower()  # the device is named in the printed output
  (path,) = out.iterdir()          # one file, no temporary left beside it
  assert path.name.startswith(f"{name}-") and path.suffix == ".json"
  assert os.listdir(cwd) == []     # nothing in ./bench-results or elsewhere
  data = json.loads(path.read_text())
  assert data["device"]["platform"] == "cpu"
  assert check(data)


def test_bench_help_lists_the_benchmarks_with_one_line_each(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["bench", "--help"])
  assert e.value.code == 0
  text = " ".join(capsys.readouterr().out.split())
  for name, help_text in bench.BENCHMARKS.items():
    assert f"{name} {help_text}" in text


def test_bench_step_help_lists_its_options(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["bench", "step", "--help"])
  assert e.value.code == 0
  text = capsys.readouterr().out
  assert text.startswith("usage: ftrl-adam bench step ")
  for option in ("--models", "--sizes", "--repeats", "--rounds", "--min-time",
                 "--monitor-coords", "--monitor-leaves", "--out"):
    assert f"\n  {option} " in text, option


@pytest.mark.parametrize("name", sorted(bench.BENCHMARKS))
def test_an_unknown_bench_option_exits_2_with_one_line_naming_it(name, capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["bench", name, "--bogus-option", "1"])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert "Traceback" not in err
  assert err.splitlines()[-1] == (f"ftrl-adam bench {name}: error: "
                                  f"unrecognized arguments: --bogus-option 1")


def test_bench_rejects_unknown_benchmark(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["bench", "nope"])
  assert e.value.code == 2
  assert "invalid choice: 'nope'" in capsys.readouterr().err


# In a fresh process: which benchmark modules each help imports.
_FRESH = r"""
import contextlib, io, json, sys
from ftrl_adam import cli

said = {}
for argv in (["--help"], ["bench", "--help"], ["bench", "step", "--help"]):
  with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    cli.main(argv)
  said[" ".join(argv)] = sorted(m.rsplit(".", 1)[1] for m in sys.modules
                                if m.startswith("ftrl_adam.lab.cli.bench."))
print(json.dumps(said))
"""


def test_benchmarks_are_imported_only_when_run_and_the_scripts_are_the_cli():
  ran = subprocess.run([sys.executable, "-c", _FRESH], capture_output=True,
                       text=True, cwd=ROOT, check=True)
  said = json.loads(ran.stdout)
  assert said["--help"] == [] and said["bench --help"] == []
  assert said["bench step --help"] == ["_common", "step"]
  # benchmarks/step.py with a bad option: the CLI's one line, exit 2.
  script = subprocess.run([sys.executable, "benchmarks/step.py", "--sizes", "0"],
                          capture_output=True, text=True, cwd=ROOT)
  assert script.returncode == 2, script.stderr
  assert script.stderr.splitlines()[-1] == (
      "ftrl-adam bench step: error: argument --sizes: must be an integer >= 1, "
      "got '0'")
