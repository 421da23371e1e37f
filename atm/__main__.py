"""``python -m atm``: the ``atm`` command."""

import sys

from atm.cli import main

sys.exit(main())
