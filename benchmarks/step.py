"""Run ``ftrl_adam.bench.step`` (same as ``ftrl-adam bench step``); see its docstring."""

import sys

from ftrl_adam.bench.step import main

if __name__ == "__main__":
  sys.exit(main())
