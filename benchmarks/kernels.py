"""`ftrl-adam bench kernels` as a script (see its --help)."""
import sys
from ftrl_adam.lab import cli
sys.exit(cli.run(["bench", "kernels", *sys.argv[1:]]))
