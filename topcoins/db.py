"""The engine factory; callers own their sessions and transactions."""

from __future__ import annotations

import sqlalchemy
from sqlalchemy import Engine

from topcoins.tracing import instrument_libraries


def make_engine(url: str, *, application_name: str, pool_size: int = 2) -> Engine:
    """One engine per process; ``pool_pre_ping`` so a restarted database is survived."""
    instrument_libraries()
    # Looked up at call time so that the OpenTelemetry wrapper around it applies.
    return sqlalchemy.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=2,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"application_name": application_name, "connect_timeout": 5},
    )
