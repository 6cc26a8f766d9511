"""The grid engine (ftrl_adam.grid), its results folders and its plots.

Specification by equivalence: the engine's table equals, bit for bit, a plain
``jax.jit(jax.vmap(cell_fn))`` over the whole table, a ``jax.jit(cell_fn)``
call per cell, the same grid on 8 (simulated) devices, other chunk sizes, and
an interrupted-then-resumed run.  Then the folder rules: a changed run, a
corrupt chunk and a foreign folder are refused.  Kept small: compilation
dominates, so cells are tiny and expensive programs are compiled once.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ftrl_adam as fa
from ftrl_adam import grid
from ftrl_adam import plots

# ----------------------------------------------------------------------------
# Cell functions (module level: the 8-device subprocess imports this file).
# ----------------------------------------------------------------------------

D, N, T = 8, 16, 30


def train_table():
  """3 b1 x 3 b2 x 2 seeds x 2 learning rates x 2 radii = 72 cells."""
  return grid.product(b1=[0.0, 0.9, 0.99],
                      b2=grid.logspace_one_minus(0.9, 0.999, 3),
                      seed=grid.seeds(2), lr=[0.01, 0.1], radius=[0.005, 1.0])


def train_cell(cell):
  """Least squares fitted by ftrl_adam under lax.scan; b1, b2, lr, radius traced.

  Contractions are written as sums of products (see the grid module doc: a
  small unbatched dot and a batched one do not round alike).
  """
  kx, kw, kn = jax.random.split(grid.key_from_seed(cell["seed"]), 3)
  x = jax.random.normal(kx, (N, D))
  y = jnp.sum(x * jax.random.normal(kw, (D,)), axis=1)
  y = y + 0.1 * jax.random.normal(kn, (N,))
  tx = fa.ftrl_adam(cell["lr"], cell["b1"], cell["b2"], radius=cell["radius"])

  def loss_fn(w):
    r = jnp.sum(x * w, axis=1) - y
    return jnp.mean(r ** 2) + 1e-3 * jax.nn.logsumexp(w)

  def step(carry, _):
    w, state = carry
    loss, g = jax.value_and_grad(loss_fn)(w)
    u, state = tx.update(g, state, w)
    return (optax.apply_updates(w, u), state), loss

  w0 = jnp.zeros(D)
  (w, state), losses = jax.lax.scan(step, (w0, tx.init(w0)), None, length=T)
  return {"final_loss": losses[-1], "mean_loss": jnp.mean(losses), "w": w,
          "max_nu": jnp.max(state[0].nu)}


def sums_table():
  return grid.product(scale=grid.linspace(0.5, 2.0, 5), seed=grid.seeds(8))


def sums_cell(cell):
  """Reductions big enough that XLA:CPU's YNNPACK fusion would take them when
  many cells share a device (the engine turns that off; module doc)."""
  x = jax.random.uniform(grid.key_from_seed(cell["seed"]), (48, 32))
  x = x * cell["scale"]
  return {"rows": jnp.sum(x, axis=1)[:4], "cols": jnp.sum(x, axis=0)[:4],
          "total": jnp.sum(x), "lse": jax.nn.logsumexp(x)}


def dot_table():
  return grid.product(b1=grid.linspace(0.1, 0.9, 3), seed=grid.seeds(8))


def dot_cell(cell):
  """Real contractions: bit-stable across chunk sizes and device counts in the
  engine (never one cell per device), though not vs an unbatched jit.

  Measured (jax 0.10, CPU): with one cell per device, or as one jit(dot_cell)
  call, ``xtr`` differs from the batched grid in about half its entries.
  """
  k1, k2 = jax.random.split(grid.key_from_seed(cell["seed"]))
  x = jax.random.uniform(k1, (24, 8), minval=-1.0)
  r = jax.random.uniform(k2, (24,), minval=-1.0) * cell["b1"]
  return {"xtr": x.T @ r, "gram": jnp.trace(x.T @ x)}


def cheap_table():
  return grid.product(b1=[0.0, 0.5, 0.9], b2=[0.9, 0.99], seed=grid.seeds(2))


def cheap_cell(cell):
  u = jax.random.uniform(grid.key_from_seed(cell["seed"]), (5,))
  return {"s": jnp.sum(u * cell["b1"]) + cell["b2"],
          "v": u * cell["b2"],
          "n": cell["seed"] * 2}


CHEAP_CONFIG = {"task": "cheap", "T": 5}


# ----------------------------------------------------------------------------
# Helpers.
# ----------------------------------------------------------------------------

def assert_bitwise_equal(a, b, names=None):
  names = names if names is not None else sorted(set(a) | set(b))
  for k in names:
    x, y = np.asarray(a[k]), np.asarray(b[k])
    assert x.dtype == y.dtype and x.shape == y.shape, (k, x.dtype, x.shape,
                                                       y.dtype, y.shape)
    if x.tobytes() != y.tobytes():
      bad = np.flatnonzero(x.reshape(len(x), -1) != y.reshape(len(y), -1))
      raise AssertionError(f"{k!r} differs at {bad.size} places, e.g. "
                           f"{x.reshape(-1)[bad[:3]]} vs {y.reshape(-1)[bad[:3]]}")


def plain_vmap(cell_fn, table):
  """The reference: one unchunked, unsharded jit(vmap) over the whole table."""
  fn = jax.jit(jax.vmap(cell_fn), compiler_options=grid.compiler_options())
  return jax.tree.map(np.asarray, fn({k: jnp.asarray(v) for k, v in table.items()}))


@functools.cache
def reference(name):
  """plain_vmap of the named cell function over its table, computed once."""
  cell_fn, table_fn = {"train": (train_cell, train_table),
                       "sums": (sums_cell, sums_table),
                       "dot": (dot_cell, dot_table)}[name]
  return table_fn(), plain_vmap(cell_fn, table_fn())


def result_names(out, table):
  return [k for k in out if k not in table]


# ----------------------------------------------------------------------------
# Axes and tables.
# ----------------------------------------------------------------------------

def test_axes_and_product():
  b = grid.logspace_one_minus(0.9, 0.9999, 4)
  assert b[0] == 0.9 and b[-1] == 0.9999
  np.testing.assert_allclose(np.diff(np.log10(1 - b)), -1.0, rtol=1e-9)
  assert grid.linspace(0, 1, 3).tolist() == [0.0, 0.5, 1.0]
  assert grid.logspace(1e-3, 1e-1, 3).tolist() == [1e-3, 1e-2, 1e-1]
  assert grid.parse_axis("0.9, 0.99").tolist() == [0.9, 0.99]
  assert grid.parse_axis("lin:0:1:3").tolist() == [0.0, 0.5, 1.0]
  np.testing.assert_array_equal(grid.parse_axis("log1m:0.9:0.9999:4"), b)
  assert grid.parse_axis("range:2:8:3").tolist() == [2, 5]
  assert grid.parse_axis([1, 2], dtype=np.float32).dtype == np.float32
  with pytest.raises(ValueError, match="lin:lo:hi:n"):
    grid.parse_axis("geo:1:2:3")
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    grid.logspace_one_minus(0.5, 1.0, 3)

  t = grid.product(b1=[0.0, 0.9], b2=[0.9, 0.99, 0.999], seed=grid.seeds(2),
                   lr=0.1)
  assert list(t) == ["b1", "b2", "seed", "lr"]
  assert {k: v.dtype.name for k, v in t.items()} == {
      "b1": "float32", "b2": "float32", "seed": "int32", "lr": "float32"}
  assert all(len(v) == 12 for v in t.values())
  # First axis slowest, last fastest; every combination exactly once.
  assert t["seed"].tolist()[:4] == [0, 1, 0, 1]
  assert t["b1"].tolist()[:6] == [0.0] * 6
  assert len({(a, b, s) for a, b, s in zip(t["b1"], t["b2"], t["seed"], strict=False)}) == 12
  assert grid.select(t, b1=0.9, b2=[0.9, 0.99])["seed"].tolist() == [0, 1, 0, 1]
  with pytest.raises(ValueError, match="`b1`"):
    grid.product(b1=[])
  with pytest.raises(ValueError, match="strings"):
    grid.product(game=["a", "b"])


# ----------------------------------------------------------------------------
# Bit equality.
# ----------------------------------------------------------------------------

def test_engine_equals_plain_vmap_and_single_cell_jit():
  table, ref = reference("train")
  out = grid.run_grid(train_cell, table, chunk_size=20, progress=False)
  # 4 chunks: 20, 20, 20 and 12 cells (the last padded to 20).
  assert list(out)[:len(table)] == list(table)
  assert result_names(out, table) == ["final_loss", "max_nu", "mean_loss", "w"]
  assert_bitwise_equal(out, table, list(table))
  assert_bitwise_equal(out, ref, list(ref))
  assert out["w"].shape == (72, D)
  assert np.all(np.isfinite(out["final_loss"]))
  # The grid learns something, and the hyperparameters really vary per cell.
  assert np.median(out["final_loss"]) < np.median(out["mean_loss"])
  unclipped = out["radius"] == 1.0  # (a 0.005 box clips every step: sign-like)
  assert len(np.unique(out["final_loss"][unclipped])) == 36
  assert not np.array_equal(out["w"][unclipped], out["w"][~unclipped])

  # One jit(cell_fn) call per cell: with the engine's compiler options, and
  # with XLA's defaults (the same here: these cells' reductions are small).
  for options in (grid.compiler_options(), None):
    single = jax.jit(train_cell, compiler_options=options)
    cells = [single({k: jnp.asarray(v[i]) for k, v in table.items()})
             for i in range(len(table["b1"]))]
    stacked = {k: np.stack([np.asarray(c[k]) for c in cells]) for k in ref}
    assert_bitwise_equal(stacked, ref)


def test_chunk_size_does_not_change_a_bit():
  # 40 cells in one plain vmap, vs 2 (1 padded) or 13 cells a chunk.  With
  # XLA:CPU's default options the 40-cell program sums through YNNPACK and the
  # small ones do not, and the last bits differ; the engine's options fix it.
  table, ref = reference("sums")
  for chunk_size in (1, 13):
    out = grid.run_grid(sums_cell, table, chunk_size=chunk_size, progress=False)
    assert_bitwise_equal(out, ref, list(ref))
  # Contractions: never a batch of one cell per device, so chunk_size=1 still
  # runs the batched dot kernels of the plain vmap.
  table, ref = reference("dot")
  out = grid.run_grid(dot_cell, table, chunk_size=1, progress=False)
  assert_bitwise_equal(out, ref, list(ref))


def test_padding_and_shapes():
  table = cheap_table()  # 12 cells
  ref = plain_vmap(cheap_cell, table)
  for chunk_size in (5, 12, 100):  # 5, 5, 2 (padded); one chunk; capped
    out = grid.run_grid(cheap_cell, table, chunk_size=chunk_size,
                        progress=False)
    assert_bitwise_equal(out, ref, list(ref))
    assert out["v"].shape == (12, 5) and out["n"].dtype == np.int32
  one = {k: v[:1] for k, v in table.items()}  # a single cell, padded to 2
  out = grid.run_grid(cheap_cell, one, chunk_size=4, progress=False)
  assert_bitwise_equal(out, {k: v[:1] for k, v in ref.items()}, list(ref))


def test_one_trace_one_compilation():
  traces, compiles = [], []

  def cell(c):
    traces.append(1)
    return {"y": c["b1"] * 2.0 + c["seed"]}

  def listener(name, *_, **__):
    if name == "/jax/core/compile/backend_compile_duration":
      compiles.append(name)

  table = grid.product(b1=grid.linspace(0, 1, 7), seed=grid.seeds(1))
  grid.compiler_options()  # its one-off probe compiles are not the engine's
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    out = grid.run_grid(cell, table, chunk_size=3, progress=False)  # 3 chunks
    assert (len(traces), len(compiles)) == (1, 1)
    # A program built beforehand (compile_ahead) is run as it is: no trace,
    # no compilation in run_grid; nothing is cached behind the caller's back.
    program = grid.compile_ahead(cell, table, chunk_size=3)
    program.compile()
    assert (len(traces), len(compiles)) == (2, 2)
    again = grid.run_grid(cell, table, chunk_size=3, progress=False,
                          program=program)
    assert (len(traces), len(compiles)) == (2, 2)
    with pytest.raises(ValueError, match="chunks of 3 rows, not 4"):
      grid.run_grid(cell, table, chunk_size=4, program=program)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert_bitwise_equal(out, again)
  np.testing.assert_array_equal(out["y"], table["b1"] * np.float32(2))


_SUBPROCESS = textwrap.dedent("""
    import sys, importlib.util
    from ftrl_adam import grid
    # The user's XLA_FLAGS choice stands: use_cpu_cores leaves it alone.
    assert grid.use_cpu_cores(4) is None
    import jax, numpy as np
    assert len(jax.devices()) == 8, jax.devices()
    spec = importlib.util.spec_from_file_location("tge", sys.argv[1])
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    res = {}
    # 20 cells a chunk: 3 per device, padded to 24; last chunk 12 + 12 pad.
    out = grid.run_grid(m.train_cell, m.train_table(), chunk_size=20,
                        progress=False)
    res.update({"train/" + k: v for k, v in out.items()})
    # 8 cells a chunk would be 1 per device: the engine runs 2.
    out = grid.run_grid(m.dot_cell, m.dot_table(), chunk_size=8, progress=False)
    res.update({"dot/" + k: v for k, v in out.items()})
    # Resume, on 8 devices, a folder that 1 device started.
    computed = []
    out = grid.run_grid(m.cheap_cell, m.cheap_table(), chunk_size=5,
                        out_dir=sys.argv[3], config=m.CHEAP_CONFIG,
                        progress=False, on_chunk=lambda i: computed.append(i.index))
    res.update({"resume/" + k: v for k, v in out.items()})
    res["resume/computed"] = np.array(computed)
    # With XLA's default options the bits may depend on the device count: a
    # folder that 1 device started is not resumed on 8.
    try:
      grid.run_grid(m.cheap_cell, m.cheap_table(), chunk_size=5,
                    out_dir=sys.argv[4], config=m.CHEAP_CONFIG,
                    compiler_options=grid.fast_compiler_options(),
                    progress=False)
      res["fast/refused"] = np.array("")
    except grid.ResultsFolderError as e:
      res["fast/refused"] = np.array(str(e))
    np.savez(sys.argv[2], **res)
    """)


class _Stop(Exception):
  pass


def _stop_after(k, seen):
  def hook(info):
    seen.append(info.index)
    if len(seen) == k:
      raise _Stop(f"interrupted after {k} chunks")
  return hook


def test_eight_devices_match_one_device(tmp_path):
  folder = tmp_path / "started_on_one_device"
  fast = tmp_path / "fast_options_on_one_device"
  for out, options in ((folder, None), (fast, grid.fast_compiler_options())):
    with pytest.raises(_Stop):
      grid.run_grid(cheap_cell, cheap_table(), chunk_size=5, out_dir=out,
                    config=CHEAP_CONFIG, progress=False,
                    compiler_options=options, on_chunk=_stop_after(1, []))
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=(
      os.environ.get("XLA_FLAGS", "") +
      " --xla_force_host_platform_device_count=8").strip())
  result = tmp_path / "eight.npz"
  proc = subprocess.run(
      [sys.executable, "-c", _SUBPROCESS, __file__, str(result), str(folder),
       str(fast)],
      env=env, capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with np.load(result) as z:
    got = {k: z[k] for k in z.files}
  sub = lambda p: {k[len(p):]: v for k, v in got.items() if k.startswith(p)}
  for name in ("train", "dot"):
    table, ref = reference(name)
    assert_bitwise_equal(sub(name + "/"), {**table, **ref})
  refused = str(got.pop("fast/refused"))
  assert "changed: device_count" in refused, refused
  resumed = sub("resume/")
  assert resumed.pop("computed").tolist() == [1, 2]
  assert_bitwise_equal(resumed, grid.run_grid(cheap_cell, cheap_table(),
                                              chunk_size=5, progress=False))


# ----------------------------------------------------------------------------
# Results folders.
# ----------------------------------------------------------------------------

def _run(folder, **kw):
  kw.setdefault("chunk_size", 3)
  kw.setdefault("config", CHEAP_CONFIG)
  kw.setdefault("progress", False)
  table = kw.pop("table", None) or cheap_table()
  return grid.run_grid(cheap_cell, table, out_dir=folder, **kw)


def _names(folder):
  """The folder's files but the hidden ones (the writer's lock)."""
  return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def test_interrupt_and_resume(tmp_path):
  ref = grid.run_grid(cheap_cell, cheap_table(), chunk_size=3, progress=False)
  folder = tmp_path / "run"
  seen = []
  with pytest.raises(_Stop):
    _run(folder, on_chunk=_stop_after(2, seen))
  assert seen == [0, 1]
  assert _names(folder) == [
      "chunk_000000.npz", "chunk_000001.npz", "manifest.json"]
  stamps = {n: os.stat(folder / n).st_mtime_ns for n in os.listdir(folder)
            if n.startswith("chunk")}
  (folder / ".chunk_000002.npz.tmp-12345").write_bytes(b"half a chunk")

  computed = []
  out = _run(folder, on_chunk=lambda info: computed.append(info.index))
  assert computed == [2, 3]  # the finished chunks were loaded, not recomputed
  assert_bitwise_equal(out, ref)
  assert {n: os.stat(folder / n).st_mtime_ns for n in stamps} == stamps
  assert _names(folder) == [
      "chunk_000000.npz", "chunk_000001.npz", "chunk_000002.npz",
      "chunk_000003.npz", "manifest.json"]

  computed.clear()
  program = grid.compile_ahead(cheap_cell, cheap_table(), chunk_size=3)
  assert_bitwise_equal(_run(folder, on_chunk=computed.append,
                            program=program), ref)
  assert computed == []
  assert program.compile_seconds is None   # every chunk on disk: not compiled
  manifest = json.loads((folder / "manifest.json").read_text())
  assert manifest["n_chunks"] == 4 and manifest["config"] == CHEAP_CONFIG


def test_changed_run_is_refused(tmp_path):
  folder = tmp_path / "run"
  _run(folder)
  with pytest.raises(grid.ResultsFolderError) as e:
    _run(folder, config={"task": "cheap", "T": 6})
  msg = str(e.value)
  assert str(folder) in msg and "overwrite=True" in msg and "config" in msg
  table = cheap_table()
  table["b1"] = table["b1"] + np.float32(0.01)
  with pytest.raises(grid.ResultsFolderError, match="table_digest"):
    _run(folder, table=table)
  with pytest.raises(grid.ResultsFolderError, match="give `chunk_size` 3"):
    _run(folder, chunk_size=4)
  with pytest.raises(grid.ResultsFolderError, match="compiler_options"):
    _run(folder, compiler_options={})

  (folder / "notes.txt").write_text("mine")
  out = _run(folder, table=table, overwrite=True)
  assert_bitwise_equal(out, grid.run_grid(cheap_cell, table, chunk_size=3,
                                          progress=False))
  assert (folder / "notes.txt").read_text() == "mine"
  with pytest.raises(grid.ResultsFolderError):  # the old run is gone for good
    _run(folder)


def test_corrupt_chunk_is_refused(tmp_path):
  folder = tmp_path / "run"
  _run(folder)
  chunk = folder / "chunk_000001.npz"
  good = chunk.read_bytes()
  for damage in (good[: len(good) // 2], b"not a zip file",
                 good.replace(b"PK", b"QK", 1)):
    chunk.write_bytes(damage)
    with pytest.raises(grid.ResultsFolderError, match="chunk_000001.npz") as e:
      _run(folder)
    assert "Delete it" in str(e.value)

  # A chunk from another run, under the right name, is refused too.
  other = tmp_path / "other"
  _run(other, config={"task": "other"})
  shutil.copy(other / "chunk_000001.npz", chunk)
  with pytest.raises(grid.ResultsFolderError, match="does not match its SHA"):
    _run(folder)
  chunk.write_bytes(good)
  shutil.copy(chunk, folder / "chunk_000099.npz")
  with pytest.raises(grid.ResultsFolderError, match="not a chunk of this run"):
    _run(folder)
  os.remove(folder / "chunk_000099.npz")
  assert_bitwise_equal(_run(folder), _run(other, config={"task": "other"}))


def test_foreign_folder_is_refused(tmp_path):
  folder = tmp_path / "home"
  folder.mkdir()
  (folder / "thesis.tex").write_text("precious")
  for overwrite in (False, True):
    with pytest.raises(grid.ResultsFolderError, match="no manifest.json") as e:
      _run(folder, overwrite=overwrite)
    assert str(folder) in str(e.value) and "thesis.tex" in str(e.value)
  assert os.listdir(folder) == ["thesis.tex"]

  for text, match in (("{not json", "unreadable"),
                      ('{"hello": 1}', "is not the manifest of")):
    bad = tmp_path / f"bad{len(text)}"
    bad.mkdir()
    (bad / "manifest.json").write_text(text)
    for overwrite in (False, True):
      with pytest.raises(grid.ResultsFolderError, match=match):
        _run(bad, overwrite=overwrite)
  a_file = tmp_path / "file"
  a_file.write_text("x")
  with pytest.raises(grid.ResultsFolderError, match="not a folder"):
    _run(a_file)
  _run(tmp_path / "empty_is_fine")


# ----------------------------------------------------------------------------
# Errors, progress, CSV, JSON, heatmap.
# ----------------------------------------------------------------------------

def test_an_option_this_xla_does_not_know_is_an_error(monkeypatch):
  """A renamed XLA option must not silently weaken reproducibility."""
  from ftrl_adam.lab.engine import devices  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(devices, "_CPU_LIBRARY_FUSION_OPTIONS", {
      **devices._CPU_LIBRARY_FUSION_OPTIONS, "xla_cpu_no_such_option": ""})
  with pytest.raises(RuntimeError, match="xla_cpu_no_such_option"):
    grid.compiler_options()
  with pytest.raises(RuntimeError, match="bit-reproducible"):
    grid.run_grid(cheap_cell, cheap_table(), chunk_size=4, progress=False)


def test_bad_arguments():
  table = cheap_table()
  with pytest.raises(TypeError, match="flat dict"):
    grid.run_grid(lambda c: c["b1"], table, chunk_size=4, progress=False)
  with pytest.raises(ValueError, match="clashes with a table column"):
    grid.run_grid(lambda c: {"b1": c["b1"]}, table, chunk_size=4,
                  progress=False)
  with pytest.raises(TypeError, match="PRNG"):
    grid.run_grid(lambda c: {"k": grid.key_from_seed(c["seed"])}, table,
                  chunk_size=4, progress=False)
  with pytest.raises(ValueError, match="chunk_size"):
    grid.run_grid(cheap_cell, table, chunk_size=0)
  with pytest.raises(ValueError, match="equal lengths"):
    grid.run_grid(cheap_cell, {"b1": np.zeros(3), "b2": np.zeros(2)},
                  chunk_size=4)
  with pytest.raises(TypeError, match="JSON"):
    grid.run_grid(cheap_cell, table, chunk_size=4, config={"f": object()},
                  progress=False)


def test_progress_line(capsys):
  grid.run_grid(cheap_cell, cheap_table(), chunk_size=5, progress=True)
  err = capsys.readouterr().err
  assert "12 cells in 3 chunk(s)" in err and "compiled in" in err
  assert "chunk 1/3" in err and "ETA" in err and "cells/s" in err
  assert "chunk 3/3" in err and "12/12 cells" in err
  grid.run_grid(cheap_cell, cheap_table(), chunk_size=5, progress=False)
  assert capsys.readouterr().err == ""


def test_csv_and_json(tmp_path):
  table = cheap_table()
  out = grid.run_grid(cheap_cell, table, chunk_size=12, progress=False)
  path = tmp_path / "grid.csv"
  cols = grid.write_csv(out, path)
  assert cols == ["b1", "b2", "seed", "n", "s"]  # config, then scalar results
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 12 and list(rows[0]) == cols
  for k in cols:  # every number reads back exactly
    back = np.array([r[k] for r in rows]).astype(out[k].dtype)
    np.testing.assert_array_equal(back, out[k])
  assert rows[0]["b2"] == "0.9"  # the shortest float32 text, not 0.8999999762
  with pytest.raises(ValueError, match="one number per cell"):
    grid.write_csv(out, path, columns=["v"])

  jpath = tmp_path / "run.json"
  grid.write_json(jpath, config=CHEAP_CONFIG, table=out, extra={"seconds": 1.5})
  info = json.loads(jpath.read_text())
  assert info["config"] == CHEAP_CONFIG and info["n_cells"] == 12
  assert info["seconds"] == 1.5
  assert info["columns"]["v"] == {"dtype": "float32", "cell_shape": [5]}
  for key in ("python", "jax", "jaxlib", "optax", "flax", "numpy", "ftrl_adam",
              "device_kind", "device_count"):
    assert info["versions"][key] not in (None, ""), key
  assert info["versions"]["device_count"] == len(jax.devices())


def _png_size(data: bytes) -> tuple[int, int]:
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
  return struct.unpack(">II", data[16:24])


def test_heatmap_png(tmp_path):
  t = grid.product(b1=grid.logspace_one_minus(0.0, 0.99, 4),
                   b2=grid.logspace_one_minus(0.9, 0.9999, 5),
                   seed=grid.seeds(3), lr=[0.1, 1.0])
  t["regret"] = ((1 - t["b2"]) / (1 - t["b1"]) + t["seed"]).astype(np.float32)
  t["regret"][0] = np.nan  # a diverged seed greys its cell out
  xs, ys, z = grid.pivot(t, "regret", where={"lr": 0.1})
  assert z.shape == (5, 4) and np.isnan(z[0, 0]) and np.isfinite(z[1:, 1:]).all()
  np.testing.assert_allclose(
      z[2, 1], np.mean(grid.select(t, b1=xs[1], b2=ys[2], lr=0.1)["regret"]))

  for i, kw in enumerate([
      dict(log_one_minus=True, overlays=["b2=b1^2", "y=x"], annotate=True),
      dict(log_one_minus="y", reduce="median", log_value=True, title="t"),
      dict(overlays=[("b2 = b1^4", lambda b: b ** 4)])]):
    path = tmp_path / f"heat{i}.png"
    fig = plots.heatmap(t, "regret", where={"lr": 0.1}, path=path, **kw)
    data = path.read_bytes()
    width, height = _png_size(data)
    assert width > 100 and height > 100 and len(data) > 2000
    assert fig.axes[0].get_title() == kw.get("title", fig.axes[0].get_title())
  with pytest.raises(ValueError, match="Unknown overlay"):
    plots.heatmap(t, "regret", overlays=["b2=b1^3"])


def test_changed_cell_code_is_never_resumed_and_the_same_code_is(tmp_path):
  """The fingerprint holds a digest of cell_fn's code and closure values:
  the same function resumes (also from another process); changed code or a
  changed closure constant with the same config is refused."""
  import subprocess
  import sys
  import textwrap
  table = grid.product(b1=[0.0, 0.5], seed=grid.seeds(2))

  def make(scale):
    def cell_fn(cell):
      return {"y": scale * cell["b1"] + jax.random.normal(
          grid.key_from_seed(cell["seed"]))}
    return cell_fn

  out = tmp_path / "run"
  first = grid.run_grid(make(2.0), table, chunk_size=2, out_dir=out,
                        progress=False, config={"same": True})
  again = grid.run_grid(make(2.0), table, chunk_size=2, out_dir=out,
                        progress=False, config={"same": True})
  assert again["y"].tobytes() == first["y"].tobytes()
  with pytest.raises(grid.ResultsFolderError, match="changed: code"):
    grid.run_grid(make(3.0), table, chunk_size=2, out_dir=out,
                  progress=False, config={"same": True})
  # the beta-grid's cell functions resume across processes
  script = textwrap.dedent(f"""
      from ftrl_adam import regret
      spec = regret.beta_grid(b1=[0.5, 0.9], b2=[0.5, 0.99], seeds=2, T=20,
                              d=2, adversaries="switch,gaussian,oppose")
      regret.run_beta_grid(spec, out_dir={str(tmp_path / 'bg')!r},
                           progress=False, plots=False)
      """)
  subprocess.run([sys.executable, "-c", script], check=True)
  from ftrl_adam import regret
  done = []
  spec = regret.beta_grid(b1=[0.5, 0.9], b2=[0.5, 0.99], seeds=2, T=20, d=2,
                          adversaries="switch,gaussian,oppose")
  regret.run_beta_grid(spec, out_dir=tmp_path / "bg", progress=False,
                       plots=False, on_chunk=done.append)
  assert done == []      # everything loaded, nothing recomputed


# ----------------------------------------------------------------------------
# One XLA device per CPU core; the devices a run uses.
# ----------------------------------------------------------------------------

_CORES_SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, os.path.dirname(sys.argv[1]))
    from ftrl_adam import grid
    n = grid.use_cpu_cores(3)
    import jax
    import test_grid_engine as t
    out = {"set": n, "count": jax.device_count(),
           "again": grid.use_cpu_cores(5), "after_start": jax.device_count()}
    tables = {}
    for name, devices in (("all", None), ("first", jax.devices()[:1])):
      res = grid.run_grid(t.cheap_cell, t.cheap_table(), chunk_size=5,
                          progress=False, devices=devices)
      tables[name] = {k: v.tobytes().hex() for k, v in res.items()}
    out["same_table"] = tables["all"] == tables["first"]
    print(json.dumps(out))
    """)


