"""``top-coins-migrate`` (or ``python -m migrations``): ``alembic upgrade head`` with the
migrations installed beside this file, from any directory, no ``alembic.ini`` needed.

Other Alembic commands work too: ``top-coins-migrate current``, ``top-coins-migrate history``.
Like Alembic, it reads ``DATABASE_URL`` (see env.py).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from alembic.config import CommandLine, Config


def main(argv: Sequence[str] | None = None) -> int:
    cli = CommandLine(prog="top-coins-migrate")
    args = list(sys.argv[1:] if argv is None else argv) or ["upgrade", "head"]
    options = cli.parser.parse_args(args)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    config = Config(cmd_opts=options)
    config.set_main_option("script_location", str(Path(__file__).resolve().parent))
    # What alembic.ini's logging sections say; env.py reads them only from a file.
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)-5.5s [%(name)s] %(message)s", stream=sys.stderr
    )
    logging.getLogger("alembic").setLevel(logging.INFO)
    cli.run_cmd(config, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
