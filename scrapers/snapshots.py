"""Writing scrape results: one run record plus its rows, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from topcoins.models import SNAPSHOT_CHANNEL, RunKind, RunStatus, ScrapeRun, Source, history_day

from .budget import CreditBudget


@dataclass
class Snapshot:
    """What a successful fetch produced, ready to be written under its run."""

    item_count: int
    # Writes the rows under the run, which is flushed (it has its id) and not committed;
    # everything it writes commits with the run or not at all (the id map too).
    write: Callable[[Session, ScrapeRun], None]
    credit_count: int | None = None
    ticker_lookups: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


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

    @property
    def day(self) -> int:
        """The partition its rows go to (``topcoins.models.history_day``)."""
        return history_day(self.started_at)

    def row(self, status: RunStatus, **columns: Any) -> ScrapeRun:
        usage = self.budget.usage if self.budget else None
        return ScrapeRun(
            kind=self.kind,
            source=self.source,
            status=status,
            started_at=self.started_at,
            day=self.day,
            trace_id=self.trace_id,
            measure=self.measure,
            credit_limit_monthly=usage.credit_limit_monthly if usage else None,
            credits_left_monthly=usage.credits_left_monthly if usage else None,
            credits_reset_at=usage.reset_at if usage else None,
            **columns,
        )


def write_snapshot(session: Session, record: RunRecord, snapshot: Snapshot) -> ScrapeRun:
    """The run's partitions must exist (``scrapers.history.ensure_partitions``)."""
    run = record.row(
        RunStatus.SUCCEEDED,
        item_count=snapshot.item_count,
        credit_count=snapshot.credit_count,
        ticker_lookups=snapshot.ticker_lookups,
    )
    session.add(run)
    session.flush()
    snapshot.write(session, run)
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
