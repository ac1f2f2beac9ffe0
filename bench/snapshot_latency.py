"""How long after a ranking snapshot commits every API worker serves it.

Usage: .venv/bin/python -m bench.snapshot_latency [--runs 10]

Each run commits a new ranking snapshot (a copy of the current one) through the
scrapers' writer, then polls ``GET /`` until 20 consecutive answers, spread over the
workers, carry the new run id.  Target: within 100 ms (snapshots are announced by NOTIFY).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from bench.common import filled_database, gunicorn
from scrapers.history import ensure_partitions
from scrapers.ranking import RankedCoin
from scrapers.ranks import write_ranking
from scrapers.snapshots import RunRecord, Snapshot, write_snapshot
from topcoins.db import make_engine
from topcoins.models import RunKind, Source, latest_runs, rankings
from topcoins.settings import database_url

RUNS = 10
TARGET_MS = 100  # the median


def commit_copy_of_latest_ranking(session: Session) -> int:
    """A new ranking run holding the latest ranking's coins, written as the scraper writes."""
    latest = session.execute(
        select(latest_runs.c.id, latest_runs.c.day).where(latest_runs.c.kind == RunKind.RANKING)
    ).one()
    resolved = [
        (RankedCoin(rank=e.rank, symbol=e.symbol, name=e.name), e.cmc_id, e.resolved_by)
        for e in session.execute(
            select(rankings).where(rankings.c.day == latest.day, rankings.c.run_id == latest.id)
        )
    ]
    session.rollback()
    record = RunRecord(RunKind.RANKING, Source.COINDESK, datetime.now(UTC))
    with session.begin():
        ensure_partitions(session, record.day)
    with session.begin():
        snapshot = Snapshot(len(resolved), partial(write_ranking, resolved=resolved))
        run = write_snapshot(session, record, snapshot)
    return run.id


@dataclass(frozen=True)
class SnapshotLatency:
    """Seconds from each run's commit until every worker served it."""

    latencies: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.latencies)


def run(runs: int = RUNS, log: Callable[[str], None] = print) -> SnapshotLatency:
    latencies = []
    with filled_database() as url, gunicorn("api:create_app()", {"DATABASE_URL": url}) as api:
        engine = make_engine(database_url({"DATABASE_URL": url}), application_name="bench")
        http = requests.Session()
        for number in range(1, runs + 1):
            with Session(engine) as session:
                run_id = commit_copy_of_latest_ranking(session)
            committed = time.monotonic()
            streak = 0
            while streak < 20:
                meta = http.get(api + "/?limit=1", timeout=5).json()["meta"]
                streak = streak + 1 if meta["ranking"]["run_id"] == run_id else 0
                if time.monotonic() - committed > 10:
                    raise RuntimeError("new snapshot not served within 10 s")
            latency = time.monotonic() - committed
            latencies.append(latency)
            log(f"run {number}: served by all workers {latency * 1000:.0f} ms after commit")
            time.sleep(0.37)
        engine.dispose()
    return SnapshotLatency(tuple(latencies))


def report(latency: SnapshotLatency) -> None:
    median, worst = latency.median * 1000, max(latency.latencies) * 1000
    print(f"median {median:.0f} ms, max {worst:.0f} ms (target <= {TARGET_MS} ms)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    report(run(args.runs))


if __name__ == "__main__":
    main()
