"""``python -m scrapers`` and the ``top-coins-scraper`` script: a CronJob's process, started
afresh for every run.

The imports make some 120 000 objects that live until exit.  The cyclic garbage collector
would walk them in every collection during the imports and once more at exit, which on a
small node costs more than the run itself; frozen, they are left out of every collection
(``gc.freeze``), and the run's own garbage is still collected.
"""

import gc
import sys


def main() -> int:
    gc.disable()
    try:
        from .cli import main as cli_main
    finally:
        gc.freeze()
        gc.enable()
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
