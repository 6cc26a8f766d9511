"""python -m ftrl_adam.cli: the ftrl-adam command."""

import sys

from ftrl_adam.lab.cli import run

sys.exit(run())
