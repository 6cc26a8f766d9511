"""`ftrl-adam bench study` as a script (see its --help)."""
import sys
from ftrl_adam.lab import cli
sys.exit(cli.run(["bench", "study", *sys.argv[1:]]))
