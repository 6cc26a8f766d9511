"""Run ``ftrl_adam.bench.grid`` (same as ``ftrl-adam bench grid``); see its docstring."""

import sys

from ftrl_adam.bench.grid import main

if __name__ == "__main__":
  sys.exit(main())
