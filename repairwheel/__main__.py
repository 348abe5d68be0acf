"""``python -m repairwheel``: the same as the ``repairwheel`` command."""

import sys

from .cli import run

sys.exit(run())
