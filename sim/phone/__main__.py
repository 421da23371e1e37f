import sys

from sim.phone.cli import main

sys.exit(main())
