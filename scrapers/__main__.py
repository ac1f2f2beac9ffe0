"""``python -m scrapers``: a CronJob's process, started afresh for every run.

The imports make some 120 000 objects that live until exit.  The cyclic garbage collector
would walk them in every collection during the imports and once more at exit, which on a
small node costs more than the run itself; frozen, they are left out of every collection
(``gc.freeze``), and the run's own garbage is still collected.
"""

import gc
import sys

gc.disable()
from .cli import main  # noqa: E402

gc.freeze()
gc.enable()
sys.exit(main())
