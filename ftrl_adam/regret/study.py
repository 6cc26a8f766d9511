r"""The beta-grid: thousands of regret games in one compiled program.

The regret lab's main job (the ``ftrl-adam regret`` command): run the theory's
learner (Algorithm 1, :func:`ftrl_adam.regret.game`) over a grid of
(b1, b2) x seeds (x radii D, x constants c or learning rates) against one or
more adversaries, and report per cell the b1-discounted regret against the
best comparator, the bound D3, their ratio and the regret over the theory's
orders (docs/theory.md section 3).  Two steps:

1. :func:`beta_grid` checks every setting and returns a :class:`BetaGrid`
   (nothing is traced or compiled; a bad value raises a ``ValueError`` that
   names it);
2. :func:`run_beta_grid` runs it with :func:`ftrl_adam.grid.run_grid`: per
   adversary one ``jax.vmap`` of one game, compiled once, run in chunks whose
   cell axis is sharded over every device JAX sees; with ``out_dir`` every
   finished chunk is written atomically, an interrupted run resumes, and the
   results are written as a tidy CSV, a JSON and heatmaps.

Each cell is one call of :func:`ftrl_adam.regret.game` - the transform's own
``update`` under ``lax.scan``, no second copy of the learner - so a grid cell
equals the single game with the same (b1, b2, D, c, seed) bit for bit when
the single game is compiled with :func:`ftrl_adam.grid.compiler_options`
(``tests/test_regret_cli.py``).

Adversaries (:data:`BETA_GRID_ADVERSARIES`), each with gradient scale G:

* ``switch``: the switch sequence D5 built against the cell's own (b1, b2)
  and played for its own ``horizon = min(L + k, T)`` rounds (the horizon is
  data, so one program serves every cell); regret order
  :func:`ftrl_adam.regret.switch_order`;
* ``alternating``: g_t = G (-1)^t, D6; order
  :func:`ftrl_adam.regret.alternating_order`;
* ``gaussian``, ``rademacher``, ``sparse`` (p = 0.1), ``heavy_tailed``
  (df = 2): random oblivious sequences; order
  :func:`ftrl_adam.regret.oblivious_order`;
* ``oppose``, ``abs_w``: the adaptive adversaries of D7 (not with
  ``method="parallel"``); order :func:`ftrl_adam.regret.oblivious_order`.

The orders are per coordinate; the grid multiplies them by d (box domain) or
sqrt(d) (ball domain).  Tags as in docs/theory.md: the orders are Nguyen's [R], the
bound D3 and the constructions are this project's [D].

Example:
  >>> from ftrl_adam import regret
  >>> spec = regret.beta_grid(b1=[0.5, 0.9], b2=[0.25, 0.81, 0.99], seeds=2,
  ...                         adversaries=["switch", "gaussian"], T=200, d=2)
  >>> spec.n_games
  24
  >>> result = regret.run_beta_grid(spec, progress=False)
  >>> len(result.table["regret"]), sorted(set(result.table["adversary"].tolist()))
  (24, ['gaussian', 'switch'])
  >>> bool((result.table["regret_over_bound"] <= 1).all())   # D3 holds
  True

References:
  Nguyen, *How to Set beta1, beta2 in Adam: An Online Learning Perspective*,
  ALT 2026, https://arxiv.org/abs/2510.03478.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import sys
import time
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ftrl_adam import _grid_io
from ftrl_adam import grid
from ftrl_adam._grid_io import ResultsFolderError
from ftrl_adam.regret import adversaries as _adv
from ftrl_adam.regret import bounds
from ftrl_adam.regret import games

__all__ = (
    "BETA_GRID_ADVERSARIES",
    "BETA_GRID_COLUMNS",
    "BetaGrid",
    "BetaGridResult",
    "beta_grid",
    "beta_grid_cell",
    "format_beta_summary",
    "run_beta_grid",
    "summarize_beta_grid",
)

# name -> (kind, what the regret is divided by in `regret_over_order`)
BETA_GRID_ADVERSARIES: dict[str, tuple[str, str]] = {
    "switch": ("oblivious", "switch_order"),
    "alternating": ("oblivious", "alternating_order"),
    "gaussian": ("oblivious", "oblivious_order"),
    "rademacher": ("oblivious", "oblivious_order"),
    "sparse": ("oblivious", "oblivious_order"),
    "heavy_tailed": ("oblivious", "oblivious_order"),
    "oppose": ("adaptive", "oblivious_order"),
    "abs_w": ("adaptive", "oblivious_order"),
}

# The columns of results.csv, in order (one row per game: cell x seed x adversary).
BETA_GRID_COLUMNS = (
    # settings (every hyperparameter is a column)
    "adversary", "domain", "T", "d", "G", "kappa",
    "b1", "b2", "radius", "c", "lr", "seed",
    # results
    "horizon", "regret", "max_regret", "bound", "bound_d4",
    "regret_over_bound", "minimax", "regret_over_minimax", "order",
    "regret_over_order", "nonfinite_round",
)

FORMAT = "ftrl_adam.regret.beta_grid"
FORMAT_VERSION = 1
RUN_JSON = "run.json"
CSV_NAME = "results.csv"
SUMMARY_NAME = "summary.txt"
_DOMAINS = ("box", "ball")
_METHODS = ("sequential", "parallel")
_SPARSE_P = 0.1
_HEAVY_DF = 2.0

# Elements (cells x d, or cells x T x d for the time-parallel path) per chunk
# when `chunk_size` is not given: a few seconds a chunk on a CPU, enough work
# for a GPU, O(T d) memory per cell bounded on the parallel path.
_AUTO_CHUNK_ELEMENTS = {
    ("cpu", "sequential"): 2 ** 14, ("cpu", "parallel"): 2 ** 23,
    ("accelerator", "sequential"): 2 ** 22,
    ("accelerator", "parallel"): 2 ** 26,
}


# ============================================================================
# The specification.
# ============================================================================

@dataclasses.dataclass(frozen=True)
class BetaGrid:
  """A checked beta-grid specification (build it with :func:`beta_grid`).

  Attributes:
    b1: the b1 values, in (0, 1), as float32-exact Python floats.
    b2: the b2 values, in (0, 1).
    seeds: the integer seeds.
    adversaries: adversary names (keys of :data:`BETA_GRID_ADVERSARIES`).
    T: rounds per game (the switch adversary stops each cell at L + k if
      that is earlier).
    d: dimension of each game.
    radius: the radii D of the learner's domain (and of the comparator set).
    c: the constants c of Algorithm 1 as an axis, or None.
    lr: the learning rates alpha as an axis (then c = alpha (1 - b1) /
      sqrt(1 - b2) per cell), or None.  With neither, c = D (the theory's
      choice [R]).
    G: gradient scale of the adversaries.
    kappa: length factor of the switch sequence's second phase.
    domain: ``"box"`` or ``"ball"``.
    method: ``"sequential"`` or ``"parallel"`` (time-parallel path, oblivious
      adversaries only).
    chunk_size: games per compiled chunk.
  """

  b1: tuple[float, ...]
  b2: tuple[float, ...]
  seeds: tuple[int, ...]
  adversaries: tuple[str, ...]
  T: int
  d: int
  radius: tuple[float, ...]
  c: Optional[tuple[float, ...]]
  lr: Optional[tuple[float, ...]]
  G: float
  kappa: float
  domain: str
  method: str
  chunk_size: int

  @property
  def rate(self) -> str:
    """``"lr"`` when learning rates are the axis, else ``"c"``."""
    return "lr" if self.lr is not None else "c"

  @property
  def n_cells(self) -> int:
    """Games per adversary."""
    rates = len(self.lr or self.c or (0,))
    return (len(self.b1) * len(self.b2) * len(self.radius) * rates
            * len(self.seeds))

  @property
  def n_games(self) -> int:
    """Games in all: cells x adversaries."""
    return self.n_cells * len(self.adversaries)

  def table(self) -> dict[str, np.ndarray]:
    """The per-adversary table: b1, b2, radius, c, lr, seed (b1 slowest).

    The axes are crossed (:func:`ftrl_adam.grid.product`); of c and lr the
    one that is not an axis is derived here in float32 (c = D without
    either; lr = c sqrt(1 - b2) / (1 - b1), c = lr (1 - b1) / sqrt(1 - b2)),
    on the host, so that it does not depend on how cells share a device.
    """
    axes: dict[str, Any] = {"b1": self.b1, "b2": self.b2,
                            "radius": self.radius}
    if self.c is not None:
      axes["c"] = self.c
    if self.lr is not None:
      axes["lr"] = self.lr
    axes["seed"] = np.asarray(self.seeds, np.int32)
    t = grid.product(**axes)
    one = np.float32(1.0)
    if self.lr is not None:
      t["c"] = t["lr"] * (one - t["b1"]) / np.sqrt(one - t["b2"])
    elif self.c is None:                        # c = D, the theory's choice
      t["c"] = t["radius"].copy()
    if self.lr is None:
      t["lr"] = t["c"] * np.sqrt(one - t["b2"]) / (one - t["b1"])
    return {k: t[k] for k in ("b1", "b2", "radius", "c", "lr", "seed")}

  def cell_config(self, adversary: str) -> dict[str, Any]:
    """What the cells of ``adversary`` depend on besides the table."""
    out = {"kind": FORMAT, "adversary": adversary, "T": self.T, "d": self.d,
           "G": self.G, "domain": self.domain, "method": self.method,
           "rate": self.rate}
    if adversary == "switch":
      out["kappa"] = self.kappa
    if adversary == "sparse":
      out["p"] = _SPARSE_P
    if adversary == "heavy_tailed":
      out["df"] = _HEAVY_DF
    return out

  def config(self) -> dict[str, Any]:
    """The whole run as JSON-ready data (run.json; compared on a resume)."""
    return {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(self).items()}


def _f32_values(name: str, values: np.ndarray) -> tuple[float, ...]:
  arr = np.asarray(values)
  if arr.dtype.kind not in "iuf":
    raise ValueError(f"`{name}` must hold numbers, got {values!r}.")
  return tuple(float(v) for v in arr.astype(np.float32))


def _axis(name: str, spec: Any, *, low: float, high: Optional[float] = None,
          low_closed: bool = False) -> tuple[float, ...]:
  if isinstance(spec, (int, float, np.integer, np.floating)) and not isinstance(
      spec, bool):
    spec = [spec]
  try:
    values = grid.parse_axis(spec)
  except ValueError as e:
    raise ValueError(f"`{name}`: {e}") from e
  vals = _f32_values(name, values)   # checked as the cells will see them
  lo = "[" if low_closed else "("
  allowed = f"{lo}{low:g}, {'inf' if high is None else format(high, 'g')})"
  bad = [v for v in vals
         if not math.isfinite(v) or (v < low if low_closed else v <= low)
         or (high is not None and v >= high)]
  if bad:
    raise ValueError(
        f"`{name}` values must lie in {allowed} (as float32), got "
        f"{bad[:5]!r}{' ...' if len(bad) > 5 else ''} from {spec!r}.")
  return vals


def _seeds(spec: Any) -> tuple[int, ...]:
  if isinstance(spec, str) and spec.strip().lstrip("-").isdigit():
    spec = int(spec)
  if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
    if spec < 1:
      raise ValueError(
          f"`seeds` must be a number of seeds >= 1 (seeds 0..n-1) or a list "
          f"of integers, got {spec!r}.")
    return tuple(range(int(spec)))
  try:
    values = grid.parse_axis(spec)
  except ValueError as e:
    raise ValueError(f"`seeds`: {e}") from e
  if not np.all(np.equal(np.mod(values, 1), 0)):
    raise ValueError(f"`seeds` must be integers, got {spec!r}.")
  out = tuple(int(v) for v in values)
  if any(not -2 ** 31 <= v < 2 ** 31 for v in out):
    raise ValueError(f"`seeds` must fit in int32, got {spec!r}.")
  if len(set(out)) != len(out):
    raise ValueError(f"`seeds` has duplicates: {list(out)!r}.")
  return out


def _positive_int(name: str, x: Any) -> int:
  if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 1:
    raise ValueError(f"`{name}` must be an integer >= 1, got {x!r}.")
  return int(x)


def _positive_float(name: str, x: Any, *, zero_ok: bool = False) -> float:
  try:
    v = float(np.float32(x))
  except (TypeError, ValueError) as e:
    raise ValueError(f"`{name}` must be a number, got {x!r}.") from e
  if isinstance(x, bool) or not math.isfinite(v) or (v < 0 if zero_ok else v <= 0):
    raise ValueError(
        f"`{name}` must be a finite number {'>=' if zero_ok else '>'} 0, got "
        f"{x!r}.")
  return v


def _adversary_names(spec: Any) -> tuple[str, ...]:
  names = spec.split(",") if isinstance(spec, str) else list(spec)
  names = [str(n).strip() for n in names if str(n).strip()]
  allowed = ", ".join(BETA_GRID_ADVERSARIES)
  if not names:
    raise ValueError(f"`adversaries` is empty; choose from {allowed}.")
  for n in names:
    if n not in BETA_GRID_ADVERSARIES:
      raise ValueError(f"`adversaries`: unknown adversary {n!r}; choose from "
                       f"{allowed}.")
  if len(set(names)) != len(names):
    raise ValueError(f"`adversaries` has duplicates: {names!r}.")
  return tuple(names)


def _platform_class() -> str:
  return "cpu" if jax.default_backend() == "cpu" else "accelerator"


def _auto_chunk(method: str, T: int, d: int, n_cells: int) -> int:
  budget = _AUTO_CHUNK_ELEMENTS[(_platform_class(), method)]
  per_cell = d * (T if method == "parallel" else 1)
  return max(1, min(n_cells, budget // per_cell))


def beta_grid(
    *,
    b1: Any = "log1m:0.5:0.99:16",
    b2: Any = "log1m:0.25:0.995:24",
    seeds: Any = 8,
    adversaries: Any = ("switch", "alternating", "gaussian"),
    T: int = 2000,
    d: int = 64,
    radius: Any = 1.0,
    c: Any = None,
    lr: Any = None,
    G: float = 1.0,
    kappa: float = 1.0,
    domain: str = "box",
    method: str = "sequential",
    chunk_size: Optional[int] = None,
) -> BetaGrid:
  """Checks a beta-grid's settings and returns its :class:`BetaGrid`.

  Nothing is traced or compiled.  Axes are lists, arrays, scalars or the
  command-line specs of :func:`ftrl_adam.grid.parse_axis`
  (``"0.9,0.99"``, ``"lin:a:b:n"``, ``"log:a:b:n"``, ``"log1m:a:b:n"``).
  The defaults are the ``ftrl-adam regret`` defaults: 16 x 24 (b1, b2) with
  1 - b log-spaced, 8 seeds, switch, alternating and Gaussian adversaries,
  T = 2000, d = 64 (every switch cell completes its L + k rounds:
  b2 <= 0.995 gives L + k <= 1615).

  Args:
    b1: b1 axis, values in (0, 1).
    b2: b2 axis, values in (0, 1).
    seeds: a number n (seeds 0..n-1) or a list of integer seeds.
    adversaries: names (a list or a comma-separated string) from
      :data:`BETA_GRID_ADVERSARIES`.
    T: rounds per game, >= 1.
    d: dimension, >= 1.
    radius: radius D > 0 (a value or an axis).
    c: the constant c > 0 of Algorithm 1 as an axis (default c = D).
    lr: learning rates alpha > 0 as an axis instead of ``c``.
    G: gradient scale > 0 of the adversaries.
    kappa: length factor > 0 of the switch sequence's second phase.
    domain: ``"box"`` or ``"ball"`` (ball: global second moment).
    method: ``"sequential"`` or ``"parallel"`` (the time-parallel path;
      oblivious adversaries only; O(T d) memory per game).
    chunk_size: games per compiled chunk; default from T, d and the
      platform (about 2^14 coordinates a chunk on CPU, sequential).

  Returns:
    A :class:`BetaGrid`.

  Raises:
    ValueError: naming the bad argument and what it allows.

  Example:
    >>> from ftrl_adam import regret
    >>> g = regret.beta_grid(b1="log1m:0.9:0.999:3", b2=[0.99], seeds=2)
    >>> g.b1, g.n_cells, g.adversaries
    ((0.8999999761581421, 0.9900000095367432, 0.9990000128746033), 6, ('switch', 'alternating', 'gaussian'))
  """
  b1v = _axis("b1", b1, low=0.0, high=1.0)
  b2v = _axis("b2", b2, low=0.0, high=1.0)
  seedv = _seeds(seeds)
  names = _adversary_names(adversaries)
  T = _positive_int("T", T)
  d = _positive_int("d", d)
  radiusv = _axis("radius", radius, low=0.0)
  if c is not None and lr is not None:
    raise ValueError("Give `c` or `lr` (learning rates), not both: the "
                     "learner's c = lr (1 - b1) / sqrt(1 - b2).")
  cv = None if c is None else _axis("c", c, low=0.0)
  lrv = None if lr is None else _axis("lr", lr, low=0.0)
  G = _positive_float("G", G)
  kappa = _positive_float("kappa", kappa)
  if domain not in _DOMAINS:
    raise ValueError(f"`domain` must be one of {', '.join(_DOMAINS)}, got "
                     f"{domain!r}.")
  if method not in _METHODS:
    raise ValueError(f"`method` must be one of {', '.join(_METHODS)}, got "
                     f"{method!r}.")
  if method == "parallel":
    adaptive = [n for n in names if BETA_GRID_ADVERSARIES[n][0] != "oblivious"]
    if adaptive:
      raise ValueError(
          f"`method` 'parallel' needs oblivious adversaries; `adversaries` "
          f"{', '.join(adaptive)} are adaptive; use `method` 'sequential'.")
  spec = BetaGrid(b1=b1v, b2=b2v, seeds=seedv, adversaries=names, T=T, d=d,
                  radius=radiusv, c=cv, lr=lrv, G=G, kappa=kappa,
                  domain=domain, method=method, chunk_size=1)
  if chunk_size is None:
    chunk_size = _auto_chunk(method, T, d, spec.n_cells)
  chunk_size = _positive_int("chunk_size", chunk_size)
  return dataclasses.replace(spec, chunk_size=min(chunk_size, spec.n_cells))


# ============================================================================
# One cell: one game.
# ============================================================================

_ORDERS = {"switch_order": bounds.switch_order,
           "alternating_order": bounds.alternating_order,
           "oblivious_order": bounds.oblivious_order}


def _make_adversary(name: str, G: float, kappa: float, b1, b2):
  if name == "switch":
    return _adv.switch(G, b1, b2, kappa)
  if name == "sparse":
    return _adv.sparse(G, _SPARSE_P)
  if name == "heavy_tailed":
    return _adv.heavy_tailed(G, _HEAVY_DF)
  return {"alternating": _adv.alternating, "gaussian": _adv.gaussian,
          "rademacher": _adv.rademacher, "oppose": _adv.oppose,
          "abs_w": _adv.abs_w}[name](G)


@functools.lru_cache(maxsize=64)
def beta_grid_cell(adversary: str, *, T: int, d: int, G: float = 1.0,
                   kappa: float = 1.0, domain: str = "box",
                   method: str = "sequential"
                   ) -> Callable[[dict[str, jax.Array]], dict[str, jax.Array]]:
  r"""The per-cell function of the beta-grid: one :func:`ftrl_adam.regret.game`.

  ``cell`` holds scalars ``b1``, ``b2``, ``radius``, ``c`` and ``seed``
  (other columns, such as ``lr``, are ignored); the game is
  ``regret.game(b1, b2, radius=radius, c=c, T=T, d=d, adversary=...,
  key=jax.random.key(seed), domain=domain, method=method, horizon=...)``,
  with ``horizon = min(L + k, T)`` for the switch sequence built against the
  cell's own (b1, b2) and None otherwise.  Cached: the same arguments give
  the same function object, so :func:`ftrl_adam.grid.run_grid` reuses its
  compiled program.

  Args:
    adversary: a name from :data:`BETA_GRID_ADVERSARIES`.
    T: rounds (static).
    d: dimension (static).
    G: gradient scale.
    kappa: switch sequence length factor.
    domain: ``"box"`` or ``"ball"``.
    method: ``"sequential"`` or ``"parallel"``.

  Returns:
    ``cell -> dict`` of float32 scalars ``regret`` (sup over the domain's
    comparators of the b1-discounted regret), ``max_regret`` (its max over
    t), ``bound`` (D3), ``bound_d4`` (D4; a bound only if b1 <= sqrt(b2)),
    and int32 ``horizon`` (rounds played) and ``nonfinite_round`` (0 if every
    gradient was finite).  The ratios and orders of the table are computed
    from these on the host (:func:`run_beta_grid`): on XLA:CPU a fused
    ``1 / sqrt(x)`` rounds differently (1 ulp) with the number of cells per
    device.

  Example:
    >>> import jax.numpy as jnp
    >>> from ftrl_adam import regret
    >>> cell_fn = regret.beta_grid_cell("switch", T=64, d=1)
    >>> out = cell_fn({"b1": jnp.float32(0.5), "b2": jnp.float32(0.5),
    ...                "radius": jnp.float32(1.0), "c": jnp.float32(1.0),
    ...                "seed": jnp.int32(0)})
    >>> int(out["horizon"])   # L + k = 16 + 2
    18
  """
  if adversary not in BETA_GRID_ADVERSARIES:
    raise ValueError(f"`adversary` must be one of "
                     f"{', '.join(BETA_GRID_ADVERSARIES)}, got {adversary!r}.")

  def cell_fn(cell):
    b1, b2, radius, c = cell["b1"], cell["b2"], cell["radius"], cell["c"]
    adv = _make_adversary(adversary, G, kappa, b1, b2)
    if adversary == "switch":
      big_l, k = bounds.switch_lengths(b1, b2, kappa)
      horizon = jnp.minimum(big_l + k, T).astype(jnp.int32)
    else:
      horizon = None
    res = games.game(b1, b2, radius=radius, T=T, d=d, adversary=adv,
                     key=grid.key_from_seed(cell["seed"]), c=c, domain=domain,
                     horizon=horizon, method=method)
    box = domain == "box"
    out = {
        "regret": res.regret_box if box else res.regret_ball,
        "max_regret": res.max_regret_box if box else res.max_regret_ball,
        "bound": res.bound,
        "bound_d4": res.bound_d4,
        "horizon": (jnp.int32(T) if horizon is None else horizon),
        "nonfinite_round": res.first_nonfinite_round,
    }
    return out

  return cell_fn


# ============================================================================
# Running it.
# ============================================================================

class BetaGridResult(NamedTuple):
  """What :func:`run_beta_grid` returns.

  Attributes:
    spec: the :class:`BetaGrid` that ran.
    table: the tidy table, ``dict column -> 1-D array`` with the columns
      :data:`BETA_GRID_COLUMNS` (``adversary`` and ``domain`` are strings),
      one row per game, adversaries in ``spec.adversaries`` order.
    summary: the rows of :func:`summarize_beta_grid`.
    seconds: wall time per adversary (loading finished chunks included).
    files: ``name -> path`` of the files written (empty without ``out_dir``).
  """

  spec: BetaGrid
  table: dict[str, np.ndarray]
  summary: list[dict[str, Any]]
  seconds: dict[str, float]
  files: dict[str, str]


def _is_writer() -> bool:
  return jax.process_index() == 0


def _agree(error: Optional[BaseException]) -> None:
  """Raises on every process if process 0 raised (multi-process runs)."""
  if jax.process_count() == 1:
    if error is not None:
      raise error
    return
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  flag = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
  if int(np.asarray(flag)):
    raise error if error is not None else ResultsFolderError(
        "process 0 refused the results folder; see its error message.")


def _grid_dir(out_dir: str, adversary: str) -> str:
  return os.path.join(out_dir, f"grid_{adversary}")


def _own_file(name: str) -> bool:
  return (name in (RUN_JSON, CSV_NAME, SUMMARY_NAME)
          or (name.endswith(".png") and name.startswith(
              ("regret_", "ratio_"))))


def _is_engine_folder(path: str) -> bool:
  names = os.listdir(path)
  return bool(names) and len(_grid_io._engine_files(names)) == len(names)  # pylint: disable=protected-access


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
  keys = sorted(set(old) | set(new))
  return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
                   for k in keys if old.get(k) != new.get(k))


def _open_out_dir(out_dir: str, config: Mapping[str, Any],
                  overwrite: bool) -> None:
  """Accepts a new/empty folder or this run's folder; refuses anything else."""
  hint = (f"Pick a new (or empty) out_dir, or pass overwrite=True to discard "
          f"the results in {out_dir!r}.")
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ResultsFolderError(
        f"out_dir {out_dir!r} exists and is not a folder. Pick another out_dir.")
  os.makedirs(out_dir, exist_ok=True)
  names = sorted(os.listdir(out_dir))
  if not names:
    return
  path = os.path.join(out_dir, RUN_JSON)
  if RUN_JSON not in names:
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    raise ResultsFolderError(
        f"out_dir {out_dir!r} is not a beta-grid results folder: it holds "
        f"files ({shown}) but no {RUN_JSON}. Pick a new (or empty) out_dir; "
        f"files that are not a beta-grid's own are never deleted.")
  try:
    with open(path, encoding="utf-8") as f:
      old = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ResultsFolderError(
        f"{path!r} is unreadable ({type(e).__name__}: {e}): {out_dir!r} is "
        f"damaged or not a beta-grid results folder. Pick a new (or empty) "
        f"out_dir.") from e
  if not isinstance(old, dict) or old.get("format") != FORMAT:
    raise ResultsFolderError(
        f"{path!r} is not the run.json of a beta-grid ({FORMAT!r}), so "
        f"{out_dir!r} is not a beta-grid results folder. Pick a new (or empty) "
        f"out_dir.")
  if old.get("format_version", 0) > FORMAT_VERSION:
    raise ResultsFolderError(
        f"{out_dir!r} was written by a newer ftrl_adam (format "
        f"{old.get('format_version')}). Upgrade or pick a new out_dir.")
  new = json.loads(_grid_io.canonical_json(dict(config)))
  if old.get("config") == new and not overwrite:
    return                                             # a resume
  if not overwrite:
    raise ResultsFolderError(
        f"{out_dir!r} holds the results of a different beta-grid (changed: "
        f"{_changed(old.get('config') or {}, new)}); they are never mixed. "
        + hint)
  for n in names:                                      # overwrite: our files
    p = os.path.join(out_dir, n)
    if os.path.isfile(p) and _own_file(n):
      os.remove(p)
    elif (os.path.isdir(p) and n.startswith("grid_")
          and _is_engine_folder(p)):
      shutil.rmtree(p)


