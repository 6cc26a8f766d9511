r"""The beta-grid: thousands of regret games as one experiment.

The regret lab's main job (the ``ftrl-adam regret`` command): play the
theory's learner (Algorithm 1, :func:`ftrl_adam.regret.game`) over a grid of
(b1, b2) x seeds (x radii D, x constants c or learning rates) against one or
more adversaries - built-in names or your own
:class:`~ftrl_adam.regret.Adversary` objects - and report per game the
b1-discounted regret against the best comparator, the bound D3, their ratio
and the regret over the theory's orders (docs/theory.md section 3).  Two
steps:

1. :func:`beta_grid` checks every option and returns a :class:`BetaGrid`
   (nothing is traced or compiled; a bad value raises a ``ValueError`` that
   names it);
2. :func:`run_beta_grid` runs it with the lab's runner
   (:func:`ftrl_adam.lab.experiment.run_experiment`): the size is stated and
   checked first, then one compiled program per adversary, sharded over every
   device, in resumable chunks; a CSV, a JSON, a summary and heatmaps.

**Shared streams.**  An oblivious adversary's gradients do not depend on the
learner: each seed's sequence is drawn once and every learner cell of that
seed (all b1, b2, D, c) plays against it - a ``lax.scan`` over rounds with the
learners vmapped inside (:func:`ftrl_adam.lab.regret.shared.shared_stream_games`,
which calls the transform's own ``update``).  Deterministic adversaries
(``switch``, ``alternating``) play once, not once per seed: their rows carry
the first seed and ``stochastic = false``.  Adaptive adversaries play one game
per cell.  Every cell equals :func:`ftrl_adam.regret.game` with the same
adversary, (b1, b2, D, c) and seed to float32 rounding, and bit for bit with
``reproducible=True`` against a game compiled with
:func:`ftrl_adam.grid.compiler_options`.

Adversaries, each with gradient scale G (and your own):

* ``switch``: the switch sequence D5 built against the cell's own (b1, b2)
  and played for its own ``horizon = min(L + k, T)`` rounds; regret order
  :func:`ftrl_adam.regret.switch_order`;
* ``alternating``: g_t = G (-1)^t, D6; order
  :func:`ftrl_adam.regret.alternating_order`;
* ``gaussian``, ``rademacher``, ``sparse`` (p = 0.1), ``heavy_tailed``
  (df = 2): random oblivious sequences; order
  :func:`ftrl_adam.regret.oblivious_order`;
* ``oppose``, ``abs_w``: the adaptive adversaries of D7; order
  :func:`ftrl_adam.regret.oblivious_order`;
* an :class:`~ftrl_adam.regret.Adversary` (from :func:`regret.oblivious`,
  :func:`regret.adaptive`, ...): keyed by its ``name``; its code is part of
  the results folder's fingerprint; order
  :func:`ftrl_adam.regret.oblivious_order`.

The orders are per coordinate; the grid multiplies them by d (box domain) or
sqrt(d) (ball domain).  Tags as in docs/theory.md: the orders are Nguyen's [R],
the bound D3 and the constructions are this project's [D].

Example:
  >>> from ftrl_adam import regret
  >>> spec = regret.beta_grid(b1=[0.5, 0.9], b2=[0.25, 0.81, 0.99], seeds=2,
  ...                         adversaries=["switch", "gaussian"], T=200, d=2)
  >>> spec.n_games        # switch is deterministic: once per (b1, b2)
  18
  >>> result = regret.run_beta_grid(spec, progress=False)
  >>> sorted(set(result.table["adversary"].tolist()))
  ['gaussian', 'switch']
  >>> bool((result.table["regret_over_bound"] <= 1).all())   # D3 holds
  True

References:
  Nguyen, *How to Set beta1, beta2 in Adam: An Online Learning Perspective*,
  ALT 2026, https://arxiv.org/abs/2510.03478.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from ftrl_adam.lab import engine
from ftrl_adam.lab import options as _opt
from ftrl_adam.lab.experiment import run_experiment
from ftrl_adam.lab.protocol import Heatmap
from ftrl_adam.lab.protocol import Part
from ftrl_adam.lab.protocol import Result
from ftrl_adam.lab.protocol import Size
from ftrl_adam.lab.protocol import concat
from ftrl_adam.lab.regret import bounds
from ftrl_adam.lab.regret import cells as _cells
from ftrl_adam.lab.regret import registry as _registry
from ftrl_adam.lab.regret import worst as _worst
from ftrl_adam.lab.regret.registry import BETA_GRID_ADVERSARIES
from ftrl_adam.lab.regret.registry import GridAdversary
from ftrl_adam.lab.regret import summary as _summary

__all__ = (
    "BETA_GRID_ADVERSARIES",
    "BETA_GRID_COLUMNS",
    "BETA_GRID_OPTIONS",
    "BetaGrid",
    "BetaGridResult",
    "QUICK",
    "beta_grid",
    "run_beta_grid",
)

FORMAT = "ftrl_adam.regret.beta_grid"

# The columns of results.csv, in order (one row per game).
BETA_GRID_COLUMNS = (
    # settings (every hyperparameter is a column)
    "adversary", "stochastic", "domain", "T", "d", "G", "kappa",
    "b1", "b2", "radius", "c", "lr", "seed",
    # results
    "horizon", "regret", "max_regret", "bound", "bound_d4",
    "regret_over_bound", "minimax", "regret_over_minimax", "order",
    "regret_over_order", "nonfinite_round",
)

#: The options of :func:`beta_grid` (and the flags of ``ftrl-adam regret``).
BETA_GRID_OPTIONS: tuple[_opt.Option, ...] = (
    _opt.Option("b1", "log1m:0.5:0.99:16",
                f"b1 axis, values in (0, 1): {_opt.AXIS_HELP}."),
    _opt.Option("b2", "log1m:0.25:0.995:24",
                f"b2 axis, values in (0, 1): {_opt.AXIS_HELP}."),
    _opt.Option("seeds", "8",
                "a number of seeds n (seeds 0..n-1) or a list '3,7'."),
    _opt.Option("adversaries", "switch,alternating,gaussian",
                "comma-separated adversaries: switch (D5), alternating (D6), "
                "gaussian, rademacher, sparse, heavy_tailed, oppose, abs_w "
                "(D7, adaptive), worst (alias worst_case: the worst sequence "
                "per cell, searched; box domain), replay:PATH (gradients "
                "recorded by ftrl_adam.RegretRecorder), or your own as "
                "module:attribute (an Adversary, or a function returning "
                "one)."),
    _opt.Option("T", 2000, "rounds per game (switch stops each cell at its "
                "own L + k).", type=int),
    _opt.Option("d", 64, "dimension of each game.", type=int),
    _opt.Option("radius", "1.0", "radius D > 0 of the learner's domain: a "
                f"value or an axis ({_opt.AXIS_HELP})."),
    _opt.Option("c", None, "the constant c > 0 of Algorithm 1 as an axis "
                "(learning rate c sqrt(1-b2)/(1-b1)); default c = D."),
    _opt.Option("lr", None, "learning rates > 0 as an axis instead of c "
                "(then c = lr (1-b1)/sqrt(1-b2) per cell).", flag="--lrs"),
    _opt.Option("G", 1.0, "gradient scale of the adversaries.", type=float),
    _opt.Option("kappa", 1.0, "length factor of the switch sequence's -G "
                "phase.", type=float),
    _opt.Option("domain", "box", "the learner's domain (ball: one global "
                "second moment).", choices=("box", "ball")),
    _opt.Option("method", "sequential", "sequential (lax.scan over rounds) or "
                "parallel (associative scans over time; oblivious adversaries "
                "only; O(T d) memory per game, no shared streams).",
                choices=("sequential", "parallel")),
    _opt.Option("search_restarts", 16, "ascent restarts per cell of the "
                "worst-case search (with --adversaries worst).", type=int),
    _opt.Option("search_steps", 128, "ascent steps per restart of the "
                "worst-case search.", type=int),
    _opt.Option("chunk_size", None, "games per compiled chunk (bounds device "
                "memory; the resume granularity); default from T, d and the "
                "platform.", type=int),
)

#: The tiny grid of ``ftrl-adam regret --quick`` (seconds).
QUICK = {"b1": "log1m:0.5:0.9:3", "b2": "log1m:0.25:0.95:3", "seeds": "2",
         "adversaries": "switch,gaussian", "T": 300, "d": 4}

# Elements (games x d, or games x T x d on the time-parallel path) per chunk
# when `chunk_size` is not given.  Shared streams: a chunk holds whole groups.
_AUTO_CHUNK_ELEMENTS = {
    ("cpu", "shared"): 2 ** 20, ("cpu", "per_cell"): 2 ** 14,
    ("cpu", "parallel"): 2 ** 23,
    ("accelerator", "shared"): 2 ** 24, ("accelerator", "per_cell"): 2 ** 22,
    ("accelerator", "parallel"): 2 ** 26,
}
# Documented throughput for the time estimate, in coordinate-rounds/s
# (`ftrl-adam bench grid` on 2 CPU cores; 0 = unknown on this platform).
_RATE = {"cpu": 3.0e8}
# Host bytes per row of the results table while it is assembled (25 columns,
# the chunks, the joined table and the CSV text).
_ROW_BYTES = 600
# Device bytes per game coordinate in a chunk (state, plays, sums, streams).
_CELL_COORD_BYTES = 64


def _platform() -> str:
  return "cpu" if jax.default_backend() == "cpu" else "accelerator"


# ============================================================================
# The specification.
# ============================================================================

@dataclasses.dataclass(frozen=True)
class BetaGrid:
  """A checked beta-grid (build it with :func:`beta_grid`): an experiment.

  Attributes:
    b1: the b1 values, in (0, 1), as float32-exact Python floats.
    b2: the b2 values, in (0, 1).
    seeds: the integer seeds.
    adversaries: the :class:`GridAdversary` entries.
    T: rounds per game.
    d: dimension of each game.
    radius: the radii D of the learner's domain (and of the comparator set).
    c: the constants c of Algorithm 1 as an axis, or None.
    lr: the learning rates as an axis (then c = lr (1 - b1) / sqrt(1 - b2)
      per cell), or None.  With neither, c = D (the theory's choice [R]).
    G: gradient scale of the adversaries.
    kappa: length factor of the switch sequence's second phase.
    domain: ``"box"`` or ``"ball"``.
    method: ``"sequential"`` or ``"parallel"``.
    chunk_size: games per compiled chunk, or None (automatic).
    search_restarts: restarts per cell of the worst-case search.
    search_steps: ascent steps per restart of the worst-case search.
  """

  b1: tuple[float, ...]
  b2: tuple[float, ...]
  seeds: tuple[int, ...]
  adversaries: tuple[GridAdversary, ...]
  T: int
  d: int
  radius: tuple[float, ...]
  c: Optional[tuple[float, ...]]
  lr: Optional[tuple[float, ...]]
  G: float
  kappa: float
  domain: str
  method: str
  chunk_size: Optional[int]
  search_restarts: int = 16
  search_steps: int = 128

  FORMAT = FORMAT
  WHAT = "beta-grid"
  FIGURE_PREFIXES = ("regret_", "ratio_")
  EXTRA_TABLES = ()

  @property
  def rate(self) -> str:
    """``"lr"`` when learning rates are the axis, else ``"c"``."""
    return "lr" if self.lr is not None else "c"

  @property
  def names(self) -> tuple[str, ...]:
    """The adversaries' names."""
    return tuple(a.name for a in self.adversaries)

  @property
  def n_learners(self) -> int:
    """Learner cells: b1 x b2 x radius x (c or lr)."""
    return (len(self.b1) * len(self.b2) * len(self.radius)
            * len(self.lr or self.c or (0,)))

  def _seeds_of(self, adv: GridAdversary) -> tuple[int, ...]:
    return self.seeds if adv.stochastic else self.seeds[:1]

  def n_cells_of(self, adv: GridAdversary) -> int:
    return self.n_learners * len(self._seeds_of(adv))

  @property
  def n_games(self) -> int:
    """Games in all (a deterministic adversary plays once per learner cell)."""
    return sum(self.n_cells_of(a) for a in self.adversaries)

  def learners(self) -> dict[str, np.ndarray]:
    """The learner cells: b1, b2, radius, c, lr (b1 slowest), float32.

    Of c and lr the one that is not an axis is derived here in float32
    (c = D without either), on the host, so that it does not depend on how
    cells share a device.
    """
    axes: dict[str, Any] = {"b1": self.b1, "b2": self.b2,
                            "radius": self.radius}
    if self.c is not None:
      axes["c"] = self.c
    if self.lr is not None:
      axes["lr"] = self.lr
    t = engine.product(**axes)
    if self.lr is not None:
      t["c"] = _opt.c_from_lr(t["lr"], t["b1"], t["b2"])
    elif self.c is None:                        # c = D, the theory's choice
      t["c"] = t["radius"].copy()
    if self.lr is None:
      t["lr"] = _opt.lr_from_c(t["c"], t["b1"], t["b2"])
    return {k: t[k] for k in ("b1", "b2", "radius", "c", "lr")}

  def config(self) -> dict[str, Any]:
    """The whole run as JSON-ready data (run.json; compared on a resume)."""
    out = {k: (list(v) if isinstance(v, tuple) else v)
           for k, v in dataclasses.asdict(self).items() if k != "adversaries"}
    out["adversaries"] = [a.name for a in self.adversaries]
    out["adversary_identity"] = {a.name: a.identity for a in self.adversaries}
    return out

  # -------------------------------------------------------------- experiment

  def _chunk(self, adv: GridAdversary) -> int:
    if self.chunk_size is not None:
      return self.chunk_size
    if adv.mode == "search":   # a search holds restarts x T per cell
      return max(1, min(self.n_cells_of(adv),
                        2 ** 21 // (self.search_restarts * self.T)))
    mode = "parallel" if self.method == "parallel" else adv.mode
    per_game = self.d * (self.T if mode == "parallel" else 1)
    budget = _AUTO_CHUNK_ELEMENTS[(_platform(), mode)]
    return max(1, min(self.n_cells_of(adv), budget // per_game))

  def _group_size(self, adv: GridAdversary) -> Optional[int]:
    if adv.mode != "shared" or self.method == "parallel":
      return None
    k, streams = self.n_learners, len(self._seeds_of(adv))
    n_dev = jax.device_count()
    if streams >= n_dev:
      return k
    # Few streams: split each stream's learners so every device gets a group.
    want = -(-n_dev // streams)
    return next(g for g in range(k // want, 0, -1) if k % g == 0) if (
        k >= want) else 1

  def size(self) -> Size:
    """Games, coordinate-rounds and memory, without building anything."""
    cells = self.n_games
    chunk = max(self._chunk(a) for a in self.adversaries)
    per_game = self.d * (self.T if self.method == "parallel" else 1)
    names = ", ".join(f"--{n}" for n in ("b1", "b2", "seeds", "radius"))
    work = sum(self.n_cells_of(a) * self.T * self.d * (
        self.search_restarts * self.search_steps if a.mode == "search" else 1)
               for a in self.adversaries)
    return Size(
        cells=cells, work=float(work),
        unit="coordinate-rounds", host_bytes=float(cells) * _ROW_BYTES,
        chunk_bytes=float(chunk) * per_game * _CELL_COORD_BYTES,
        rate=_RATE.get(_platform(), 0.0) if self.method == "sequential" else 0.0,
        too_big_hint=f"use fewer values of {names} (or split the grid into "
                     f"several runs)")

  def parts(self, done: Sequence[tuple[Part, Any]] = ()) -> list[Part]:
    """One compiled program per adversary (all at once; none once done)."""
    return [] if done else [self._part(a) for a in self.adversaries]

  def _table(self, adv: GridAdversary) -> dict[str, np.ndarray]:
    learners = self.learners()
    k = self.n_learners
    seeds = np.asarray(self._seeds_of(adv), np.int32)
    # Seed slowest: each seed's learners are consecutive (a shared stream).
    t = {name: np.tile(col, len(seeds)) for name, col in learners.items()}
    t["seed"] = np.repeat(seeds, k)
    return t

  def _part(self, adv: GridAdversary) -> Part:
    T, d, domain, G, kappa = self.T, self.d, self.domain, self.G, self.kappa
    group = self._group_size(adv)
    config = {"kind": FORMAT, "adversary": adv.name,
              "identity": adv.identity, "T": T, "d": d, "G": G,
              "domain": domain, "method": self.method, "rate": self.rate,
              "mode": adv.mode if self.method == "sequential" else "parallel"}
    if adv.name == "switch" and adv.identity == "switch":
      config["kappa"] = kappa
    if adv.mode == "search":
      config.update(restarts=self.search_restarts, steps=self.search_steps,
                    sweeps=_worst.DEFAULT_SWEEPS)
      cell_fn = _cells.worst_cell_fn(T=T, d=d, G=G,
                                     restarts=self.search_restarts,
                                     steps=self.search_steps)
    elif group is not None:
      cell_fn = _cells.shared_group_fn(adv, T=T, d=d, domain=domain, G=G,
                                       kappa=kappa)
    else:
      cell_fn = _cells.per_cell_fn(adv, T=T, d=d, domain=domain, G=G,
                                   kappa=kappa, method=self.method)
    return Part(
        name=adv.name, n_cells=self.n_cells_of(adv),
        table=lambda: self._table(adv), cell_fn=cell_fn, config=config,
        chunk_size=self._chunk(adv), group_size=group,
        work_per_cell=float(T * d) * (
            self.search_restarts * self.search_steps
            if adv.mode == "search" else 1))

  def assemble(self, results: Sequence[tuple[Part, Mapping[str, np.ndarray]]]
               ) -> dict[str, np.ndarray]:
    """The parts' tables joined, with the order columns, rows in grid order."""
    return concat([self._part_table(part, res) for part, res in results],
                  self.csv_columns(None))

  def _adversary(self, part: Part) -> GridAdversary:
    return next(a for a in self.adversaries if a.name == part.name)

  def _part_table(self, part: Part, res: Mapping[str, np.ndarray]
                  ) -> dict[str, np.ndarray]:
    """One part's rows with the order columns, in grid order."""
    adv = self._adversary(part)
    res = _with_orders(res, adv, self)
    n, k = len(res["b1"]), self.n_learners
    # Rows were run seed-major (streams); put them in grid order.
    order = np.lexsort((np.repeat(np.arange(n // k), k),
                        np.tile(np.arange(k), n // k)))
    res = {k: np.asarray(v)[order] for k, v in res.items()}
    res.update({
        "adversary": np.full(n, part.name), "domain": np.full(n, self.domain),
        "stochastic": np.full(n, adv.stochastic),
        "T": np.full(n, self.T, np.int32), "d": np.full(n, self.d, np.int32),
        "G": np.full(n, self.G, np.float32),
        "kappa": np.full(n, self.kappa, np.float32)})
    if self._searches:
      res = _cells.with_search_columns(res, n)
    return res

  @property
  def _searches(self) -> bool:
    return any(a.mode == "search" for a in self.adversaries)

  def csv_columns(self, table: Optional[Mapping[str, np.ndarray]]
                  ) -> Sequence[str]:
    return BETA_GRID_COLUMNS + (_cells.WORST_COLUMNS if self._searches else ())

  def extra_tables(self, table: Mapping[str, np.ndarray]) -> dict[str, Any]:
    return {}

  def summarize(self, table: Mapping[str, np.ndarray],
                extra: Mapping[str, Any] = ()) -> list[dict[str, Any]]:
    """Per adversary, (radius, c/lr) setting and b1: the best b2 next to b1^2
    (:func:`ftrl_adam.lab.regret.summary.summarize`)."""
    return _summary.summarize(self, table)

  def format_summary(self, result: Result) -> str:
    """The summary of a run as text (what ``ftrl-adam regret`` prints)."""
    return _summary.format_summary(self, result)

  def figures(self, result: Result) -> list[Heatmap]:
    """regret_<adv>.png, ratio_<adv>.png and regret_worst.png, as data."""
    return _summary.heatmaps(self, result.table)


def beta_grid(**options: Any) -> BetaGrid:
  """Checks a beta-grid's options and returns its :class:`BetaGrid`.

  Nothing is traced or compiled.  Every option has the default of
  ``ftrl-adam regret`` (:data:`BETA_GRID_OPTIONS`, listed once): 16 x 24
  (b1, b2) with 1 - b log-spaced, 8 seeds, switch, alternating and Gaussian
  adversaries, T = 2000, d = 64.  Axes are lists, arrays, scalars or the
  command-line specs of :func:`ftrl_adam.grid.parse_axis` (``"0.9,0.99"``,
  ``"lin:a:b:n"``, ``"log:a:b:n"``, ``"log1m:a:b:n"``).

  Args:
    **options: any of :data:`BETA_GRID_OPTIONS`: ``b1``, ``b2`` (axes in
      (0, 1)), ``seeds`` (a count or a list), ``adversaries`` (names,
      ``module:attribute`` strings, :class:`~ftrl_adam.regret.Adversary`
      objects, or a comma-separated string), ``T``, ``d`` (ints >= 1),
      ``radius`` (> 0, an axis), ``c`` or ``lr`` (> 0, an axis; not both),
      ``G``, ``kappa`` (> 0), ``domain`` (``"box"``, ``"ball"``), ``method``
      (``"sequential"``, ``"parallel"``), ``chunk_size`` (int >= 1).

  Returns:
    A :class:`BetaGrid`.

  Raises:
    ValueError: naming the bad option and what it allows.
    TypeError: an unknown option.

  Example:
    >>> from ftrl_adam import regret
    >>> g = regret.beta_grid(b1="log1m:0.9:0.999:3", b2=[0.99], seeds=2)
    >>> g.b1, g.n_games, g.names
    ((0.8999999761581421, 0.9900000095367432, 0.9990000128746033), 12, ('switch', 'alternating', 'gaussian'))
  """
  o = _opt.fill(BETA_GRID_OPTIONS, options, "beta_grid")
  b1 = _opt.axis("b1", o["b1"], low=0.0, high=1.0)
  b2 = _opt.axis("b2", o["b2"], low=0.0, high=1.0)
  seeds = _opt.seeds(o["seeds"])
  advs = _registry.resolve(o["adversaries"])
  T = _opt.positive_int("T", o["T"])
  d = _opt.positive_int("d", o["d"])
  radius = _opt.axis("radius", o["radius"], low=0.0)
  if o["c"] is not None and o["lr"] is not None:
    raise ValueError("Give `c` or `lr` (learning rates), not both: the "
                     "learner's c = lr (1 - b1) / sqrt(1 - b2).")
  c = None if o["c"] is None else _opt.axis("c", o["c"], low=0.0)
  lr = None if o["lr"] is None else _opt.axis("lr", o["lr"], low=0.0)
  G = _opt.positive_float("G", o["G"])
  kappa = _opt.positive_float("kappa", o["kappa"])
  domain = _opt.choice("domain", o["domain"], _opt.DOMAINS)
  method = _opt.choice("method", o["method"], ("sequential", "parallel"))
  if method == "parallel":
    adaptive = [a.name for a in advs if a.kind != "oblivious"]
    if adaptive:
      raise ValueError(
          f"`method` 'parallel' needs oblivious adversaries; `adversaries` "
          f"{', '.join(adaptive)} are adaptive; use `method` 'sequential'.")
  short = [a for a in advs if a.length is not None and a.length < T]
  if short:
    raise ValueError(
        f"`T` = {T} is longer than the {short[0].length} rounds of adversary "
        f"{short[0].name!r} (a recorded or given sequence); use `T` <= "
        f"{min(a.length for a in short)} (a shorter T plays the first T "
        f"rounds).")
  # A user's adversary is traced now, as the grid will trace it: a wrong
  # shape or dtype, a scalar, an exception or a non-finite first gradient is
  # one line naming it (nothing broadcast or cast), before anything compiles.
  _registry.check_adversaries(advs, T=T, d=d, G=G, kappa=kappa)
  searches = [a.name for a in advs if a.mode == "search"]
  if searches and (domain != "box" or method != "sequential"):
    raise ValueError(
        f"`adversaries` {searches[0]} (the worst-case search) runs in the box "
        f"domain with the sequential method; got `domain` {domain!r}, "
        f"`method` {method!r}.")
  restarts = _opt.positive_int("search_restarts", o["search_restarts"])
  steps = _opt.positive_int("search_steps", o["search_steps"])
  chunk = o["chunk_size"]
  chunk = None if chunk is None else _opt.positive_int("chunk_size", chunk)
  return BetaGrid(b1=b1, b2=b2, seeds=seeds, adversaries=advs, T=T, d=d,
                  radius=radius, c=c, lr=lr, G=G, kappa=kappa, domain=domain,
                  method=method, chunk_size=chunk, search_restarts=restarts,
                  search_steps=steps)


BetaGridResult = Result


def run_beta_grid(
    spec: BetaGrid,
    *,
    out_dir: Optional[str | os.PathLike] = None,
    progress: bool = True,
    overwrite: bool = False,
    on_chunk: Optional[Callable[[engine.ChunkInfo], None]] = None,
    plots: bool = True,
    redraw: bool = False,
    reproducible: bool = False,
) -> Result:
  """Runs a beta-grid with the lab's runner (size check, parts, files).

  See :func:`ftrl_adam.lab.experiment.run_experiment` for the arguments and
  the results folder.  The table (``result.table``, ``results.csv``) has the
  columns :data:`BETA_GRID_COLUMNS`, one row per game, adversaries in
  ``spec`` order and in each the rows in grid order (b1 slowest, seed
  fastest); ``result.text`` is the printed summary.  ``reproducible=True``
  makes every cell equal its single game bit for bit (2-3x slower on CPU);
  the default equals it to float32 rounding.  With ``out_dir`` and ``plots``:
  ``regret_<adv>.png`` (mean over seeds of regret / minimax order, the curve
  b2 = b1^2 drawn on), ``ratio_<adv>.png`` (worst regret / D3 over seeds)
  and, with two or more adversaries, ``regret_worst.png``; a suffix such as
  ``_radius=0.5_c=0.5`` tells radius/c/lr variants apart.

  Returns:
    A :class:`BetaGridResult` (:class:`ftrl_adam.lab.protocol.Result`).
  """
  if not isinstance(spec, BetaGrid):
    raise TypeError(f"`spec` must be a BetaGrid from regret.beta_grid(...), "
                    f"got {type(spec).__name__}.")
  return run_experiment(spec, out_dir=out_dir, progress=progress,
                        overwrite=overwrite, plots=plots, redraw=redraw,
                        reproducible=reproducible, on_chunk=on_chunk)


# ============================================================================
# Orders, summaries, heatmaps.
# ============================================================================

def _with_orders(res: Mapping[str, np.ndarray], adv: GridAdversary,
                 spec: BetaGrid) -> dict[str, np.ndarray]:
  """Adds the ratio and order columns (float32, on the host, whole table)."""
  f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
  scale = np.float32(spec.d if spec.domain == "box" else math.sqrt(spec.d))
  b1, b2, radius = res["b1"], res["b2"], res["radius"]
  minimax = scale * f32(bounds.minimax_order(radius, spec.G, b1))
  order = scale * f32(_registry.ORDERS[adv.order](radius, spec.G, b1, b2))
  regret_v = f32(res["regret"])
  with np.errstate(divide="ignore", invalid="ignore"):
    return {**res, "regret_over_bound": regret_v / f32(res["bound"]),
            "minimax": minimax, "regret_over_minimax": regret_v / minimax,
            "order": order, "regret_over_order": regret_v / order}
