"""Replaying the gradients of a real training run as an oblivious adversary.

:class:`ftrl_adam.RegretRecorder` writes the gradients that
:func:`ftrl_adam.regret_monitor` saw during training (on its monitored
coordinates) to a folder; :func:`replay` reads that folder back as a fixed
sequence g_1..g_T, like :func:`ftrl_adam.regret.from_array`.  In the
beta-grid (``regret.beta_grid(adversaries=[regret.replay(path)])`` or
``ftrl-adam regret --adversaries replay:PATH``) every (b1, b2) learner then
plays *those* gradients, and the table shows which (b1, b2) would have had
the lowest regret on them.

What this is and is not: the gradients of a training run depend on the
learner that produced the iterates.  A replay holds them fixed, so it answers
the oblivious counterfactual "which learner does best against this sequence",
not "what would my run have done with other (b1, b2)" - that run would have
visited other parameters and seen other gradients (``ftrl-adam study`` trains
them).  For a box learner and a random subset of coordinates the replayed
learners are exactly the per-coordinate learners of those coordinates; for
a count-sketch (the ball) they play the sketched gradients.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any, Optional, Union

import jax.numpy as jnp
import numpy as np

from ftrl_adam import _checks
from ftrl_adam import recording
from ftrl_adam.lab.regret.adversaries import Adversary

_f32 = jnp.float32


@dataclasses.dataclass(frozen=True)
class _Replay:
  """g_t = recording[t - 1] for t <= length, NaN after (a round past the end)."""

  length: int
  d: int
  digest: str
  name: str

  def __call__(self, p, t, key, d):
    if d != self.d:
      raise ValueError(
          f"the adversary {self.name} replays {self.d} coordinates but the "
          f"game has d = {d}: play it with d = {self.d} and T = {self.length}.")
    i = jnp.clip(t - 1, 0, self.length - 1)
    return jnp.where(t <= self.length, p["g"][i], jnp.nan).astype(_f32)


def is_replay(adversary: Any) -> bool:
  """True for an adversary made by :func:`replay`."""
  return isinstance(adversary, Adversary) and isinstance(adversary.fn, _Replay)


def replay(path: Union[str, os.PathLike], *, rounds: Optional[int] = None,
           name: Optional[str] = None) -> Adversary:
  """A recorded training run's gradients as an oblivious adversary.

  g_t is round t of the recording at ``path`` (a folder written by
  :class:`ftrl_adam.RegretRecorder`; :func:`ftrl_adam.recorded_gradients`
  reads it), so a game's d must equal the recording's coordinates and its T
  the rounds replayed.  The cut rule: ``rounds=T`` replays the first T rounds
  (T at most the rounds recorded); by default all of them.  ``regret.game``
  and ``regret.play`` refuse another T (``Adversary.length``).  In the
  beta-grid, which takes its T from its options, a T below the replay's
  length plays the first T rounds, and a T above it is refused.

  It is the *oblivious* counterfactual: the sequence is fixed, while the real
  gradients would have changed with the learner (module docstring).

  Args:
    path: the recording's folder.
    rounds: None (every round) or T >= 1 (the first T rounds).
    name: its name in tables and file names; default ``replay(NAME)``,
      NAME the folder's name.

  Returns:
    An oblivious :class:`~ftrl_adam.regret.Adversary` with ``length = T``.
    Its identity (and a beta-grid's fingerprint) covers the data: ``fn``
    holds the SHA-256 of the replayed array.

  Raises:
    ValueError: not a recording, or ``rounds`` above the rounds recorded.

  Example:
    >>> import tempfile, jax, jax.numpy as jnp, optax, ftrl_adam as fa
    >>> from ftrl_adam import regret
    >>> folder = tempfile.mkdtemp()
    >>> tx = fa.regret_monitor(optax.sgd(0.1), radius=1.0, b1=0.9,
    ...                        record_every=8)
    >>> recorder = fa.RegretRecorder(folder, max_rounds=100)
    >>> params = jnp.zeros(2)
    >>> state = tx.init(params)
    >>> for t in range(16):
    ...   updates, state = tx.update(params - 1.0, state, params)  # grad of |w-1|^2/2
    ...   params = optax.apply_updates(params, updates)
    ...   _ = recorder.update(state)
    >>> adv = regret.replay(folder)
    >>> adv.length
    16
    >>> res = regret.game(0.9, 0.99, radius=1.0, T=16, d=2, adversary=adv,
    ...                   key=jax.random.key(0))
    >>> bool(res.regret_box <= res.bound)
    True
  """
  path = os.fspath(path)
  g = recording.recorded_gradients(path)
  length = int(g.shape[0])
  if rounds is not None:
    rounds = _checks.check_positive_int("rounds", rounds)
    if rounds > length:
      raise ValueError(
          f"`rounds` = {rounds} exceeds the {length} rounds recorded in "
          f"{path!r}.")
    g = g[:rounds]
    length = rounds
  g = np.ascontiguousarray(g, np.float32)
  h = hashlib.sha256(str(g.shape).encode())
  h.update(g.tobytes())
  if name is None:
    name = f"replay({os.path.basename(os.path.normpath(path))})"
  elif not isinstance(name, str) or not name:
    raise ValueError(f"`name` must be a non-empty string, got {name!r}.")
  fn = _Replay(length=length, d=int(g.shape[1]), digest=h.hexdigest(),
               name=name)
  return Adversary(kind="oblivious", fn=fn, name=name,
                   params={"g": jnp.asarray(g)}, length=length)
