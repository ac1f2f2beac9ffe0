"""One JSON object per log line on stdout, the same for every process."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

_FORMAT = "%(levelname)s %(name)s %(message)s"


class Formatter(JsonFormatter):
    """The project's log line: level, logger, message, ISO timestamp, then any context."""

    def __init__(self) -> None:
        super().__init__(
            _FORMAT, rename_fields={"levelname": "level", "name": "logger"}, timestamp=True
        )


def json_formatter_path() -> str:
    """Dotted path of the formatter, for dictConfig users such as gunicorn."""
    return f"{Formatter.__module__}.{Formatter.__qualname__}"


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
