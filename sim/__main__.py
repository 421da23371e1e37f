"""``python -m sim``: the simulator's commands without the kiosk's (service processes)."""

import sys

from sim.cli import main

sys.exit(main())
