"""One scrape run from lock to commit: the only place that decides a run's outcome."""

from __future__ import annotations

import enum
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from topcoins.models import Source

from .errors import ScrapeError
from .snapshots import Snapshot, exclusive, prune, record_failure, write_snapshot

log = logging.getLogger("scrapers.run")


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


def run_scrape(engine: Engine, job: Job, *, retention: timedelta) -> Outcome:
    """Fetch and store one snapshot; a provider failure leaves a failed run and nothing else."""
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    context = {"source": job.source.value}
    with exclusive(engine, job.source) as connection:
        if connection is None:
            log.info(
                "another %s scrape holds the lock; skipped without writing",
                job.source.value,
                extra={**context, "outcome": Outcome.SKIPPED.value},
            )
            return Outcome.SKIPPED
        with Session(bind=connection, expire_on_commit=False) as session:
            try:
                snapshot = job.fetch(session)
            except ScrapeError as exc:
                with session.begin():
                    run = record_failure(session, job.source, started_at, str(exc))
                log.error(
                    "%s scrape failed: %s",
                    job.source.value,
                    exc,
                    extra={
                        **context,
                        "run_id": run.id,
                        "outcome": Outcome.FAILED.value,
                        "duration_seconds": round(time.monotonic() - clock, 3),
                    },
                )
                return Outcome.FAILED
            with session.begin():
                run = write_snapshot(session, job.source, started_at, snapshot)
                pruned = prune(session, job.source, retention)
    log.info(
        "%s scrape succeeded: %d items",
        job.source.value,
        run.item_count,
        extra={
            **context,
            "run_id": run.id,
            "outcome": Outcome.SUCCEEDED.value,
            "item_count": run.item_count,
            "credit_count": run.credit_count,
            "pruned_runs": pruned,
            "duration_seconds": round(time.monotonic() - clock, 3),
            **snapshot.details,
        },
    )
    return Outcome.SUCCEEDED
