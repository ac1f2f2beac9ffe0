"""The lock that keeps two runs of one kind apart: its row of ``scrape_locks``, held for the run.

A row lock (``SELECT … FOR UPDATE``) needs UPDATE on the table, which only the writer role
has: the API's SELECT-only role cannot take it, as it could an advisory lock, and so
cannot stop the scrapers.  It is held in an open transaction on a connection of its own,
idle for the whole run, so that:

- the run's work keeps transactions of its own;
- the server ends it as soon as the scraper's socket closes, since an idle backend is
  reading that socket;
- ``idle_in_transaction_session_timeout`` ends it once the run cannot be running any
  more, should the scraper hang or its host vanish.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from topcoins.models import RunKind, ScrapeLock

from .database import DATABASE_PREFIX, bound
from .deadline import Deadline
from .errors import ScrapeError

_HOLDER_AGE = text(
    "SELECT max(extract(epoch FROM clock_timestamp() - xact_start)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND application_name = :name "
    "AND pid <> pg_backend_pid()"
)


def lock_application_name(kind: RunKind) -> str:
    """How the lock's session shows in ``pg_stat_activity``."""
    return f"top-coins-lock-{kind.value}"


@dataclass(frozen=True)
class RunLock:
    acquired: bool
    # Held by another run: how long its lock transaction has been open, when the server
    # shows it (a role sees the transactions of its own sessions only).
    held_for: float | None = None


@contextmanager
def run_lock(engine: Engine, kind: RunKind, deadline: Deadline) -> Iterator[RunLock]:
    """The kind's lock, held until the block ends, or the news that another run holds it.

    ``engine`` is the lock's own, named by ``lock_application_name``.
    """
    with engine.connect() as connection:
        bound(connection, deadline)
        try:
            idle_ms = round((deadline.remaining() + deadline.grace_seconds) * 1000)
            connection.execute(
                select(func.set_config("idle_in_transaction_session_timeout", str(idle_ms), True))
            )
            row = select(ScrapeLock.kind).where(ScrapeLock.kind == kind)
            if connection.scalar(row.with_for_update(skip_locked=True)) is not None:
                yield RunLock(acquired=True)
                return
            if connection.scalar(row) is None:
                raise ScrapeError(
                    f"{DATABASE_PREFIX}scrape_locks has no {kind.value!r} row: run the migrations"
                )
            age = connection.scalar(_HOLDER_AGE, {"name": lock_application_name(kind)})
            yield RunLock(acquired=False, held_for=None if age is None else float(age))
        finally:
            _release(connection)


def _release(connection: Connection) -> None:
    """Ends the lock's transaction; the server may have ended the session already."""
    try:
        connection.rollback()
    except DBAPIError:
        connection.invalidate()