def _with_orders(res: Mapping[str, np.ndarray], adversary: str,
                 spec: BetaGrid) -> dict[str, np.ndarray]:
  """Adds the ratio and order columns (float32, on the host, whole table)."""
  f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
  scale = np.float32(spec.d if spec.domain == "box" else math.sqrt(spec.d))
  b1, b2, radius = res["b1"], res["b2"], res["radius"]
  order_fn = _ORDERS[BETA_GRID_ADVERSARIES[adversary][1]]
  minimax = scale * f32(bounds.minimax_order(radius, spec.G, b1))
  order = scale * f32(order_fn(radius, spec.G, b1, b2))
  regret_v = f32(res["regret"])
  with np.errstate(divide="ignore", invalid="ignore"):
    return {**res, "regret_over_bound": regret_v / f32(res["bound"]),
            "minimax": minimax, "regret_over_minimax": regret_v / minimax,
            "order": order, "regret_over_order": regret_v / order}


def _concat(parts: Sequence[tuple[str, Mapping[str, np.ndarray]]],
            spec: BetaGrid) -> dict[str, np.ndarray]:
  cols: dict[str, list[np.ndarray]] = {k: [] for k in BETA_GRID_COLUMNS}
  for name, t in parts:
    n = len(t["b1"])
    const = {"adversary": np.full(n, name), "domain": np.full(n, spec.domain),
             "T": np.full(n, spec.T, np.int32), "d": np.full(n, spec.d, np.int32),
             "G": np.full(n, spec.G, np.float32),
             "kappa": np.full(n, spec.kappa, np.float32)}
    for k in BETA_GRID_COLUMNS:
      cols[k].append(np.asarray(const[k] if k in const else t[k]))
  return {k: np.concatenate(v) for k, v in cols.items()}


