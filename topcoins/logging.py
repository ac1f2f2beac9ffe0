"""One JSON object per log line on stdout, the same for every process."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

_FORMAT = "%(levelname)s %(name)s %(message)s"


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        _FORMAT,
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
    )


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
