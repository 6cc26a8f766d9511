"""Folders you can trust: results folders of the engine and the runner (issue 21).

One run per folder: a second run (another process) is refused with one line
naming the holder's pid and leaves the first run's files alone; a run killed
with SIGKILL leaves ``run.json`` "running" with no holder, which
``run_status`` calls "stopped without finishing" and the next call resumes
to the same bytes.  Every chunk is bound to its role and SHA-256 in the
manifest: one rewritten with other well-formed values, or with a flipped
bit in its zip header, is refused with one line naming it; a folder of the
previous results format is refused saying why.  The command line's messages
name the flag a user would change.  (Recordings and snapshot folders:
tests/test_store.py.)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import types

import jax.numpy as jnp
import numpy as np
import pytest

from ftrl_adam import _store
from ftrl_adam import cli
from ftrl_adam import grid
from ftrl_adam.lab import experiment
from ftrl_adam.lab.cli import _common
from ftrl_adam.regret import study

# One part, two chunks (a chunk holds one seed's shared stream).
TINY = ["regret", "--b1", "0.5,0.9", "--b2", "0.5,0.99", "--seeds", "2",
        "--T", "20", "--d", "2", "--adversaries", "gaussian", "--no-plots"]


def _cell(cell):
  return {"y": cell["x"] * 2.0, "z": jnp.stack([cell["x"], -cell["x"]])}


def _run(folder, **kw):
  kw.setdefault("chunk_size", 2)
  return grid.run_grid(_cell, grid.product(x=[1.0, 2.0, 3.0, 4.0, 5.0]),
                       out_dir=folder, config={"t": 1}, progress=False, **kw)


def _err_line(capsys):
  err = capsys.readouterr().err
  assert "Traceback" not in err, err
  return [ln for ln in err.splitlines() if ln.strip()][-1]


def _main(argv):
  try:
    return cli.main(argv)
  except SystemExit as e:     # argparse's errors
    return e.code


# ----------------------------------------------------------------------------
# Defects 9 and 11: one run per folder; a killed run is told from a live one.
# ----------------------------------------------------------------------------

_HOLD_AFTER_THE_FIRST_CHUNK = """
import sys
from ftrl_adam import cli
from ftrl_adam.lab import engine
real = engine.run_grid
def hold(info):
  print("ready", flush=True)
  sys.stdin.readline()
def run_grid(*a, **k):
  return real(*a, **dict(k, on_chunk=hold))
