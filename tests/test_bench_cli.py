"""`ftrl-adam bench`: each benchmark runs from the CLI, prints a table naming the
device, and writes its JSON where --out says (tiny sizes; no timing is asserted)."""

import json

import pytest

from ftrl_adam import cli


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
])
def test_bench_subcommand_writes_json_naming_the_device(
    name, args, check, tmp_path, capsys):
  assert cli.main(["bench", name, *args, "--out", str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert "cpu" in out.lower()  # the device is named in the printed output
  (path,) = tmp_path.glob(f"{name}-*.json")
  data = json.loads(path.read_text())
  assert data["device"]["platform"] == "cpu"
  assert check(data)


def test_bench_rejects_unknown_benchmark(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["bench", "nope"])
  assert e.value.code == 2
  assert "invalid choice: 'nope'" in capsys.readouterr().err
