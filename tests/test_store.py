"""Folders you can trust: recordings and post-hoc snapshot folders (issue 21).

The one integrity design (``ftrl_adam._store``) as the recorder and the
snapshot keeper use it, defect by defect: one writer per folder (a second
one, in another process or this one, refused with the holder's pid; a killed
holder's lock gone), files bound to their role and SHA-256 (swapped, moved,
rewritten, deleted-last, truncated, crafted paths refused with one line
naming the file), errors where they happen (a keeper on a file, a failed
background write), ``like`` checked not cast, and what held: resume, files
readable by the group, stale temporaries cleaned, read-only reading, nothing
unpickled.  Results folders are in tests/test_folders.py.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import pathlib
import subprocess
import sys
import zipfile

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest

import ftrl_adam as fa
from ftrl_adam import _store
from ftrl_adam import cli

B, D = 4, 3          # record_every, monitored coordinates


def _recording(folder, rounds=10, sign=1.0, close=True):
  """Records rounds 1..T of g_t = sign * t * (1, 2, 3) through crafted
  monitor states (no training: the recorder reads count and recent)."""
  tx = fa.regret_monitor(optax.sgd(0.1), radius=1.0, b1=0.9, record_every=B)
  state = tx.init(jnp.zeros(D))
  rec = fa.RegretRecorder(folder, max_rounds=1000)
  g = sign * np.arange(1, rounds + 1, dtype=np.float32)[:, None] * np.arange(
      1, D + 1, dtype=np.float32)
  buf = np.zeros((B, D), np.float32)
  for t in range(1, rounds + 1):
    buf[(t - 1) % B] = g[t - 1]
    state = state._replace(count=jnp.int32(t), recent=jnp.asarray(buf))
    rec.update(state)
  rec.flush(state)
  if close:
    rec.close()
  return g, rec


def _manifest(folder):
  return json.loads((pathlib.Path(folder) / "manifest.json").read_text())


def _write_manifest(folder, manifest):
  (pathlib.Path(folder) / "manifest.json").write_text(json.dumps(manifest))


def _posthoc_state(step, powers=(1.0, 4.0), shape=(3,), dtype=jnp.float32):
  """A PosthocEmaState at ``step`` whose EMAs hold +-step (no training)."""
  tx = fa.posthoc_ema_params(powers=powers)
  st = tx.init({"w": jnp.zeros(shape, dtype), "b": jnp.zeros(2, dtype)})
  emas = tuple({"w": jnp.full(shape, s * step, dtype),
                "b": jnp.full(2, s * step, dtype)} for s in (1, -1))
  return st._replace(count=jnp.int32(step), emas=emas)


def _snapshots(folder, steps=(5, 10, 15, 20), **kw):
  keeper = fa.PosthocSnapshotKeeper(every=5, directory=folder)
  for s in steps:
    assert keeper.update(_posthoc_state(s, **kw))
  keeper.close()


def _one_line_error(fn, match):
  with pytest.raises(ValueError, match=match) as e:
    fn()
  assert "\n" not in str(e.value)
  return str(e.value)


# ----------------------------------------------------------------------------
# Defect 1: one writer per folder, in two processes and in one.
# ----------------------------------------------------------------------------

_HOLD = """
import sys, ftrl_adam as fa
rec = fa.RegretRecorder(sys.argv[1], max_rounds=10)
keeper = fa.PosthocSnapshotKeeper(1, sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
"""


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_frees_it(
    tmp_path):
  rec_dir, snap_dir = tmp_path / "rec", tmp_path / "snaps"
  proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(rec_dir),
                           str(snap_dir)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline().strip() == "ready"
    assert _store.holder(rec_dir) == proc.pid
    msg = _one_line_error(lambda: fa.RegretRecorder(rec_dir, max_rounds=10),
                          f"is in use: .* process {proc.pid}, holds its lock")
    assert str(rec_dir) in msg
    _one_line_error(lambda: fa.PosthocSnapshotKeeper(1, snap_dir),
                    f"process {proc.pid}")
    # a reader needs no lock
    _one_line_error(lambda: fa.recorded_gradients(rec_dir), "holds no round yet")
  finally:
    proc.kill()                      # SIGKILL: no cleanup runs in the holder
    proc.wait()
  assert _store.holder(rec_dir) is None
  _recording(rec_dir, rounds=5)      # the OS released the dead holder's lock
  fa.PosthocSnapshotKeeper(1, snap_dir).close()


def test_a_second_writer_in_the_same_process_is_refused_until_the_first_closes(
    tmp_path):
  _, rec = _recording(tmp_path, rounds=5, close=False)
  _one_line_error(lambda: fa.RegretRecorder(tmp_path, max_rounds=10),
                  rf"this process \(pid {os.getpid()}\)")
  rec.close()
  with fa.RegretRecorder(tmp_path, max_rounds=10) as again:
    assert again.rounds == 5
  with pytest.raises(ValueError, match="is closed"):
    again.update(None)


# ----------------------------------------------------------------------------
# Defects 2, 5, 10 and what held: recordings.
# ----------------------------------------------------------------------------

def test_a_recording_reads_back_its_rounds_with_group_readable_files(tmp_path):
  g, _ = _recording(tmp_path, rounds=10)
  np.testing.assert_array_equal(fa.recorded_gradients(tmp_path), g)
  m = _manifest(tmp_path)
  assert [e["role"] for e in m["files"]] == [
      {"first": 1, "last": 4}, {"first": 5, "last": 8}, {"first": 9, "last": 10}]
  umask = os.umask(0)
  os.umask(umask)
  for n in os.listdir(tmp_path):
    if not n.startswith("."):
      assert os.stat(tmp_path / n).st_mode & 0o777 == 0o666 & ~umask, n


def test_swapped_and_repointed_recording_chunks_are_refused(tmp_path, capsys):
  _recording(tmp_path / "r", rounds=8)
  a, b = (tmp_path / "r" / n for n in ("g_000000001_000000004.npz",
                                       "g_000000005_000000008.npz"))
  da, db = a.read_bytes(), b.read_bytes()
  a.write_bytes(db)
  b.write_bytes(da)
  _one_line_error(lambda: fa.recorded_gradients(tmp_path / "r"),
                  "g_000000001_000000004.npz' does not match its SHA-256")
  # the command line: exit 2, one line naming the file
  try:
    code = cli.main(["regret", "--adversaries", f"replay:{tmp_path / 'r'}",
                     "--T", "8", "--d", "3", "--no-progress", "--no-plots"])
  except SystemExit as e:
    code = e.code
  assert code == 2
  err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
  assert "Traceback" not in "".join(err)
  assert "g_000000001_000000004.npz' does not match its SHA-256" in err[-1]
  a.write_bytes(da)
  b.write_bytes(db)
  # a manifest entry pointed at the other chunk (digest and role included)
  m = _manifest(tmp_path / "r")
  m["files"][0]["file"] = m["files"][1]["file"]
  _write_manifest(tmp_path / "r", m)
  _one_line_error(lambda: fa.recorded_gradients(tmp_path / "r"),
                  "lists 'g_000000005_000000008.npz' where "
                  "'g_000000001_000000004.npz' belongs")
  m["files"][0] = dict(m["files"][1], role={"first": 1, "last": 4})
  m["files"][0]["file"] = "g_000000001_000000004.npz"
  _write_manifest(tmp_path / "r", m)
  a.write_bytes(db)                                # bytes and digest agree
  _one_line_error(lambda: fa.recorded_gradients(tmp_path / "r"),
                  r"holds the role \{'first': 5, 'last': 8\}, not")


def test_moved_missing_and_rewritten_recording_chunks_are_refused(tmp_path):
  _recording(tmp_path, rounds=8)
  last = tmp_path / "g_000000005_000000008.npz"
  last.rename(tmp_path / "g_000000009_000000012.npz")        # moved
  _one_line_error(lambda: fa.recorded_gradients(tmp_path),
                  "g_000000005_000000008.npz' .* is unreadable .missing.")
  _one_line_error(lambda: fa.RegretRecorder(tmp_path, max_rounds=100),
                  "g_000000005_000000008.npz' is listed .* but missing")
  (tmp_path / "g_000000009_000000012.npz").rename(last)
  with np.load(last) as z:                    # rewritten with other values
    arrays = {k: z[k] for k in z.files}
  arrays["g"] = arrays["g"] * 2
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  last.write_bytes(buf.getvalue())
  _one_line_error(lambda: fa.recorded_gradients(tmp_path), "does not match")
  # a writer reopening it adds nothing to it: refused before any round
  _one_line_error(lambda: fa.RegretRecorder(tmp_path, max_rounds=100),
                  "g_000000005_000000008.npz' does not match its SHA-256 .* "
                  "not added to")


@pytest.mark.parametrize("crafted", ["../x.npz", "/abs/x.npz", "sub/x.npz",
                                     ".lock", ""])
def test_crafted_manifest_paths_are_refused_before_anything_is_read(
    tmp_path, crafted):
  _recording(tmp_path / "r", rounds=4)
  outside = tmp_path / "x.npz"
  outside.write_bytes((tmp_path / "r" / "g_000000001_000000004.npz"
                       ).read_bytes())
  m = _manifest(tmp_path / "r")
  m["files"][0]["file"] = crafted
  _write_manifest(tmp_path / "r", m)
  _one_line_error(lambda: fa.recorded_gradients(tmp_path / "r"),
                  "which is not a plain name inside")


@pytest.mark.parametrize("damage", ["truncate", "flip_header", "garbage",
                                    "manifest_json", "manifest_entry",
                                    "manifest_rounds"])
def test_corrupt_recording_chunks_and_manifests_are_one_line(tmp_path, damage):
  _recording(tmp_path, rounds=8)
  chunk, man = tmp_path / "g_000000001_000000004.npz", tmp_path / "manifest.json"
  data = chunk.read_bytes()
  if damage == "truncate":
    chunk.write_bytes(data[:len(data) // 2])
  elif damage == "flip_header":
    chunk.write_bytes(data[:6] + bytes([data[6] ^ 1]) + data[7:])
  elif damage == "garbage":
    chunk.write_bytes(b"\0" * len(data))
  elif damage == "manifest_json":
    man.write_text(man.read_text()[:40])
  elif damage == "manifest_entry":
    m = _manifest(tmp_path)
    m["files"][1] = {"file": "g_000000005_000000008.npz"}
    _write_manifest(tmp_path, m)
  else:
    m = _manifest(tmp_path)
    m["rounds"] = 12
    _write_manifest(tmp_path, m)
  match = {"truncate": "does not match", "flip_header": "does not match",
           "garbage": "does not match", "manifest_json": "is unreadable",
           "manifest_entry": "mangled entry",
           "manifest_rounds": "says 12 rounds"}[damage]
  _one_line_error(lambda: fa.recorded_gradients(tmp_path), match)


def test_a_recording_of_the_previous_format_is_refused_saying_why(tmp_path):
  (tmp_path / "manifest.json").write_text(json.dumps(
      {"format": "ftrl_adam.gradient_recording", "version": 1, "d": 3,
       "rounds": 4, "max_rounds": 9, "chunks": [
           {"file": "g_000000001_000000004.npz", "first": 1, "last": 4}]}))
  _one_line_error(lambda: fa.recorded_gradients(tmp_path),
                  "format version 1, written by an earlier ftrl_adam without "
                  "content digests: it cannot be verified")


def test_a_killed_recorders_debris_is_cleaned_and_the_recording_continues(
    tmp_path):
  g, _ = _recording(tmp_path, rounds=8)
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  stale = tmp_path / f".g_000000009_000000012.npz.tmp-{dead.stdout.strip()}-0"
  stale.write_bytes(b"half a chunk")
  live = tmp_path / f".notes.txt.tmp-{os.getpid()}-99"    # a live writer's
  live.write_bytes(b"in flight")
  orphan = tmp_path / "g_000000009_000000012.npz"          # never listed
  orphan.write_bytes((tmp_path / "g_000000001_000000004.npz").read_bytes())
  np.testing.assert_array_equal(fa.recorded_gradients(tmp_path), g)  # ignored
  fa.RegretRecorder(tmp_path, max_rounds=100).close()
  assert not stale.exists() and not orphan.exists() and live.exists()
  np.testing.assert_array_equal(fa.recorded_gradients(tmp_path), g)


def test_reading_writes_nothing_and_a_writer_on_read_only_media_is_one_oserror(
    tmp_path, monkeypatch):
  g, _ = _recording(tmp_path / "r", rounds=6)
  _snapshots(tmp_path / "s")
  real_open = os.open

  def read_only(path, flags, *a, **k):
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
      raise OSError(errno.EROFS, "Read-only file system", path)
    return real_open(path, flags, *a, **k)

  before = sorted(str(p) for p in tmp_path.rglob("*"))
  monkeypatch.setattr(os, "open", read_only)
  np.testing.assert_array_equal(fa.recorded_gradients(tmp_path / "r"), g)
  assert fa.PosthocSnapshots.load(tmp_path / "s").steps == (5, 5, 10, 10, 15,
                                                            15, 20, 20)
  assert sorted(str(p) for p in tmp_path.rglob("*")) == before
  with pytest.raises(OSError, match="Read-only") as e:
    fa.RegretRecorder(tmp_path / "r", max_rounds=10)
  assert e.value.filename and str(tmp_path / "r") in e.value.filename


def test_no_pickle_is_loaded_from_a_file(tmp_path):
  _recording(tmp_path, rounds=4)
  marker = tmp_path / "executed"
  payload = np.array([_Boom(str(marker))], dtype=object)
  chunk = tmp_path / "g_000000001_000000004.npz"
  with np.load(chunk) as z:
    arrays = {k: z[k] for k in z.files}
  arrays["g"] = payload
  buf = io.BytesIO()
  np.savez(buf, **arrays)                    # pickles the object array
  chunk.write_bytes(buf.getvalue())
  m = _manifest(tmp_path)
  m["files"][0]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
  _write_manifest(tmp_path, m)
  _one_line_error(lambda: fa.recorded_gradients(tmp_path),
                  "is not a readable archive")
  assert not marker.exists()


class _Boom:
  """Creates a file when unpickled (it must never be)."""

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (pathlib.Path.touch, (pathlib.Path(self.path),))


# ----------------------------------------------------------------------------
# Defects 3, 4, 7, 8 and 11: snapshot folders.
# ----------------------------------------------------------------------------

def test_snapshot_folders_refuse_a_swapped_step_and_a_deleted_last_step(
    tmp_path):
  _snapshots(tmp_path)
  snaps = fa.PosthocSnapshots.load(tmp_path)
  assert snaps.steps == (5, 5, 10, 10, 15, 15, 20, 20)
  np.testing.assert_array_equal(snaps.params["w"][:, 0],
                                [5, -5, 10, -10, 15, -15, 20, -20])
  s10, s15 = tmp_path / "step_000000010.npz", tmp_path / "step_000000015.npz"
  keep = s10.read_bytes()
  s10.write_bytes(s15.read_bytes())                 # step 15's data as 10's
  _one_line_error(lambda: fa.PosthocSnapshots.load(tmp_path),
                  "step_000000010.npz' does not match its SHA-256")
  _one_line_error(lambda: fa.PosthocSnapshotKeeper(5, tmp_path),
                  "step_000000010.npz' does not match its SHA-256 .* not "
                  "added to")
  s10.write_bytes(keep)
  (tmp_path / "step_000000020.npz").unlink()        # the last step deleted
  _one_line_error(lambda: fa.PosthocSnapshots.load(tmp_path),
                  "step_000000020.npz' .* is unreadable .missing.")
  _one_line_error(lambda: fa.PosthocSnapshotKeeper(5, tmp_path),
                  "step_000000020.npz' is listed .* but missing")


@pytest.mark.parametrize("damage", [
    lambda leaf: leaf.pop("path"), lambda leaf: leaf.pop("shape"),
    lambda leaf: leaf.pop("dtype"), lambda leaf: leaf.update(path="b"),
    lambda leaf: leaf.update(shape=[-1])])
def test_a_snapshot_manifest_with_a_mangled_leaf_is_one_line(tmp_path, damage):
  _snapshots(tmp_path, steps=(5, 10))
  manifest = _manifest(tmp_path)
  damage(manifest["leaves"][0])      # was: KeyError 'path', or a bare unpack
  _write_manifest(tmp_path, manifest)
  for open_it in (lambda: fa.PosthocSnapshots.load(tmp_path),
                  lambda: fa.PosthocSnapshotKeeper(5, tmp_path)):
    _one_line_error(open_it, "manifest.json' has a mangled header: .* is "
                    "damaged")


def test_a_snapshot_file_without_a_steps_data_is_one_line(tmp_path):
  _snapshots(tmp_path)
  path = tmp_path / "step_000000005.npz"
  with np.load(path) as z:
    arrays = {k: z[k] for k in z.files if k != "e1_0"}
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  path.write_bytes(buf.getvalue())
  m = _manifest(tmp_path)
  m["files"][0]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
  _write_manifest(tmp_path, m)
  _one_line_error(lambda: fa.PosthocSnapshots.load(tmp_path),
                  "step_000000005.npz' holds the arrays .* expected")


@pytest.mark.parametrize("like_dtype,like_shape,match", [
    (jnp.int32, (3,), r"leaf \['w'\] of int32\[3\], not float32\[3\]"),
    (jnp.bfloat16, (3,), r"leaf \['w'\] of bfloat16\[3\], not float32\[3\]"),
    (jnp.float32, (4,), r"leaf \['w'\] of float32\[4\], not float32\[3\]"),
])
def test_like_is_checked_never_cast(tmp_path, like_dtype, like_shape, match):
  _snapshots(tmp_path)
  like = {"w": jnp.zeros(like_shape, like_dtype), "b": jnp.zeros(2)}
  _one_line_error(lambda: fa.PosthocSnapshots.load(tmp_path, like=like),
                  "do not restore into `like`: it has " + match)
  good = {"w": jnp.zeros(3), "b": jnp.zeros(2)}
  snaps = fa.PosthocSnapshots.load(tmp_path, like=good)
  assert snaps.params["w"].dtype == np.float32
  keeper = fa.PosthocSnapshotKeeper(every=5)          # memory: the same check
  keeper.update(_posthoc_state(5))
  _one_line_error(lambda: keeper.snapshots(like=like), "`like`: it has " + match)


def test_bfloat16_snapshots_round_trip_in_their_dtype(tmp_path):
  _snapshots(tmp_path, dtype=jnp.bfloat16)
  snaps = fa.PosthocSnapshots.load(tmp_path, like={
      "w": jnp.zeros(3, jnp.bfloat16), "b": jnp.zeros(2, jnp.bfloat16)})
  assert snaps.params["w"].dtype == ml_dtypes.bfloat16
  np.testing.assert_array_equal(snaps.params["w"][:, 0].astype(np.float32),
                                [5, -5, 10, -10, 15, -15, 20, -20])


def test_a_keeper_on_a_file_is_refused_at_construction(tmp_path):
  f = tmp_path / "file"
  f.write_text("x")
  _one_line_error(lambda: fa.PosthocSnapshotKeeper(5, f),
                  "exists and is not a folder")
  _one_line_error(lambda: fa.RegretRecorder(f, max_rounds=5),
                  "exists and is not a folder")


def test_an_orbax_folder_of_the_previous_version_is_refused_saying_why(
    tmp_path):
  for step in (5, 10):
    (tmp_path / str(step) / "emas").mkdir(parents=True)
    (tmp_path / str(step) / "meta").mkdir()
  for fn in (lambda: fa.PosthocSnapshots.load(tmp_path),
             lambda: fa.PosthocSnapshotKeeper(5, tmp_path)):
    _one_line_error(fn, "holds Orbax checkpoints .* written by an earlier "
                        "ftrl_adam")


def test_a_failed_background_write_raises_at_the_next_call_and_steps_are_on_disk(
    tmp_path, monkeypatch):
  real = _store.atomic_write

  def full_at_step_10(path, data):
    if os.path.basename(path) == "step_000000010.npz":
      raise OSError(errno.ENOSPC, "No space left on device", path)
    return real(path, data)

  monkeypatch.setattr(_store, "atomic_write", full_at_step_10)
  keeper = fa.PosthocSnapshotKeeper(every=5, directory=tmp_path)
  assert keeper.update(_posthoc_state(5))
  assert keeper.update(_posthoc_state(10))       # handed to the writer thread
  with pytest.raises(OSError, match=r"the snapshot of step 10 could not be "
                     r"written .*No space left on device.*holds the steps \[5\]"
                     ) as e:
    keeper.update(_posthoc_state(15))
  assert e.value.errno == errno.ENOSPC
  assert keeper.steps == (5,)
  assert [f["role"]["step"] for f in _manifest(tmp_path)["files"]] == [5]
  assert not (tmp_path / "step_000000010.npz").exists()
  assert [n for n in os.listdir(tmp_path) if ".tmp-" in n] == []
  assert keeper.update(_posthoc_state(15))       # the disk has room again
  assert keeper.steps == (5, 15)
  keeper.close()
  assert fa.PosthocSnapshots.load(tmp_path).steps == (5, 5, 15, 15)


_EXIT_WITH_WRITES_IN_FLIGHT = """
import errno, sys, time, jax.numpy as jnp, ftrl_adam as fa
from ftrl_adam import _store
real = _store.atomic_write
def full_or_slow(path, data):
  if "/failing/" in path:
    raise OSError(errno.ENOSPC, "No space left on device", path)
  time.sleep(0.5)
  return real(path, data)
tx = fa.posthoc_ema_params()
st = tx.init({"w": jnp.zeros(2)})._replace(count=jnp.int32(1))
failing = fa.PosthocSnapshotKeeper(1, sys.argv[1] + "/failing")
slow = fa.PosthocSnapshotKeeper(1, sys.argv[1] + "/slow")
_store.atomic_write = full_or_slow
failing.update(st)
slow.update(st)
print("exiting", flush=True)
"""


def test_nothing_hangs_at_exit_and_the_write_in_flight_completes(tmp_path):
  out = subprocess.run([sys.executable, "-c", _EXIT_WITH_WRITES_IN_FLIGHT,
                        str(tmp_path)], capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 0 and out.stdout.strip() == "exiting", out.stderr
  assert _store.holder(tmp_path / "slow") is None
  assert fa.PosthocSnapshots.load(tmp_path / "slow").steps == (1, 1)
  with pytest.raises(ValueError, match="holds none"):
    fa.PosthocSnapshots.load(tmp_path / "failing")


def test_a_keeper_resumes_a_folder_and_refuses_other_powers(tmp_path):
  _snapshots(tmp_path, steps=(5, 10))
  keeper = fa.PosthocSnapshotKeeper(5, tmp_path)
  assert keeper.steps == (5, 10)
  assert not keeper.update(_posthoc_state(10))
  assert keeper.update(_posthoc_state(15))
  with pytest.raises(ValueError, match="The EMA powers changed at step 20"):
    keeper.update(_posthoc_state(20, powers=(1.0, 5.0)))
  keeper.close()
  assert fa.PosthocSnapshots.load(tmp_path).steps == (5, 5, 10, 10, 15, 15)


@pytest.mark.parametrize("bad", ["0.07", ["0.05", 0.1], b"0.07"])
def test_sigma_rel_must_be_a_number(bad):
  snaps = fa.PosthocSnapshots.from_trees(
      [10, 10], [3.0, 7.0], [{"w": np.ones(2)}, {"w": np.zeros(2)}])
  _one_line_error(lambda: fa.posthoc_ema(snaps, bad), "must be a float")


# ----------------------------------------------------------------------------
# The store's own pieces.
# ----------------------------------------------------------------------------

def test_atomic_write_leaves_no_temporary_on_failure_and_names_the_path(
    tmp_path, monkeypatch):
  real = os.fsync

  def fail(fd):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(os, "fsync", fail)
  with pytest.raises(OSError) as e:
    _store.atomic_write(str(tmp_path / "f.bin"), b"data")
  assert e.value.errno == errno.ENOSPC and e.value.filename == str(
      tmp_path / "f.bin")
  assert os.listdir(tmp_path) == []
  monkeypatch.setattr(os, "fsync", real)
  digest = _store.atomic_write(str(tmp_path / "f.bin"), b"data")
  assert digest == hashlib.sha256(b"data").hexdigest()
  assert (tmp_path / "f.bin").read_bytes() == b"data"


def test_plain_names():
  assert _store.is_plain_name("chunk_000001.npz")
  for bad in ("", ".", "..", "../x", "/x", "a/b", "a\\b", ".lock", "a\0b",
              None, 3):
    assert not _store.is_plain_name(bad), bad


def test_an_archive_holds_its_role_and_no_reserved_names(tmp_path):
  entry = _store.save_arrays(str(tmp_path), "a.npz", {"x": np.arange(3)},
                             {"index": 1})
  with zipfile.ZipFile(tmp_path / "a.npz") as z:
    assert sorted(z.namelist()) == ["__meta__.npy", "x.npy"]
  got = _store.load_arrays(str(tmp_path), entry, name="a.npz",
                           role={"index": 1}, keys=("x",))
  np.testing.assert_array_equal(got["x"], np.arange(3))
  with pytest.raises(ValueError, match="gives it the role"):
    _store.load_arrays(str(tmp_path), entry, name="a.npz", role={"index": 2})
  with pytest.raises(ValueError, match="reserved"):
    _store.npz_bytes({"__meta__": np.zeros(1)}, {})