engine.run_grid = run_grid
sys.exit(cli.main(sys.argv[2:] + ["--no-progress", "--out", sys.argv[1]]))
"""


def test_a_second_run_is_refused_and_a_killed_run_resumes_to_the_same_bytes(
    tmp_path, capsys):
  out, fresh = tmp_path / "out", tmp_path / "fresh"
  assert _main([*TINY, "--no-progress", "--out", str(fresh)]) == 0
  capsys.readouterr()
  proc = subprocess.Popen(
      [sys.executable, "-c", _HOLD_AFTER_THE_FIRST_CHUNK, str(out), *TINY],
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline().strip() == "ready"
    assert experiment.run_status(out) == f"running (pid {proc.pid})"
    part = out / "grid_gaussian"
    in_flight = part / f".chunk_000001.npz.tmp-{proc.pid}-7"
    in_flight.write_bytes(b"the first run's chunk being written")
    assert _main([*TINY, "--no-progress", "--out", str(out)]) == 2
    line = _err_line(capsys)
    assert f"is in use: another beta-grid results folder writer, process " \
           f"{proc.pid}" in line and str(out) in line
    with pytest.raises(grid.ResultsFolderError, match=f"process {proc.pid}"):
      grid.run_grid(_cell, grid.product(x=[1.0]), out_dir=part, chunk_size=1,
                    progress=False)
    assert in_flight.exists()       # the refused run deleted nothing
  finally:
    proc.kill()                     # SIGKILL: run.json stays "running"
    proc.wait()
  assert json.loads((out / "run.json").read_text())["status"] == "running"
  assert experiment.run_status(out) == "stopped without finishing"
  assert _main([*TINY, "--out", str(out)]) == 0
  assert "resuming" in capsys.readouterr().err
  run = json.loads((out / "run.json").read_text())
  assert run["status"] == "complete"
  assert run["previous_run"].startswith("stopped without finishing")
  assert experiment.run_status(out) == "complete"
  assert not in_flight.exists()     # a dead writer's temporary is cleaned
  assert (out / "results.csv").read_bytes() == (
      fresh / "results.csv").read_bytes()
  assert not (out / ".lock").exists()


# ----------------------------------------------------------------------------
# Defects 6 and 10: chunks bound to their role and digest.
# ----------------------------------------------------------------------------

def test_a_chunk_rewritten_with_other_well_formed_values_is_refused(tmp_path):
  folder = tmp_path / "run"
  ref = _run(folder)
  chunk = folder / "chunk_000001.npz"
  with np.load(chunk) as z:
    arrays = {k: z[k] for k in z.files}
  arrays["y"] = arrays["y"] * 2                # same role, shapes, dtypes
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  chunk.write_bytes(buf.getvalue())
  with pytest.raises(grid.ResultsFolderError) as e:
    _run(folder)
  msg = str(e.value)
  assert "chunk_000001.npz' does not match its SHA-256" in msg
  assert "\n" not in msg and "Delete it to recompute" in msg
  chunk.unlink()                               # deleted: recomputed
  out = _run(folder)
  np.testing.assert_array_equal(out["y"], ref["y"])


def test_a_swap_of_two_chunks_is_refused_and_a_deleted_chunk_recomputed(
    tmp_path):
  folder = tmp_path / "run"
  ref = _run(folder)
  a, b = folder / "chunk_000000.npz", folder / "chunk_000001.npz"
  da, db = a.read_bytes(), b.read_bytes()
  a.write_bytes(db)
  b.write_bytes(da)
  with pytest.raises(grid.ResultsFolderError, match="chunk_000000.npz' does "
                     "not match"):
    _run(folder)
  a.write_bytes(da)
  b.write_bytes(db)
  (folder / "chunk_000002.npz").unlink()       # the last chunk deleted
  computed = []
  out = _run(folder, on_chunk=lambda info: computed.append(info.index))
  assert computed == [2]        # results are recomputed, never guessed
  np.testing.assert_array_equal(out["y"], ref["y"])


def test_a_results_folder_of_the_previous_format_is_refused_saying_why(
    tmp_path):
  folder = tmp_path / "run"
  _run(folder)
  manifest = json.loads((folder / "manifest.json").read_text())
  manifest["format_version"] = 2
  del manifest["files"]
  (folder / "manifest.json").write_text(json.dumps(manifest))
  with pytest.raises(grid.ResultsFolderError, match=r"written by an earlier "
                     r"ftrl_adam \(results format 2, chunks without content "
                     r"digests\): it cannot be verified"):
    _run(folder)
  _run(folder, overwrite=True)                 # overwrite starts afresh


def test_an_unlisted_chunk_of_a_killed_run_is_recomputed_not_trusted(tmp_path):
  folder = tmp_path / "run"
  ref = _run(folder)
  manifest = json.loads((folder / "manifest.json").read_text())
  manifest["files"] = manifest["files"][:1]    # killed before listing 1, 2
  (folder / "manifest.json").write_text(json.dumps(manifest))
  (folder / "chunk_000001.npz").write_bytes(b"whatever a crash left")
  computed = []
  out = _run(folder, on_chunk=lambda info: computed.append(info.index))
  assert computed == [1, 2]
  np.testing.assert_array_equal(out["z"], ref["z"])


# ----------------------------------------------------------------------------
# Defect 11: the command line's words.
# ----------------------------------------------------------------------------

def test_another_chunk_size_names_the_flag(tmp_path):
  _run(tmp_path / "run", chunk_size=2)
  with pytest.raises(grid.ResultsFolderError) as e:
    _run(tmp_path / "run", chunk_size=3)
  words = _common.words_for(study.BETA_GRID_OPTIONS)(str(e.value))
  assert "give --chunk-size 2 to resume" in words
  assert "chunk_size=" not in words


def test_damaged_results_folders_are_one_line_from_the_cli_naming_the_flag(
    tmp_path, capsys):
  out = tmp_path / "out"
  one = [*TINY, "--no-progress", "--out", str(out)]
  assert _main(one) == 0
  capsys.readouterr()
  part = out / "grid_gaussian"
  # a flipped bit in a chunk's zip header (was: "File '...' is encrypted")
  chunk = part / "chunk_000000.npz"
  good = chunk.read_bytes()
  chunk.write_bytes(good[:6] + bytes([good[6] ^ 1]) + good[7:])
  assert _main(one) == 2
  line = _err_line(capsys)
  assert f"{str(chunk)!r} does not match its SHA-256" in line
  assert "Delete it to recompute that chunk, or pick a new (or empty) --out" \
      not in line and "Delete it to recompute that chunk" in line
  chunk.write_bytes(good)
  # a grid folder without its manifest is named, not called "the --out"
  manifest = (part / "manifest.json").read_bytes()
  (part / "manifest.json").unlink()
  (part / "notes.txt").write_text("mine")
  assert _main(one) == 2
  line = _err_line(capsys)
  assert f"{str(part)!r} is not a grid results folder" in line
  assert f"--out {str(part)!r}" not in line and "out_dir" not in line
  (part / "notes.txt").unlink()
  (part / "manifest.json").write_bytes(manifest)
  # --overwrite and a grid folder that is a symbolic link (was: "OSError")
  elsewhere = tmp_path / "elsewhere"
  part.rename(elsewhere)
  os.symlink(elsewhere, part)
  assert _main([*one, "--overwrite"]) == 2
  line = _err_line(capsys)
  assert f"{str(part)!r} is a symbolic link" in line
  assert "--overwrite does not delete it" in line
  assert (elsewhere / "manifest.json").exists()
  # ... nor resumed: nothing read from it or written through it
  (elsewhere / "chunk_000000.npz").unlink()
  before = sorted(p.name for p in elsewhere.iterdir())
  assert _main(one) == 2
  line = _err_line(capsys)
  assert f"{str(part)!r} is a symbolic link" in line
  assert "neither trusted nor written through it" in line
  assert sorted(p.name for p in elsewhere.iterdir()) == before
  shutil.rmtree(elsewhere)                           # a dangling link
  assert _main(one) == 2
  assert f"{str(part)!r} is a symbolic link" in _err_line(capsys)


@pytest.mark.parametrize("key", ["fingerprint", "n_chunks", "chunk_size"])
def test_a_manifest_without_a_key_it_resumes_by_is_one_line(tmp_path, capsys,
                                                             key):
  out = tmp_path / "out"
  one = [*TINY, "--no-progress", "--no-plots", "--out", str(out)]
  assert _main(one) == 0
  capsys.readouterr()
  path = out / "grid_gaussian" / "manifest.json"
  manifest = json.loads(path.read_text())
  del manifest[key]                   # was: KeyError, a traceback, exit 1
  path.write_text(json.dumps(manifest))
  assert _main(one) == 2
  line = _err_line(capsys)
  assert f"{str(path)!r} has no valid {key!r}" in line and "damaged" in line


def test_an_oserror_without_errno_is_reported_by_its_text(capsys):
  def fail():
    raise OSError("Cannot call rmtree on a symbolic link")

  parser = argparse.ArgumentParser(prog="ftrl-adam regret")
  assert _common.run_guarded(parser, fail, lambda m: m, out="out") == 2
  line = _err_line(capsys)
  assert line == ("ftrl-adam regret: error: cannot write 'out': Cannot call "
                  "rmtree on a symbolic link. Choose another --out (finished "
                  "chunks already written are kept and resumed).")


def test_the_lock_file_names_its_holder_and_is_gone_after_release(tmp_path):
  lock = _store.FolderLock(str(tmp_path), "test folder")
  assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
  assert _store.holder(tmp_path) == os.getpid()
  lock.release()
  assert _store.holder(tmp_path) is None and not (tmp_path / ".lock").exists()


def test_a_resumed_run_says_how_the_previous_one_ended(capsys):
  spec = types.SimpleNamespace(WHAT="beta-grid")
  for status, how, said in (
      ("interrupted", "interrupted", "was interrupted"),
      ("running", "stopped without finishing (killed, or its disk full)",
       "stopped without finishing (killed, or its disk full)")):
    assert experiment._previous(spec, "OUT", {"status": status}, True) == {
        "previous_run": how}
    assert capsys.readouterr().err == (
        f"beta-grid: resuming OUT: the previous run {said}.\n")
  assert experiment._previous(spec, "OUT", {"status": "complete"}, True) == {}
