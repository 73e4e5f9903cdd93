"""Entry point for ``python -m runbook_lib``; see :mod:`runbook_lib.cli`."""

import sys

from runbook_lib.cli import main

sys.exit(main())