def test_use_cpu_cores_splits_a_fresh_process_and_respects_a_choice():
  env = {k: v for k, v in os.environ.items()
         if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
  env["JAX_PLATFORMS"] = "cpu"
  proc = subprocess.run([sys.executable, "-c", _CORES_SCRIPT, __file__],
                        env=env, capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  # 3 devices made; too late after JAX started (None, count unchanged); a
  # run on a subset of them gives the same table (reproducible options).
  assert out == {"set": 3, "count": 3, "again": None, "after_start": 3,
                 "same_table": True}
  # The user's choice stands: JAX_NUM_CPU_DEVICES here, XLA_FLAGS in the
  # 8-device process of test_eight_devices_match_one_device.
  code = ("from ftrl_adam import grid; import jax; "
          "print(grid.use_cpu_cores(4), jax.device_count())")
  proc = subprocess.run([sys.executable, "-c", code],
                        env={**env, "JAX_NUM_CPU_DEVICES": "2"},
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split() == ["None", "2"]


def test_use_cpu_cores_in_a_started_process_and_bad_arguments():
  before = jax.device_count()            # the backends are up in this process
  assert grid.use_cpu_cores() is None
  assert jax.device_count() == before
  for bad in (0, -1, 2.5, True, "2"):
    with pytest.raises(ValueError, match="`n` must be an integer >= 1"):
      grid.use_cpu_cores(bad)
  with pytest.raises(ValueError, match="`devices` must hold at least one"):
    grid.run_grid(cheap_cell, cheap_table(), chunk_size=5, progress=False,
                  devices=[])
  np.testing.assert_array_equal(
      grid.run_grid(cheap_cell, cheap_table(), chunk_size=5, progress=False,
                    devices=jax.devices()[:1])["s"],
      grid.run_grid(cheap_cell, cheap_table(), chunk_size=5,
                    progress=False)["s"])


def test_progress_lines_group_thousands_like_the_size_line():
  # "3,840 cells" in the size line, so "3,072 cells" (not 3072) below it.
  out = io.StringIO()
  bar = grid.Progress(stream=out, label="beta-grid gaussian")
  bar.start(n_cells=3072, n_chunks=1, chunks_done=0, cells_done=0,
            n_devices=2, padded=3072, trace_s=0.4, compile_s=1.0,
            out_dir=None)
  bar.update(chunks_done=1, cells_done=3072)
  first, last = out.getvalue().splitlines()
  assert first.startswith("beta-grid gaussian: 3,072 cells in 1 chunk(s) of "
                          "3,072 padded cells on 2 device(s)"), first
  assert "chunk 1/1, 3,072/3,072 cells, " in last, last
  done = grid.Progress(stream=io.StringIO())
  done.start(n_cells=12000, n_chunks=4, chunks_done=4, cells_done=12000,
             n_devices=1, padded=3000, trace_s=0.0, compile_s=0.0,
             out_dir=None)
  assert "12,000 cells already done" in done.stream.getvalue()
