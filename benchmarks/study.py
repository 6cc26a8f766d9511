"""Run ``ftrl_adam.lab.cli.bench.study`` (same as ``ftrl-adam bench study``); see its docstring."""

import sys

from ftrl_adam import grid
from ftrl_adam.lab.cli.bench.study import main

if __name__ == "__main__":
  grid.use_cpu_cores()   # one XLA device per core, as `ftrl-adam bench` does
  sys.exit(main())
