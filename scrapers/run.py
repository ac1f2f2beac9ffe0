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

from topcoins.models import RunKind, Source
from topcoins.tracing import current_ids

from .budget import CreditBudget
from .errors import NothingToDo, ScrapeError
from .snapshots import RunRecord, Snapshot, exclusive, prune, record_failure, write_snapshot

log = logging.getLogger("scrapers.run")
tracer = trace.get_tracer("scrapers")


class Job(Protocol):
    @property
    def kind(self) -> RunKind: ...

    @property
    def source(self) -> Source: ...

    @property
    def measure(self) -> str | None: ...

    @property
    def budget(self) -> CreditBudget | None:
        """Set when the run may spend CoinMarketCap credits: its reading and spend are recorded."""
        ...

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

    kind: RunKind
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
            "kind": self.kind.value,
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
    attributes = {"topcoins.kind": job.kind.value, "topcoins.source": job.source.value}
    with tracer.start_as_current_span(f"scrape {job.kind.value}", attributes=attributes) as span:
        report = RunReport(job.kind, job.source)
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
        name = f"{job.kind.value} scrape ({job.source.value})"
        if report.outcome is Outcome.SKIPPED:
            log.info("%s skipped without writing: %s", name, fields["reason"], extra=fields)
        elif report.outcome is Outcome.FAILED:
            log.error("%s failed: %s", name, fields["error"], extra=fields)
        else:
            log.info("%s succeeded: %d items", name, report.item_count, extra=fields)
    return report


def _run(engine: Engine, job: Job, retention: timedelta, report: RunReport) -> None:
    record = RunRecord(
        job.kind,
        job.source,
        datetime.now(UTC),
        trace_id=report.trace_id,
        measure=job.measure,
        budget=job.budget,
    )
    with exclusive(engine, job.kind) as connection:
        if connection is None:
            report.details["reason"] = f"another {job.kind.value} scrape holds the lock"
            return
        with Session(bind=connection, expire_on_commit=False) as session:
            try:
                snapshot = job.fetch(session)
            except NothingToDo as exc:
                report.details["reason"] = str(exc)
                return
            except ScrapeError as exc:
                with session.begin():
                    run = record_failure(session, record, str(exc))
                report.outcome, report.run_id = Outcome.FAILED, run.id
                report.credit_count = run.credit_count
                report.details["error"] = str(exc)
                return
            with session.begin():
                run = write_snapshot(session, record, snapshot)
                pruned = prune(session, job.kind, retention)
    report.outcome, report.run_id = Outcome.SUCCEEDED, run.id
    report.item_count, report.credit_count = run.item_count, run.credit_count
    report.details.update(snapshot.details, pruned_runs=pruned)
