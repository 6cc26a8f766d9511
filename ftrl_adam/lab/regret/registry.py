"""The adversaries of the beta-grid: the built-in names, and yours.

An entry of ``--adversaries`` / ``beta_grid(adversaries=...)`` is resolved to
a :class:`GridAdversary`: a built-in name (``switch``, ``gaussian``, ...), a
recording (``replay:PATH``), your own as ``module:attribute`` (found in the
current folder first, as ``python -m`` finds modules), or an
:class:`~ftrl_adam.regret.Adversary` object.  What identifies it (its code,
for yours) goes into the results folder's fingerprint.  Every failure of a
user's adversary is one ``ValueError`` naming it (:func:`check_adversaries`
traces each one as the grid will, before anything is compiled).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import sys
from typing import Any, Callable, Optional

import jax
import numpy as np

from ftrl_adam.lab.identity import code_digest
from ftrl_adam.lab.regret import adversaries as _adv
from ftrl_adam.lab.regret import bounds
from ftrl_adam.lab.regret import games
from ftrl_adam.lab.regret.replays import is_replay
from ftrl_adam.lab.regret.replays import replay

_SPARSE_P = 0.1
_HEAVY_DF = 2.0
ORDERS = {"switch": bounds.switch_order,
           "alternating": bounds.alternating_order,
           "oblivious": bounds.oblivious_order}


@dataclasses.dataclass(frozen=True)
class _Builtin:
  kind: str              # "oblivious" | "adaptive"
  stochastic: bool       # draws from the seed
  order: str             # key of ORDERS
  make: Callable[..., _adv.Adversary]   # (G, kappa, b1, b2) -> Adversary
  per_cell: bool = False  # its gradients depend on the cell's (b1, b2)


# name -> how to build it (the adversaries `ftrl-adam regret` knows by name).
_BUILTINS: dict[str, _Builtin] = {
    "switch": _Builtin("oblivious", False, "switch",
                       lambda G, kappa, b1, b2: _adv.switch(G, b1, b2, kappa),
                       per_cell=True),
    "alternating": _Builtin("oblivious", False, "alternating",
                            lambda G, *_: _adv.alternating(G)),
    "gaussian": _Builtin("oblivious", True, "oblivious",
                         lambda G, *_: _adv.gaussian(G)),
    "rademacher": _Builtin("oblivious", True, "oblivious",
                           lambda G, *_: _adv.rademacher(G)),
    "sparse": _Builtin("oblivious", True, "oblivious",
                       lambda G, *_: _adv.sparse(G, _SPARSE_P)),
    "heavy_tailed": _Builtin("oblivious", True, "oblivious",
                             lambda G, *_: _adv.heavy_tailed(G, _HEAVY_DF)),
    "oppose": _Builtin("adaptive", False, "oblivious",
                       lambda G, *_: _adv.oppose(G)),
    "abs_w": _Builtin("adaptive", False, "oblivious",
                      lambda G, *_: _adv.abs_w(G)),
    # Not one adversary: per cell, the sequence in [-G, G]^T that maximises
    # the regret, searched by projected ascent through the game
    # (ftrl_adam.regret.worst); box domain, d = 1 tiled over d coordinates.
    "worst_case": _Builtin("search", False, "oblivious", None),
}
_ALIASES = {"worst": "worst_case"}

#: name -> (kind, order) of the built-in adversaries.
BETA_GRID_ADVERSARIES: dict[str, tuple[str, str]] = {
    k: (v.kind, f"{v.order}_order") for k, v in _BUILTINS.items()}


@dataclasses.dataclass(frozen=True)
class GridAdversary:
  """An adversary of a beta-grid, resolved from a name or an object.

  Attributes:
    name: its name in the table, the summary and the file names.
    kind: ``"oblivious"`` or ``"adaptive"``.
    stochastic: its gradients depend on the seed (else one game per cell).
    per_cell: its gradients depend on the cell's (b1, b2) (the switch).
    order: the theory's order it is compared with (``switch``,
      ``alternating`` or ``oblivious``).
    make: ``(G, kappa, b1, b2) -> Adversary``.
    identity: what identifies it in the fingerprint (its code for yours).
    length: the rounds of an adversary built from a sequence (``from_array``,
      ``replay``): the grid's T may not exceed it.
  """

  name: str
  kind: str
  stochastic: bool
  per_cell: bool
  order: str
  make: Callable[..., _adv.Adversary] = dataclasses.field(compare=False)
  identity: str = ""
  length: Optional[int] = None

  @property
  def mode(self) -> str:
    return {"oblivious": "shared", "search": "search"}.get(self.kind,
                                                          "per_cell")


def _safe_name(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name).strip("_") or "adversary"


def _import_adversary(path: str) -> _adv.Adversary:
  """``module:attribute`` -> the Adversary it names (or a function's result).

  The module is looked up as ``python -m`` would: in the current folder
  first, then on the Python path.  Whatever goes wrong (the module is
  missing, raises or does not parse; the attribute is missing, or neither an
  Adversary nor a function returning one; the function raises) is one
  ``ValueError`` naming the adversary and what is wrong.
  """
  module, _, attr = path.partition(":")
  where = f"`adversaries`: {path!r}"
  cwd = os.getcwd()
  added = cwd not in sys.path
  if added:
    sys.path.insert(0, cwd)
  try:
    obj = importlib.import_module(module)
  except Exception as e:  # noqa: BLE001 - the user's module: any failure
    raise ValueError(
        f"{where}: importing module {module!r} failed ({type(e).__name__}: "
        f"{e}); give module:attribute of a module in the current folder or "
        f"on the Python path.") from e
  finally:
    if added:
      sys.path.remove(cwd)
  try:
    for part in attr.split("."):
      obj = getattr(obj, part)
  except AttributeError as e:
    raise ValueError(f"{where}: module {module!r} has no attribute "
                     f"{attr!r}.") from e
  if callable(obj) and not isinstance(obj, _adv.Adversary):
    try:
      obj = obj()
    except Exception as e:  # noqa: BLE001 - the user's factory
      raise ValueError(f"{where}: calling {attr}() failed ({type(e).__name__}"
                       f": {e}).") from e
  if not isinstance(obj, _adv.Adversary):
    kind = type(obj).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    raise ValueError(f"{where} is {article} {kind}, not a "
                     f"regret.Adversary (or a function returning one).")
  return obj


def _user_adversary(adv: _adv.Adversary) -> GridAdversary:
  identity = "user:" + code_digest(
      (adv.kind, adv.name, adv.fn, adv.params, adv.w0, adv.length))
  return GridAdversary(
      name=_safe_name(adv.name), kind=adv.kind, stochastic=True,
      per_cell=False, order="oblivious", make=lambda *_: adv,
      identity=identity, length=adv.length)


def resolve(spec: Any) -> tuple[GridAdversary, ...]:
  """The adversaries of ``spec`` (names, ``module:attr``, ``replay:PATH``,
  Adversary objects, or a comma-separated string), checked."""
  if isinstance(spec, (str, _adv.Adversary)):
    items = [spec] if isinstance(spec, _adv.Adversary) else spec.split(",")
  else:
    items = list(spec)
  allowed = ", ".join(_BUILTINS)
  out = []
  for item in items:
    if isinstance(item, _adv.Adversary):
      grid_adv = _user_adversary(item)
      # A replayed recording does not depend on the seed: one game per cell.
      out.append(dataclasses.replace(grid_adv, stochastic=False)
                 if is_replay(item) else grid_adv)
      continue
    name = str(item).strip()
    name = _ALIASES.get(name, name)
    if not name:
      raise ValueError(f"`adversaries` has an empty item in {spec!r}; choose "
                       f"from {allowed}, or module:attribute.")
    if name.startswith("replay:"):        # a recorded run (regret.replay)
      out.append(dataclasses.replace(
          _user_adversary(replay(name[len("replay:"):])),
          stochastic=False))
    elif ":" in name:
      out.append(_user_adversary(_import_adversary(name)))
    elif name in _BUILTINS:
      b = _BUILTINS[name]
      out.append(GridAdversary(name, b.kind, b.stochastic, b.per_cell,
                               b.order, b.make, name))
    else:
      raise ValueError(f"`adversaries`: unknown adversary {name!r}; choose "
                       f"from {allowed}, or module:attribute for your own.")
  if not out:
    raise ValueError(f"`adversaries` is empty; choose from {allowed}.")
  names = [a.name for a in out]
  if len(set(names)) != len(names):
    raise ValueError(f"`adversaries` has duplicate names: {names!r} (give "
                     f"your adversaries distinct `name`s).")
  return tuple(out)




def check_adversaries(advs: tuple[GridAdversary, ...], *, T: int, d: int,
                      G: float, kappa: float) -> None:
  """Traces each adversary's gradient as the grid will; one line if it fails.

  The output must be one float32 array of shape (d,) (as :func:`regret.game`
  requires: nothing is broadcast or cast), and an oblivious adversary's first
  rounds (and an adaptive one's first round, from its w0) must be finite.
  """
  key = jax.random.key(0)
  for a in advs:
    if a.mode == "search" or a.identity in _BUILTINS:
      continue
    adv = a.make(G, kappa, 0.9, 0.99)
    try:
      games.check_adversary(adv, adv.length or T, d, key)
    except ValueError as e:
      raise ValueError(f"`adversaries`: {a.name!r}: {e}") from e
    rounds = range(1, min(T, 4) + 1) if a.kind == "oblivious" else (1,)
    zero = np.zeros(d, np.float32)
    w0 = np.broadcast_to(np.asarray(adv.w0, np.float32), (d,))
    try:
      grads = [np.asarray(adv.gradient(np.int32(t), jax.random.fold_in(key, t),
                                       d, zero, w0)) for t in rounds]
    except Exception as e:  # noqa: BLE001 - the user's code
      raise ValueError(f"`adversaries`: {a.name!r} raised at round 1: "
                       f"{type(e).__name__}: {e}") from e
    bad = [t for t, g in zip(rounds, grads, strict=True)
           if not np.all(np.isfinite(g))]
    if bad:
      raise ValueError(f"`adversaries`: {a.name!r} returned a non-finite "
                       f"gradient (NaN or inf) at round t = {bad[0]}.")
