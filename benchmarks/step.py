"""`ftrl-adam bench step` as a script (see its --help)."""
import sys
from ftrl_adam.lab import cli
sys.exit(cli.run(["bench", "step", *sys.argv[1:]]))
