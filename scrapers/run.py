"""One scrape run from lock to commit: the only place that decides a run's outcome."""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from topcoins.models import Source
from topcoins.tracing import current_ids

from .errors import ScrapeError
from .snapshots import Snapshot, exclusive, prune, record_failure, write_snapshot

log = logging.getLogger("scrapers.run")
tracer = trace.get_tracer("scrapers")


class Job(Protocol):
    source: Source

    def fetch(self, session: Session) -> Snapshot:
        """Call the provider; ``session`` is for short reads in their own transaction."""
        ...

    def close(self) -> None: ...


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class RunReport:
    """What a run did, for its log line, its span and the optional Pushgateway."""

    source: Source
    outcome: Outcome = Outcome.SKIPPED
    run_id: int | None = None
    item_count: int = 0
    credit_count: int | None = None
    duration_seconds: float = 0.0
    trace_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def log_fields(self) -> dict[str, Any]:
        return {
            "source": self.source.value,
            "outcome": self.outcome.value,
            "run_id": self.run_id,
            "item_count": self.item_count,
            "credit_count": self.credit_count,
            "duration_seconds": round(self.duration_seconds, 3),
            **self.details,
        }


def run_scrape(engine: Engine, job: Job, *, retention: timedelta) -> RunReport:
    """Fetch and store one snapshot; a provider failure leaves a failed run and nothing else."""
    with tracer.start_as_current_span(
        f"scrape {job.source.value}", attributes={"topcoins.source": job.source.value}
    ) as span:
        report = RunReport(job.source)
        ids = current_ids()
        report.trace_id = ids[0] if ids else None
        clock = time.monotonic()
        _run(engine, job, retention, report)
        report.duration_seconds = time.monotonic() - clock
        span.set_attribute("topcoins.outcome", report.outcome.value)
        if report.run_id is not None:
            span.set_attribute("topcoins.run_id", report.run_id)
        span.set_attribute("topcoins.item_count", report.item_count)
        if report.outcome is Outcome.FAILED:
            span.set_status(Status(StatusCode.ERROR, report.details.get("error")))
        fields = report.log_fields()
        if report.outcome is Outcome.SKIPPED:
            log.info(
                "another %s scrape holds the lock; skipped without writing",
                job.source.value,
                extra=fields,
            )
        elif report.outcome is Outcome.FAILED:
            log.error("%s scrape failed: %s", job.source.value, fields["error"], extra=fields)
        else:
            log.info(
                "%s scrape succeeded: %d items", job.source.value, report.item_count, extra=fields
            )
    return report


def _run(engine: Engine, job: Job, retention: timedelta, report: RunReport) -> None:
    started_at = datetime.now(UTC)
    with exclusive(engine, job.source) as connection:
        if connection is None:
            return
        with Session(bind=connection, expire_on_commit=False) as session:
            try:
                snapshot = job.fetch(session)
            except ScrapeError as exc:
                with session.begin():
                    run = record_failure(
                        session, job.source, started_at, str(exc), trace_id=report.trace_id
                    )
                report.outcome, report.run_id = Outcome.FAILED, run.id
                report.details["error"] = str(exc)
                return
            with session.begin():
                run = write_snapshot(
                    session, job.source, started_at, snapshot, trace_id=report.trace_id
                )
                pruned = prune(session, job.source, retention)
    report.outcome, report.run_id = Outcome.SUCCEEDED, run.id
    report.item_count, report.credit_count = run.item_count, run.credit_count
    report.details.update(snapshot.details, pruned_runs=pruned)
