"""`ftrl-adam bench grid` as a script (see its --help)."""
import sys
from ftrl_adam.lab import cli
sys.exit(cli.run(["bench", "grid", *sys.argv[1:]]))