def run_beta_grid(
    spec: BetaGrid,
    *,
    out_dir: Optional[str | os.PathLike] = None,
    progress: bool = True,
    overwrite: bool = False,
    on_chunk: Optional[Callable[[grid.ChunkInfo], None]] = None,
    plots: bool = True,
    reproducible: bool = True,
) -> BetaGridResult:
  """Runs a beta-grid: per adversary one vmapped, sharded, chunked program.

  ``reproducible=True`` (the default) compiles with
  :func:`ftrl_adam.grid.compiler_options`, under which every game equals the
  single game bit for bit whatever the chunk size and device count;
  ``reproducible=False`` uses XLA's default options, about 2x faster on CPU
  for the default game (``benchmarks/grid.py``), equal to the single game
  only to float32 rounding.  The choice is part of the results folder's
  fingerprint, so the two are never mixed.

  For each adversary of ``spec``, :func:`ftrl_adam.grid.run_grid` runs
  :func:`beta_grid_cell` over ``spec.table()``: compiled once, chunks of
  ``spec.chunk_size`` games, the game axis sharded over every device JAX
  sees (padded when it does not divide).  The host then adds, in float32,
  ``minimax`` = s D G / sqrt(1 - b1^2) (:func:`ftrl_adam.regret.minimax_order`),
  ``order`` = s times the adversary's order (:data:`BETA_GRID_ADVERSARIES`),
  with s = d (box) or sqrt(d) (ball), and ``regret_over_bound``,
  ``regret_over_minimax``, ``regret_over_order``.  With ``out_dir``:

  * ``out_dir/grid_<adversary>/`` holds that adversary's finished chunks
    (written atomically, chunk by chunk); running the same spec again loads
    them and computes only the rest, giving the same table as an
    uninterrupted run;
  * ``run.json`` (the spec, versions, and at the end timings and the
    summary), ``results.csv`` (:data:`BETA_GRID_COLUMNS`, one row per game),
    ``summary.txt``, and with ``plots`` the heatmaps ``regret_<adv>.png``
    (mean over seeds of regret / minimax order, the curve b2 = b1^2 drawn
    on), ``ratio_<adv>.png`` (worst regret / D3 over seeds) and, with two
    or more adversaries, ``regret_worst.png`` (the max over adversaries); a
    suffix such as ``_radius=0.5_c=0.5`` tells radius/c/lr variants apart.

  A folder holding another spec's results, a damaged one, or one with other
  files and no ``run.json`` is refused (:class:`ftrl_adam.grid.ResultsFolderError`)
  before anything is compiled; ``overwrite=True`` discards a beta-grid's own
  files (never others) and starts again.  Every process of a multi-host run
  (``jax.distributed``) must call this with the same arguments; process 0
  alone writes files and prints.

  Args:
    spec: from :func:`beta_grid`.
    out_dir: optional results folder (resumable).
    progress: print a line per adversary and per chunk to stderr.
    overwrite: discard the previous results in ``out_dir``.
    on_chunk: called after each computed chunk (see
      :func:`ftrl_adam.grid.run_grid`); an exception it raises stops the run
      with the finished chunks kept.
    plots: write the heatmaps (needs ``out_dir``).

  Returns:
    A :class:`BetaGridResult`.

  Raises:
    ResultsFolderError: for an ``out_dir`` that cannot be used.
  """
  if not isinstance(spec, BetaGrid):
    raise TypeError(f"`spec` must be a BetaGrid from regret.beta_grid(...), "
                    f"got {type(spec).__name__}.")
  if not isinstance(overwrite, bool):
    raise ValueError(f"`overwrite` must be True or False, got {overwrite!r}.")
  out = None if out_dir is None else os.fspath(out_dir)
  config = spec.config()
  files: dict[str, str] = {}
  if out is not None:
    error = None
    if _is_writer():
      try:
        _open_out_dir(out, config, overwrite)
        grid.write_json(os.path.join(out, RUN_JSON), config=config, extra={
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "status": "running"})
      except (ResultsFolderError, OSError) as e:
        error = e
    _agree(error)

  table = spec.table()
  parts, seconds = [], {}
  for i, name in enumerate(spec.adversaries):
    if progress and _is_writer():
      print(f"beta-grid: adversary {name} ({i + 1}/{len(spec.adversaries)}): "
            f"{spec.n_cells} games, T={spec.T}, d={spec.d}", file=sys.stderr,
            flush=True)
    cell_fn = beta_grid_cell(name, T=spec.T, d=spec.d, G=spec.G,
                             kappa=spec.kappa, domain=spec.domain,
                             method=spec.method)
    t0 = time.perf_counter()
    res = grid.run_grid(
        cell_fn, table, chunk_size=spec.chunk_size,
        out_dir=None if out is None else _grid_dir(out, name),
        config=spec.cell_config(name), progress=progress,
        overwrite=overwrite, on_chunk=on_chunk,
        compiler_options=None if reproducible else {})
    seconds[name] = time.perf_counter() - t0
    parts.append((name, _with_orders(res, name, spec)))
  full = _concat(parts, spec)
  summary = summarize_beta_grid(full, rate=spec.rate)
  if out is not None and _is_writer():
    files = _write_outputs(spec, full, summary, seconds, out, plots)
  return BetaGridResult(spec=spec, table=full, summary=summary,
                        seconds=seconds, files=files)


