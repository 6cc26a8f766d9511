"""Benchmarks of the package (each module states its targets).

Run them as ``ftrl-adam bench step|grid|study [options]`` or
``python benchmarks/NAME.py``.  Each prints a table that names the device it
ran on and writes a JSON file (``--out``; by default ``benchmarks/results`` in
a checkout's root, else ``./bench-results``):

* :mod:`ftrl_adam.bench.step`: one optimizer step of ``ftrl_adam`` vs ``optax.adam``;
* :mod:`ftrl_adam.bench.grid`: the beta-grid of regret games, loop vs grid vs
  time-parallel, in coordinate-rounds per second;
* :mod:`ftrl_adam.bench.study`: K training configurations in one program vs K runs.

Speed is measured here, never in timed unit tests.
"""

BENCHMARKS = ("step", "grid", "study")
