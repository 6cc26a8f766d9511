"""python -m ftrl_adam.cli: the ftrl-adam command."""

import sys

from ftrl_adam.cli import main

sys.exit(main())
