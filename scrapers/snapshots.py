"""Writing scrape results: one run record plus its rows, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, insert, select
from sqlalchemy.orm import Session

from topcoins.models import SNAPSHOT_CHANNEL, Base, RunKind, RunStatus, ScrapeRun, Source

from .budget import CreditBudget


@dataclass
class Snapshot:
    """What a successful fetch produced, ready to be written."""

    table: type[Base]
    rows: Sequence[dict[str, Any]]
    credit_count: int | None = None
    ticker_lookups: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # Further writes that must commit with the snapshot or not at all (the id map).
    prepare: Callable[[Session], None] | None = None


@dataclass
class RunRecord:
    """The columns a run's row gets whatever its outcome."""

    kind: RunKind
    source: Source
    started_at: datetime
    trace_id: str | None = None
    measure: str | None = None
    # What the run read of CoinMarketCap's credits, and spent, by the time it is written.
    budget: CreditBudget | None = None

    def row(self, status: RunStatus, **columns: Any) -> ScrapeRun:
        usage = self.budget.usage if self.budget else None
        return ScrapeRun(
            kind=self.kind,
            source=self.source,
            status=status,
            started_at=self.started_at,
            trace_id=self.trace_id,
            measure=self.measure,
            credit_limit_monthly=usage.credit_limit_monthly if usage else None,
            credits_left_monthly=usage.credits_left_monthly if usage else None,
            credits_reset_at=usage.reset_at if usage else None,
            **columns,
        )


def write_snapshot(session: Session, record: RunRecord, snapshot: Snapshot) -> ScrapeRun:
    run = record.row(
        RunStatus.SUCCEEDED,
        item_count=len(snapshot.rows),
        credit_count=snapshot.credit_count,
        ticker_lookups=snapshot.ticker_lookups,
    )
    session.add(run)
    session.flush()
    if snapshot.prepare is not None:
        snapshot.prepare(session)
    session.execute(insert(snapshot.table), [{**row, "run_id": run.id} for row in snapshot.rows])
    # Delivered when the transaction commits, and only if it does.
    session.execute(select(func.pg_notify(SNAPSHOT_CHANNEL, f"{record.kind}:{run.id}")))
    return run


def record_failure(session: Session, record: RunRecord, error: str) -> ScrapeRun:
    """A failed run keeps what it spent before it failed: credits are money either way."""
    spent = record.budget.spent if record.budget else None
    run = record.row(RunStatus.FAILED, item_count=0, error=error, credit_count=spent)
    session.add(run)
    session.flush()
    return run


def prune(session: Session, kind: RunKind, retention: timedelta) -> int:
    """Delete runs older than the retention, but never the latest good snapshot."""
    latest_success = (
        select(func.max(ScrapeRun.id))
        .where(ScrapeRun.kind == kind, ScrapeRun.status == RunStatus.SUCCEEDED)
        .scalar_subquery()
    )
    # DML answers with a cursor result, which counts the rows it deleted.
    result = cast(
        CursorResult[Any],
        session.execute(
            delete(ScrapeRun).where(
                ScrapeRun.kind == kind,
                ScrapeRun.finished_at < func.now() - retention,
                ScrapeRun.id != func.coalesce(latest_success, 0),
            )
        ),
    )
    return result.rowcount
