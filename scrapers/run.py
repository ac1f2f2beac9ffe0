"""One scrape run from lock to commit: the only place that decides a run's outcome."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from topcoins.models import RunKind, Source
from topcoins.tracing import current_ids, span

from .budget import CreditBudget
from .database import DATABASE_PREFIX, bound, database_reason, timeout_reason
from .deadline import Deadline, DeadlineReached
from .errors import NothingToDo, ScrapeError
from .history import ensure_partitions, prune, summarize
from .lock import RunLock, run_lock
from .snapshots import RunRecord, Snapshot, record_failure, write_snapshot

log = logging.getLogger("scrapers.run")


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


def run_scrape(
    engine: Engine, lock_engine: Engine, job: Job, *, retention: timedelta, deadline: Deadline
) -> RunReport:
    """Fetch and store one snapshot; a failure leaves a failed run and nothing else.

    ``deadline`` bounds the provider calls and every database wait of the run alike;
    ``lock_engine`` is for the run's lock alone (``scrapers.lock``).
    """
    attributes = {"topcoins.kind": job.kind.value, "topcoins.source": job.source.value}
    with span("scrapers", f"scrape {job.kind.value}", attributes) as current:
        report = RunReport(job.kind, job.source)
        ids = current_ids()
        report.trace_id = ids[0] if ids else None
        clock = time.monotonic()
        _run(engine, lock_engine, job, retention, deadline, report)
        report.duration_seconds = time.monotonic() - clock
        current.set_attribute("topcoins.outcome", report.outcome.value)
        if report.run_id is not None:
            current.set_attribute("topcoins.run_id", report.run_id)
        current.set_attribute("topcoins.item_count", report.item_count)
        if report.outcome is Outcome.FAILED:
            current.fail(report.details.get("error"))
        fields = report.log_fields()
        name = f"{job.kind.value} scrape ({job.source.value})"
        if report.outcome is Outcome.SKIPPED:
            log.info("%s skipped without writing: %s", name, fields["reason"], extra=fields)
        elif report.outcome is Outcome.FAILED:
            log.error("%s failed: %s", name, fields["error"], extra=fields)
        else:
            log.info("%s succeeded: %d items", name, report.item_count, extra=fields)
    return report


class LockHeldTooLong(ScrapeError):
    """Another run has held the lock longer than a run may last: it is stuck, not running."""


def _run(
    engine: Engine,
    lock_engine: Engine,
    job: Job,
    retention: timedelta,
    deadline: Deadline,
    report: RunReport,
) -> None:
    record = RunRecord(
        job.kind,
        job.source,
        datetime.now(UTC),
        trace_id=report.trace_id,
        measure=job.measure,
        budget=job.budget,
    )
    try:
        with _within(deadline), run_lock(lock_engine, job.kind, deadline) as lock:
            if not lock.acquired:
                _check_holder(job.kind, lock, deadline)
                report.details["reason"] = f"another {job.kind.value} scrape holds the lock"
                return
            with engine.connect() as connection:
                bound(connection, deadline)
                with Session(bind=connection, expire_on_commit=False) as session:
                    snapshot = job.fetch(session)
                    # Its own transaction: making a partition locks readers out until commit.
                    with session.begin():
                        ensure_partitions(session, record.day)
                    with session.begin():
                        run = write_snapshot(session, record, snapshot)
                    _tend_history(session, record.day, retention, report)
    except NothingToDo as exc:
        report.details["reason"] = str(exc)
        return
    except ScrapeError as exc:
        _record_failure(engine, record, str(exc), deadline, report)
        return
    report.outcome, report.run_id = Outcome.SUCCEEDED, run.id
    report.item_count, report.credit_count = run.item_count, run.credit_count
    report.details = {**snapshot.details, **report.details}


def _tend_history(session: Session, day: int, retention: timedelta, report: RunReport) -> None:
    """After the commit, and not part of the run's outcome: the snapshot is stored already.

    What fails here (a lock held by a long reader, the deadline) is tried again by the
    next run, of either kind.
    """
    try:
        with session.begin():
            summarize(session, day)
            pruned = prune(session, retention)
    except (ScrapeError, SQLAlchemyError) as exc:
        why = str(exc) if isinstance(exc, ScrapeError) else database_reason(exc)
        log.warning("history not pruned, the next run tries again: %s", why)
        report.details["prune_error"] = why
        return
    report.details["pruned_runs"] = pruned.runs
    if pruned.partitions:
        report.details["dropped_partitions"] = pruned.partitions


def _check_holder(kind: RunKind, lock: RunLock, deadline: Deadline) -> None:
    """A lock held past the longest run is a stuck holder: a failure, not a skip."""
    if lock.held_for is not None and lock.held_for > deadline.longest_run:
        raise LockHeldTooLong(
            f"another {kind.value} scrape has held the lock for {lock.held_for:.0f} s, "
            f"longer than a run may last ({deadline.longest_run:g} s)"
        )


def _record_failure(
    engine: Engine, record: RunRecord, error: str, deadline: Deadline, report: RunReport
) -> None:
    """Within a grace period of its own, since the run's deadline may be what ran out."""
    report.outcome = Outcome.FAILED
    report.details["error"] = error
    report.credit_count = record.budget.spent if record.budget else None
    grace = deadline.grace()
    try:
        with _within(grace), engine.connect() as connection:
            bound(connection, grace)
            with Session(bind=connection, expire_on_commit=False) as session, session.begin():
                run = record_failure(session, record, error)
    except (ScrapeError, SQLAlchemyError) as exc:
        why = str(exc) if isinstance(exc, ScrapeError) else database_reason(exc)
        report.details["error"] = (
            f"{error}; the failed run could not be recorded either: "
            f"{why.removeprefix(DATABASE_PREFIX)}"
        )
        return
    report.run_id, report.credit_count = run.id, run.credit_count


@contextmanager
def _within(deadline: Deadline) -> Iterator[None]:
    """A database wait the deadline cut short becomes the run's one-line reason."""
    try:
        yield
    except DBAPIError as exc:
        reason = timeout_reason(exc, deadline)
        if reason is None:
            raise
        raise DeadlineReached(f"{DATABASE_PREFIX}{reason}") from None
