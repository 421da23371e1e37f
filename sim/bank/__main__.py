import sys

from sim.bank.cli import main

sys.exit(main())
