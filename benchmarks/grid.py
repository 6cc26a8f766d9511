"""Run ``ftrl_adam.lab.cli.bench.grid`` (same as ``ftrl-adam bench grid``); see its docstring."""

import sys

from ftrl_adam import grid
from ftrl_adam.lab.cli.bench.grid import main

if __name__ == "__main__":
  grid.use_cpu_cores()   # one XLA device per core, as `ftrl-adam bench` does
  sys.exit(main())