# ============================================================================
# Summary, files, heatmaps.
# ============================================================================

def _variants(table: Mapping[str, np.ndarray], rate: str) -> list[dict[str, Any]]:
  """Distinct (radius, c or lr) settings, in table order."""
  seen, out = set(), []
  for r, v in zip(np.asarray(table["radius"]).tolist(),
                  np.asarray(table[rate]).tolist(), strict=False):
    if (r, v) not in seen:
      seen.add((r, v))
      out.append({"radius": np.float32(r), rate: np.float32(v)})
  return out


def _nearest(values: np.ndarray, target: float) -> int:
  v = np.clip(values.astype(np.float64), 0.0, 1.0 - 1e-12)
  return int(np.argmin(np.abs(np.log1p(-v) - math.log1p(-min(target, 1 - 1e-12)))))


def summarize_beta_grid(table: Mapping[str, np.ndarray], *,
                        rate: str = "c") -> list[dict[str, Any]]:
  """Per adversary, (radius, c/lr) setting and b1: the best b2 next to b1^2.

  For each b1: the b2 whose mean regret over seeds is smallest, its regret,
  the b2 of the grid nearest b1^2 (in log(1 - b2)) and its regret, and the
  worst regret / D3 ratio over b2 and seeds.  With two or more adversaries
  also the rows of adversary ``"worst"``: the max over adversaries of the
  mean regret / minimax order (the oblivious worst case of docs/theory.md D5 + D6,
  minimised near b2 = b1^2 [D]).

  Args:
    table: the ``table`` of a :class:`BetaGridResult` (or its CSV read back).
    rate: ``"c"`` or ``"lr"``: the column that was an axis (``spec.rate``).

  Returns:
    A list of dicts with keys ``adversary``, ``radius``, ``c`` or ``lr``,
    ``b1``, ``b1_squared``, ``best_b2``, ``best_regret``, ``b2_near_b1_squared``,
    ``regret_near_b1_squared``, ``worst_regret_over_bound`` (for
    ``"worst"``: regrets are regret / minimax order and the ratio is the max
    over adversaries).
  """
  if rate not in ("c", "lr"):
    raise ValueError(f"`rate` must be 'c' or 'lr', got {rate!r}.")
  advs = list(dict.fromkeys(np.asarray(table["adversary"]).tolist()))
  rows = []
  for var in _variants(table, rate):
    worst_z, worst_ratio = None, None
    for adv in advs:
      where = {**var, "adversary": adv}
      xs, ys, z = grid.pivot(table, "regret", where=where)
      _, _, zr = grid.pivot(table, "regret_over_bound", reduce="max",
                            where=where)
      _, _, zn = grid.pivot(table, "regret_over_minimax", where=where)
      worst_z = zn if worst_z is None else np.fmax(worst_z, zn)
      worst_ratio = zr if worst_ratio is None else np.fmax(worst_ratio, zr)
      rows += _rows_for(adv, var, rate, xs, ys, z, zr)
    if len(advs) > 1:
      rows += _rows_for("worst", var, rate, xs, ys, worst_z, worst_ratio)
  return rows


