"""``python -m kernel_magics SUBCOMMAND ...`` (see :mod:`kernel_magics.cli`)."""

import sys

from kernel_magics.cli import main

sys.exit(main())
