"""Recording a training run's gradients and replaying them in the beta-grid.

* Round trip: what ``RegretRecorder`` writes during training,
  ``recorded_gradients`` reads back as the gradient sequence that was fed,
  also across a resumed run (a new recorder on the folder, the state restored
  from an earlier checkpoint); the recording is bounded and refuses lost
  rounds, other coordinates and foreign folders with clear errors.
* ``regret.replay`` is ``regret.from_array`` of that sequence; in the
  beta-grid (as an object or as ``replay:PATH``, also from the command line)
  every cell equals the single game, with one game per cell (the sequence
  does not depend on the seed), and the run's identity covers the data.
"""

from __future__ import annotations

import csv

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ftrl_adam as fa
from ftrl_adam import cli
from ftrl_adam import regret
from helpers import flat
from helpers import gradient_sequence


def _grads(T, seed=0):
  return gradient_sequence(T, {"a": (2, 3), "b": (4,)}, seed)


def _monitor(**kw):
  return fa.regret_monitor(fa.ftrl_adam(1e-2, 0.9, 0.99), radius=0.1,
                           b1=0.9, **({"record_every": 4} | kw))


def _train(tx, grads, recorder, state=None, params=None, start=0):
  """Steps start.. on the given gradients; returns (state, params, states)."""
  params = jax.tree.map(jnp.zeros_like, grads[0]) if params is None else params
  state = tx.init(params) if state is None else state
  step = jax.jit(tx.update)
  states = {}
  for g in grads[start:]:
    updates, state = step(g, state, params)
    params = optax.apply_updates(params, updates)
    recorder.update(state)
    states[int(state.count)] = (state, params)
  return state, params, states


# ----------------------------------------------------------------------------
# Recording.
# ----------------------------------------------------------------------------

def test_record_then_read_is_the_gradient_sequence(tmp_path):
  grads = _grads(18)
  rec = fa.RegretRecorder(tmp_path, max_rounds=100)
  state, _, _ = _train(_monitor(), grads, rec)
  assert rec.rounds == 16                  # 4 chunks of record_every = 4
  assert rec.flush(state) == 2 and rec.flush(state) == 0
  np.testing.assert_array_equal(fa.recorded_gradients(tmp_path),
                                np.stack([flat(g) for g in grads]))


def test_a_resumed_run_continues_the_recording(tmp_path):
  grads = _grads(30, seed=1)
  tx = _monitor()
  rec = fa.RegretRecorder(tmp_path, max_rounds=100)
  _, _, states = _train(tx, grads[:22], rec)      # crashes after step 22
  assert rec.rounds == 20
  rec.close()              # the crashed process's lock is gone
  # Restart from the checkpoint of step 18, with a new recorder on the folder:
  # rounds 19-20 are recomputed (skipped), 21 on are appended.
  state, params = states[18]
  rec2 = fa.RegretRecorder(tmp_path, max_rounds=100)
  assert rec2.rounds == 20
  state, _, _ = _train(tx, grads, rec2, state, params, start=18)
  rec2.flush(state)
  np.testing.assert_array_equal(fa.recorded_gradients(tmp_path),
                                np.stack([flat(g) for g in grads]))


def test_the_recording_is_bounded(tmp_path):
  grads = _grads(12)
  rec = fa.RegretRecorder(tmp_path, max_rounds=10)
  with pytest.raises(ValueError, match=r"is full: max_rounds = 10 .* round 11 "
                                       "refused"):
    _train(_monitor(), grads, rec)
  assert fa.recorded_gradients(tmp_path).shape == (10, 10)
  rec.close()
  with pytest.raises(ValueError, match="below the 10 rounds"):
    fa.RegretRecorder(tmp_path, max_rounds=5)
  with pytest.raises(ValueError, match="`max_rounds`"):
    fa.RegretRecorder(tmp_path / "new", max_rounds=0)


def test_lost_rounds_other_coordinates_and_foreign_folders_are_refused(
    tmp_path):
  grads = _grads(9)
  tx = _monitor()
  params = jax.tree.map(jnp.zeros_like, grads[0])
  state = tx.init(params)
  for g in grads:
    _, state = tx.update(g, state, params)
  with pytest.raises(ValueError, match=r"Rounds 1-5 were not recorded"):
    fa.RegretRecorder(tmp_path / "late", max_rounds=100).update(state)
  rec = fa.RegretRecorder(tmp_path / "sub", max_rounds=100)
  _train(_monitor(coords=5, seed=0), grads, rec)
  rec.close()
  other = fa.RegretRecorder(tmp_path / "sub", max_rounds=100)
  with pytest.raises(ValueError, match="other coordinates"):
    _train(_monitor(coords=5, seed=1), grads[:4] * 3, other)
  with pytest.raises(ValueError, match="record_every=B"):
    fa.RegretRecorder(tmp_path / "x", max_rounds=9).update(
        fa.regret_monitor(optax.sgd(0.1), radius=1.0, b1=0.9).init(params))
  (tmp_path / "foreign").mkdir()
  (tmp_path / "foreign" / "notes.txt").write_text("mine")
  with pytest.raises(ValueError, match="not a gradient recording"):
    fa.RegretRecorder(tmp_path / "foreign", max_rounds=9)
  with pytest.raises(ValueError, match="not a gradient recording"):
    fa.recorded_gradients(tmp_path / "foreign")
  fa.RegretRecorder(tmp_path / "empty", max_rounds=9)
  with pytest.raises(ValueError, match="holds no round yet"):
    regret.replay(tmp_path / "empty")