def _rows_for(adv, var, rate, xs, ys, z, zr):
  rows = []
  for j, b1 in enumerate(xs.astype(np.float64)):
    col = z[:, j]
    ok = np.isfinite(col)
    best = int(np.nanargmin(np.where(ok, col, np.inf))) if ok.any() else 0
    near = _nearest(ys, b1 * b1)
    rows.append({
        "adversary": adv, "radius": float(var["radius"]),
        rate: float(var[rate]), "b1": float(xs[j]), "b1_squared": b1 * b1,
        "best_b2": float(ys[best]), "best_regret": float(col[best]),
        "b2_near_b1_squared": float(ys[near]),
        "regret_near_b1_squared": float(col[near]),
        "worst_regret_over_bound": float(np.nanmax(zr[:, j]))
        if np.isfinite(zr[:, j]).any() else float("nan"),
    })
  return rows


def _fmt(x: float) -> str:
  if not math.isfinite(x):
    return "nan"
  return f"{x:.4g}"


def format_beta_summary(result: BetaGridResult) -> str:
  """The summary table of a run as text (what ``ftrl-adam regret`` prints).

  Args:
    result: a :class:`BetaGridResult`.

  Returns:
    The text, one block per adversary (and the worst case), one line per b1.
  """
  spec, table = result.spec, result.table
  seeds = len(spec.seeds)
  rate_txt = ("c = D" if spec.c is None and spec.lr is None else
              f"{spec.rate} in {list(spec.c or spec.lr)}")
  lines = [
      f"beta-grid: {len(spec.b1)} b1 x {len(spec.b2)} b2 x {len(spec.seeds)} "
      f"seed(s) x {len(spec.radius)} radius x "
      f"{len(spec.c or spec.lr or (0,))} {spec.rate}, T={spec.T}, d={spec.d}, "
      f"D in {list(spec.radius)}, {rate_txt}, G={spec.G:g}, domain "
      f"{spec.domain}; {spec.n_games} games in "
      f"{sum(result.seconds.values()):.1f} s"]
  headers = ("b1", "b1^2", "best b2", "regret", "b2~b1^2", "regret",
             "max regret/D3")
  by_block: dict[tuple, list] = {}
  for row in result.summary:
    key = (row["adversary"], row["radius"], row.get("c", row.get("lr")))
    by_block.setdefault(key, []).append(row)
  multi = len(_variants(table, spec.rate)) > 1
  for (adv, radius, rate_v), rows in by_block.items():
    what = ("max over adversaries of mean regret / minimax order"
            if adv == "worst" else f"mean regret over {seeds} seed(s)")
    var = f", D={radius:g}, {spec.rate}={rate_v:g}" if multi else ""
    lines += ["", f"{adv}{var} ({what}):"]
    cells = [headers] + [
        (f"{r['b1']:.4f}", f"{r['b1_squared']:.4f}", f"{r['best_b2']:.4f}",
         _fmt(r["best_regret"]), f"{r['b2_near_b1_squared']:.4f}",
         _fmt(r["regret_near_b1_squared"]), _fmt(r["worst_regret_over_bound"]))
        for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    for c in cells:
      lines.append("  " + "  ".join(s.rjust(w) for s, w in zip(c, widths, strict=False)))
  bad = np.asarray(table["nonfinite_round"]) > 0
  if bad.any():
    lines += ["", f"warning: {int(bad.sum())} game(s) saw a non-finite "
                  f"gradient (column nonfinite_round)."]
  if "switch" in spec.adversaries:
    sw = np.asarray(table["adversary"]) == "switch"
    big_l, k = bounds.switch_lengths(np.asarray(table["b1"])[sw],
                                     np.asarray(table["b2"])[sw], spec.kappa)
    cut = int(np.sum(np.asarray(big_l) + np.asarray(k) > spec.T))
    if cut:
      lines += ["", f"note: {cut} switch game(s) need L + k > T = {spec.T} "
                    f"rounds and were cut at T (raise T, or lower b2)."]
  return "\n".join(lines)


def _suffix(var: Mapping[str, Any], multi: bool) -> str:
  if not multi:
    return ""
  return "".join(f"_{k}={float(v):g}" for k, v in var.items())


def _write_outputs(spec, table, summary, seconds, out, want_plots):
  files = {}
  path = os.path.join(out, CSV_NAME)
  grid.write_csv(table, path, columns=BETA_GRID_COLUMNS)
  files["csv"] = path
  if want_plots:
    files.update(_heatmaps(spec, table, out))
  result = BetaGridResult(spec, table, summary, seconds, files)
  text = format_beta_summary(result)
  path = os.path.join(out, SUMMARY_NAME)
  _grid_io.atomic_write_text(path, text + "\n")
  files["summary"] = path
  path = os.path.join(out, RUN_JSON)
  files["json"] = path
  grid.write_json(path, config=spec.config(), extra={
      "format": FORMAT, "format_version": FORMAT_VERSION,
      "status": "complete", "n_games": spec.n_games,
      "seconds": seconds, "columns_csv": list(BETA_GRID_COLUMNS),
      "files": {k: os.path.basename(v) for k, v in files.items()},
      "summary": summary})
  return files


def _heatmaps(spec, table, out):
  from ftrl_adam import plots  # pylint: disable=import-outside-toplevel
  files = {}
  variants = _variants(table, spec.rate)
  multi = len(variants) > 1
  advs = list(spec.adversaries)
  log = True
  seeds = len(spec.seeds)
  for var in variants:
    sfx = _suffix(var, multi)
    worst = None
    for adv in advs:
      where = {**var, "adversary": adv}
      path = os.path.join(out, f"regret_{adv}{sfx}.png")
      plots.heatmap(
          table, "regret_over_minimax", where=where, log_one_minus=log,
          log_value=True, overlays=["b2=b1^2"], path=path,
          title=f"{adv}: regret / minimax order, mean of {seeds} seed(s)\n"
                f"T={spec.T}, d={spec.d}{sfx.replace('_', ', ')}")
      files[f"regret_{adv}{sfx}"] = path
      path = os.path.join(out, f"ratio_{adv}{sfx}.png")
      plots.heatmap(
          table, "regret_over_bound", where=where, reduce="max",
          log_one_minus=log, overlays=["b2=b1^2"], path=path,
          title=f"{adv}: regret / bound D3, worst of {seeds} seed(s)\n"
                f"T={spec.T}, d={spec.d}{sfx.replace('_', ', ')}")
      files[f"ratio_{adv}{sfx}"] = path
      xs, ys, z = grid.pivot(table, "regret_over_minimax", where=where)
      worst = z if worst is None else np.fmax(worst, z)
    if len(advs) > 1:
      bb1, bb2 = np.meshgrid(xs, ys)
      label = "regret / minimax order"
      small = {"b1": bb1.reshape(-1), "b2": bb2.reshape(-1),
               label: worst.reshape(-1)}
      path = os.path.join(out, f"regret_worst{sfx}.png")
      plots.heatmap(
          small, label, log_one_minus=log, log_value=True,
          overlays=["b2=b1^2"], path=path, reduce="max",
          title=f"worst of {', '.join(advs)}: mean regret / minimax order\n"
                f"T={spec.T}, d={spec.d}, {seeds} seed(s)"
                f"{sfx.replace('_', ', ')}")
      files[f"regret_worst{sfx}"] = path
  return files
