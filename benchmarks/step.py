"""Run ``ftrl_adam.lab.cli.bench.step`` (same as ``ftrl-adam bench step``); see its docstring."""

import sys

from ftrl_adam import grid
from ftrl_adam.lab.cli.bench.step import main

if __name__ == "__main__":
  grid.use_cpu_cores()   # one XLA device per core, as `ftrl-adam bench` does
  sys.exit(main())
