"""Writing scrape results: one run record plus its rows, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select
from sqlalchemy.orm import Session

from topcoins.models import Base, RunStatus, ScrapeRun, Source

# Session-level advisory lock keys, one per source, so that two runs of the same
# scraper never overlap while the two scrapers never wait for each other.
LOCK_KEYS = {Source.CRYPTOCOMPARE: 7_140_101, Source.COINMARKETCAP: 7_140_102}


@dataclass
class Snapshot:
    """What a successful fetch produced, ready to be written."""

    table: type[Base]
    rows: Sequence[dict[str, Any]]
    credit_count: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@contextmanager
def exclusive(engine: Engine, source: Source) -> Iterator[Connection | None]:
    """A connection holding the source's lock, or ``None`` if another run holds it.

    The lock lives as long as the connection, so a killed scraper cannot leave it behind.
    """
    key = LOCK_KEYS[source]
    with engine.connect() as connection:
        acquired = connection.scalar(select(func.pg_try_advisory_lock(key)))
        connection.commit()
        if not acquired:
            yield None
            return
        try:
            yield connection
        finally:
            connection.rollback()
            connection.execute(select(func.pg_advisory_unlock(key)))
            connection.commit()


def write_snapshot(
    session: Session,
    source: Source,
    started_at: datetime,
    snapshot: Snapshot,
    trace_id: str | None = None,
) -> ScrapeRun:
    run = ScrapeRun(
        source=source,
        status=RunStatus.SUCCEEDED,
        started_at=started_at,
        item_count=len(snapshot.rows),
        credit_count=snapshot.credit_count,
        trace_id=trace_id,
    )
    session.add(run)
    session.flush()
    session.execute(insert(snapshot.table), [{**row, "run_id": run.id} for row in snapshot.rows])
    return run


def record_failure(
    session: Session,
    source: Source,
    started_at: datetime,
    error: str,
    trace_id: str | None = None,
) -> ScrapeRun:
    run = ScrapeRun(
        source=source,
        status=RunStatus.FAILED,
        started_at=started_at,
        item_count=0,
        error=error,
        trace_id=trace_id,
    )
    session.add(run)
    session.flush()
    return run


def prune(session: Session, source: Source, retention: timedelta) -> int:
    """Delete runs older than the retention, but never the latest good snapshot."""
    latest_success = (
        select(func.max(ScrapeRun.id))
        .where(ScrapeRun.source == source, ScrapeRun.status == RunStatus.SUCCEEDED)
        .scalar_subquery()
    )
    result = session.execute(
        delete(ScrapeRun).where(
            ScrapeRun.source == source,
            ScrapeRun.finished_at < func.now() - retention,
            ScrapeRun.id != func.coalesce(latest_success, 0),
        )
    )
    return result.rowcount
