"""The engine factory; callers own their sessions and transactions.

Every wait on the database is bounded: connecting, every statement, every lock, a
transaction left idle, and a peer that vanished without closing the connection (TCP
keepalives and ``tcp_user_timeout``, since a silent partition sends nothing at all).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy
from sqlalchemy import Engine


@dataclass(frozen=True)
class Timeouts:
    """Server-side limits of every session, in seconds; ``None`` leaves the server's default."""

    connect: float = 5.0
    statement: float | None = None
    lock: float | None = None
    idle_in_transaction: float | None = None
    # How long sent data may stay unacknowledged, and how soon an idle connection is probed.
    tcp_user: float = 10.0
    keepalive_idle: int = 5
    keepalive_interval: int = 2
    keepalive_count: int = 3


def make_engine(
    url: str,
    *,
    application_name: str,
    pool_size: int = 2,
    timeouts: Timeouts | None = None,
) -> Engine:
    """One engine per process; ``pool_pre_ping`` so a restarted database is survived."""
    limits = timeouts or Timeouts()
    settings = {
        "statement_timeout": limits.statement,
        "lock_timeout": limits.lock,
        "idle_in_transaction_session_timeout": limits.idle_in_transaction,
    }
    options = " ".join(
        f"-c {name}={round(seconds * 1000)}" for name, seconds in settings.items() if seconds
    )
    # Our queries are small and planned in microseconds; JIT compiles for tens of
    # milliseconds once a plan looks costly (a 5000-coin top_coins does) and never pays back.
    options = f"{options} -c jit=off".strip()
    connect_args: dict[str, object] = {
        "application_name": application_name,
        "connect_timeout": max(1, round(limits.connect)),
        "keepalives": 1,
        "keepalives_idle": limits.keepalive_idle,
        "keepalives_interval": limits.keepalive_interval,
        "keepalives_count": limits.keepalive_count,
        "tcp_user_timeout": round(limits.tcp_user * 1000),
    }
    connect_args["options"] = options
    # Looked up at call time so that the OpenTelemetry wrapper around it applies.
    return sqlalchemy.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=2,
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_timeout=limits.connect,
        connect_args=connect_args,
    )