# ----------------------------------------------------------------------------
# Replaying.
# ----------------------------------------------------------------------------

def _recording(path, T=24, coords=6, seed=0):
  grads = _grads(T, seed=seed)
  rec = fa.RegretRecorder(path, max_rounds=1000)
  state, _, _ = _train(_monitor(coords=coords, seed=seed), grads, rec)
  rec.flush(state)
  return fa.recorded_gradients(path)


def test_replay_is_from_array_of_the_recording(tmp_path):
  g = _recording(tmp_path / "r")
  adv = regret.replay(tmp_path / "r")
  assert adv.kind == "oblivious" and adv.length == 24 and adv.name == "replay(r)"
  for b1, b2 in [(0.9, 0.99), (0.6, 0.2)]:
    a = regret.game(b1, b2, radius=0.5, T=24, d=6, adversary=adv,
                    key=jax.random.key(0))
    b = regret.game(b1, b2, radius=0.5, T=24, d=6, key=jax.random.key(0),
                    adversary=regret.from_array(g))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  cut = regret.replay(tmp_path / "r", rounds=10, name="first10")
  assert cut.length == 10 and cut.name == "first10"
  np.testing.assert_array_equal(
      regret.game(0.9, 0.99, radius=0.5, T=10, d=6, adversary=cut,
                  key=jax.random.key(0)).regret_box,
      regret.game(0.9, 0.99, radius=0.5, T=10, d=6, key=jax.random.key(0),
                  adversary=regret.from_array(g[:10])).regret_box)
  with pytest.raises(ValueError, match=r"`rounds` = 25 exceeds the 24"):
    regret.replay(tmp_path / "r", rounds=25)
  with pytest.raises(ValueError, match="has 24 rounds but T = 30"):
    regret.game(0.9, 0.99, radius=0.5, T=30, d=6, adversary=adv,
                key=jax.random.key(0))
  with pytest.raises(ValueError, match=r"replays 6 coordinates .* d = 4"):
    regret.game(0.9, 0.99, radius=0.5, T=24, d=4, adversary=adv,
                key=jax.random.key(0))


@pytest.mark.parametrize("as_string", [False, True], ids=["object", "string"])
def test_replay_cells_in_the_beta_grid_equal_single_games(tmp_path, as_string):
  _recording(tmp_path / "run")
  adv = (f"replay:{tmp_path / 'run'}" if as_string
         else regret.replay(tmp_path / "run"))
  spec = regret.beta_grid(b1=[0.5, 0.9], b2=[0.25, 0.81, 0.99], seeds=3,
                          adversaries=[adv, "gaussian"], T=24, d=6)
  assert spec.n_cells_of(spec.adversaries[0]) == 6     # not once per seed
  table = regret.run_beta_grid(spec, progress=False, plots=False).table
  rows = np.flatnonzero(table["adversary"] == "replay_run")
  assert len(rows) == 6 and not table["stochastic"][rows].any()
  single = regret.replay(tmp_path / "run")
  for i in rows:
    res = regret.game(table["b1"][i], table["b2"][i], radius=1.0, T=24, d=6,
                      adversary=single, key=jax.random.key(0))
    np.testing.assert_allclose(table["regret"][i], res.regret_box, rtol=1e-6)
    np.testing.assert_allclose(table["bound"][i], res.bound, rtol=1e-6)
  assert (table["regret_over_bound"][rows] <= 1).all()


def test_the_identity_covers_the_data(tmp_path):
  _recording(tmp_path / "a" / "run", seed=0)
  _recording(tmp_path / "b" / "run", seed=1)
  _recording(tmp_path / "c" / "run", seed=0)
  ident = lambda p: regret.beta_grid(  # noqa: E731
      adversaries=[regret.replay(p)], T=24, d=6).adversaries[0].identity
  a, b, c = (ident(tmp_path / x / "run") for x in "abc")
  assert a == c and a != b


def test_replay_from_the_command_line(tmp_path, capsys):
  _recording(tmp_path / "rec", T=16, coords=5)
  assert cli.main(["regret", "--adversaries", f"replay:{tmp_path / 'rec'}",
                   "--T", "16", "--d", "5", "--b1", "0.5,0.9", "--b2",
                   "0.5,0.9", "--seeds", "2", "--out", str(tmp_path / "out"),
                   "--no-progress"]) == 0
  with open(tmp_path / "out" / "results.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4 and {r["adversary"] for r in rows} == {"replay_rec"}
  assert "replay_rec (deterministic" in capsys.readouterr().out
  with pytest.raises(SystemExit):
    cli.main(["regret", "--adversaries", f"replay:{tmp_path / 'nothing'}",
              "--out", str(tmp_path / "never")])
  assert "not a gradient recording" in capsys.readouterr().err
