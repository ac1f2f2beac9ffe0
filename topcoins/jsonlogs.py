"""One JSON object per log line on stdout, the same for every process.

Every line written inside a request carries its ``request_id``, and every line
written inside a span carries ``trace_id`` and ``span_id``, so logs, traces and
responses can be joined.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

from topcoins.tracing import current_ids

_FORMAT = "%(levelname)s %(name)s %(message)s"

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


class ContextFilter(logging.Filter):
    """Adds the request id and the active span's ids to records that have none."""

    def filter(self, record: logging.LogRecord) -> bool:
        current_request = request_id.get()
        if current_request is not None and not hasattr(record, "request_id"):
            record.request_id = current_request
        ids = current_ids()
        if ids is not None and not hasattr(record, "trace_id"):
            record.trace_id, record.span_id = ids
        return True


class Formatter(JsonFormatter):
    """The project's log line: level, logger, message, ISO timestamp, then any context."""

    def __init__(self) -> None:
        super().__init__(
            _FORMAT, rename_fields={"levelname": "level", "name": "logger"}, timestamp=True
        )


def json_formatter_path() -> str:
    """Dotted path of the formatter, for dictConfig users such as gunicorn."""
    return f"{Formatter.__module__}.{Formatter.__qualname__}"


def context_filter_path() -> str:
    return f"{ContextFilter.__module__}.{ContextFilter.__qualname__}"


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(Formatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
