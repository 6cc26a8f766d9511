"""``python -m ftrl_adam.studies``: the ``ftrl-adam study`` command."""

import sys

from ftrl_adam.studies.cli import main

sys.exit(main())
