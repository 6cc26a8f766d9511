"""The beta-grid's report: the best b2 of each b1, as rows and text, and its figures.

The summary rows (``run.json``), the printed text (``summary.txt``) and the
heatmaps (as :class:`~ftrl_adam.lab.protocol.Heatmap` data) of a
:class:`~ftrl_adam.lab.regret.study.BetaGrid`, in the same words: the text
says what each figure's colour is.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ftrl_adam.lab import engine
from ftrl_adam.lab.protocol import Heatmap
from ftrl_adam.lab.protocol import Result
from ftrl_adam.lab.protocol import seconds_line
from ftrl_adam.lab.regret import bounds
from ftrl_adam.lab.report import summary as _report
from ftrl_adam.lab.report.summary import number


def summarize(spec: Any, table: Mapping[str, np.ndarray]
              ) -> list[dict[str, Any]]:
  """Per adversary, (radius, c/lr) setting and b1: the best b2 next to b1^2.

  Rows of :func:`ftrl_adam.lab.report.best_b2_per_b1` on the mean regret
  over seeds, with ``adversary``, ``radius``, ``c`` or ``lr`` and
  ``worst_regret_over_bound`` (the max over b2 and seeds).  With two or
  more adversaries also the rows of adversary ``"worst"``: the max over
  adversaries of the mean regret / minimax order (the oblivious worst case
  of docs/theory.md D5 + D6 over this family).
  """
  rows = []
  for var in variants(table, spec.rate):
    worst_z = worst_ratio = xs = ys = None
    for adv in spec.names:
      where = {**var, "adversary": adv}
      _, _, zr = engine.pivot(table, "regret_over_bound", reduce="max",
                            where=where)
      xs, ys, zn = engine.pivot(table, "regret_over_minimax", where=where)
      worst_z = zn if worst_z is None else np.fmax(worst_z, zn)
      worst_ratio = zr if worst_ratio is None else np.fmax(worst_ratio, zr)
      for r, ratio in zip(_report.best_b2_per_b1(table, "regret",
                                                 where=where),
                          np.nanmax(np.where(np.isfinite(zr), zr, -np.inf),
                                    axis=0), strict=True):
        rows.append({"adversary": adv, **_var_floats(var), **r,
                     "worst_regret_over_bound": float(ratio)})
    if len(spec.names) > 1:
      for r, ratio in zip(
          _report.best_b2_per_b1(None, "", matrix=(xs, ys, worst_z)),
          np.nanmax(worst_ratio, axis=0), strict=True):
        rows.append({"adversary": "worst", **_var_floats(var), **r,
                     "worst_regret_over_bound": float(ratio)})
  return rows

def format_summary(spec: Any, result: Result) -> str:
  """The summary table of a run as text (what ``ftrl-adam regret`` prints)."""
  table = result.table
  listed = lambda xs: "[" + ", ".join(number(x) for x in xs) + "]"  # noqa: E731
  rate_txt = ("c = D" if spec.c is None and spec.lr is None else
              f"{spec.rate} in {listed(spec.c or spec.lr)}")
  lines = [
      f"beta-grid: {len(spec.b1)} b1 x {len(spec.b2)} b2 x "
      f"{len(spec.seeds)} seed(s) x {len(spec.radius)} radius x "
      f"{len(spec.c or spec.lr or (0,))} {spec.rate}, T={spec.T}, "
      f"d={spec.d}, D in {listed(spec.radius)}, {rate_txt}, G={number(spec.G)}, "
      f"domain {spec.domain}; {spec.n_games:,} games in "
      f"{seconds_line(result)}"]
  by_block: dict[tuple, list] = {}
  for row in result.summary:
    key = (row["adversary"], row["radius"], row.get("c", row.get("lr")))
    by_block.setdefault(key, []).append(row)
  multi = len(variants(table, spec.rate)) > 1
  stoch = {a.name: a.stochastic for a in spec.adversaries}
  for (adv, radius, rate_v), rows in by_block.items():
    if adv == "worst":
      what, label = ("max over adversaries of mean regret / minimax order "
                     "d D G / sqrt(1 - b1^2)"), "regret/minimax"
    elif adv == "worst_case":
      what, label = (f"the worst sequence per cell, searched: "
                     f"{spec.search_restarts} restarts x "
                     f"{spec.search_steps} ascent steps"), "regret"
    elif stoch[adv]:
      what, label = f"mean regret over {len(spec.seeds)} seed(s)", "regret"
    else:
      what, label = "deterministic: one game per cell", "regret"
    var = (f", D={number(radius)}, {spec.rate}={number(rate_v)}" if multi
           else "")
    lines += ["", f"{adv}{var} ({what}):"]
    lines += _report.format_rows(
        rows, label, [
            ("at b1^2 / best",
             lambda r: "-" if r["best"] <= 0
             else _report.fmt(r["at_b1_squared"] / r["best"])),
            ("max regret/D3",
             lambda r: _report.fmt(r["worst_regret_over_bound"]))])
    if any(r["best"] <= 0 for r in rows):
      lines.append("  - at b1^2 / best: the best regret is not positive, "
                   "so a ratio to it means nothing.")
  bad = np.asarray(table["nonfinite_round"]) > 0
  if bad.any():
    lines += ["", f"warning: {int(bad.sum())} game(s) saw a non-finite "
                  f"gradient (column nonfinite_round)."]
  lines += ["", f"figures: regret_<adversary>.png = {REGRET_FIGURE}; "
                f"ratio_<adversary>.png = {RATIO_FIGURE}"
                + ("; regret_worst.png = their max over adversaries"
                   if len(spec.names) > 1 else "") + "."]
  if "switch" in spec.names:
    sw = np.asarray(table["adversary"]) == "switch"
    big_l, k = bounds.switch_lengths(np.asarray(table["b1"])[sw],
                                     np.asarray(table["b2"])[sw], spec.kappa)
    cut = int(np.sum(np.asarray(big_l) + np.asarray(k) > spec.T))
    if cut:
      lines += ["", f"note: {cut} switch game(s) need L + k > T = {spec.T} "
                    f"rounds and were cut at T (raise T, or lower b2)."]
  return "\n".join(lines)


def variants(table: Mapping[str, np.ndarray], rate: str) -> list[dict[str, Any]]:
  """Distinct (radius, c or lr) settings, in table order."""
  seen, out = set(), []
  for r, v in zip(np.asarray(table["radius"]).tolist(),
                  np.asarray(table[rate]).tolist(), strict=True):
    if (r, v) not in seen:
      seen.add((r, v))
      out.append({"radius": np.float32(r), rate: np.float32(v)})
  return out


def _var_floats(var: Mapping[str, Any]) -> dict[str, float]:
  return {k: float(v) for k, v in var.items()}


def _suffix(var: Mapping[str, Any], multi: bool) -> str:
  if not multi:
    return ""
  return "".join(f"_{k}={number(v)}" for k, v in var.items())


# What the figures show, in the summary's words (summary.txt says the same).
REGRET_FIGURE = ("mean regret over seeds / minimax order d D G / sqrt(1 - b1^2)")
RATIO_FIGURE = "regret / bound D3, max over seeds"


def heatmaps(spec: Any, table: Mapping[str, np.ndarray]) -> list[Heatmap]:
  """The heatmaps of every adversary, and the worst over adversaries."""
  out = []
  settings = variants(table, spec.rate)
  multi = len(settings) > 1
  seeds = len(spec.seeds)
  for var in settings:
    sfx = _suffix(var, multi)
    where_txt = sfx.replace("_", ", ")
    highest = xs = ys = None
    for adv in spec.adversaries:
      where = {**var, "adversary": adv.name}
      xs, ys, z = engine.pivot(table, "regret_over_minimax", where=where)
      highest = z if highest is None else np.fmax(highest, z)
      over = ("searched per cell" if adv.mode == "search" else
              f"mean of {seeds} seeds" if adv.stochastic else "deterministic")
      head = f"T={spec.T}, d={spec.d}{where_txt}"
      out.append(Heatmap(
          name=f"regret_{adv.name}{sfx}", value="regret_over_minimax",
          where=where, log_value=True, overlays=("b2=b1^2",),
          label=REGRET_FIGURE.replace(" over seeds", "")
          if adv.stochastic else "regret / minimax order",
          title=f"{adv.name}: regret / minimax order ({over})\n{head}"))
      out.append(Heatmap(
          name=f"ratio_{adv.name}{sfx}", value="regret_over_bound",
          where=where, reduce="max", overlays=("b2=b1^2",),
          label=RATIO_FIGURE if adv.stochastic else "regret / bound D3",
          title=f"{adv.name}: regret / bound D3"
                f"{f', worst of {seeds} seeds' if adv.stochastic else ''}"
                f"\n{head}"))
    if len(spec.adversaries) > 1:
      bb1, bb2 = np.meshgrid(xs, ys)
      out.append(Heatmap(
          name=f"regret_worst{sfx}", value="worst", reduce="max",
          data={"b1": bb1.reshape(-1), "b2": bb2.reshape(-1),
                "worst": highest.reshape(-1)},
          log_value=True, overlays=("b2=b1^2",),
          label="max over adversaries of regret / minimax order",
          title=f"worst of {', '.join(spec.names)}: regret / minimax order\n"
                f"T={spec.T}, d={spec.d}, {seeds} seed(s){where_txt}"))
  return out
