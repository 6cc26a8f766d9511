"""Run ``ftrl_adam.bench.study`` (same as ``ftrl-adam bench study``); see its docstring."""

import sys

from ftrl_adam.bench.study import main

if __name__ == "__main__":
  sys.exit(main())
