"""The run deadline bounds the database too: a run blocked by a lock fails in time, saying why."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tests.support import ROOT
from topcoins.models import ScrapeRun

DEADLINE, GRACE = 3, 1
# Python's start-up and the provider calls, on top of the deadline and the grace.
SLACK = 3


def runs(db) -> list[ScrapeRun]:
    with Session(db) as session:
        return list(session.scalars(select(ScrapeRun).order_by(ScrapeRun.id)))


def run_while_locked(db, env, table: str, command: str) -> tuple[subprocess.Popen, str, float]:
    """``python -m scrapers COMMAND`` while the test holds ``table`` locked, until it exits."""
    settings = {"SCRAPE_DEADLINE_SECONDS": str(DEADLINE), "SCRAPE_GRACE_SECONDS": str(GRACE)}
    with db.connect() as blocker:
        blocker.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "scrapers", command],
            cwd=ROOT,
            env={**env, **settings},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            output, errors = process.communicate(timeout=DEADLINE + GRACE + SLACK)
        finally:
            process.kill()
            blocker.rollback()
    assert errors == ""
    return process, output, time.monotonic() - started


@pytest.mark.parametrize(
    ("command", "table"), [("ranks", "ranking_entries"), ("prices", "ranking_entries")]
)
def test_a_run_blocked_by_a_lock_fails_by_its_deadline_and_records_why(
    scraped, env, db, store, command, table
):
    """The ranking blocks writing its entries, the prices block reading them."""
    served = store.top_coins()
    before = len(runs(db))
    process, output, elapsed = run_while_locked(db, env, table, command)
    reason = f"database: the run deadline ({DEADLINE} s) ran out waiting for a lock on {table}"
    assert process.returncode == 1
    assert elapsed < DEADLINE + GRACE + SLACK
    [line] = output.splitlines()
    record = json.loads(line)
    assert (record["level"], record["outcome"], record["error"]) == ("ERROR", "failed", reason)
    [failed] = runs(db)[before:]
    assert (failed.status, failed.error, failed.item_count) == ("failed", reason, 0)
    assert store.top_coins() == served


def test_a_failure_that_cannot_be_recorded_is_one_log_line(env, db):
    process, output, elapsed = run_while_locked(db, env, "scrape_runs", "ranks")
    assert process.returncode == 1
    assert elapsed < DEADLINE + GRACE + SLACK
    [line] = output.splitlines()
    record = json.loads(line)
    assert (record["level"], record["outcome"], record["run_id"]) == ("ERROR", "failed", None)
    assert record["error"] == (
        f"database: the run deadline ({DEADLINE} s) ran out waiting for a lock on scrape_runs; "
        f"the failed run could not be recorded either: "
        f"the grace period ({GRACE} s) ran out waiting for a lock on scrape_runs"
    )
    assert "Traceback" not in output
    assert "postgresql://" not in output
    assert runs(db) == []


def test_connecting_is_bounded_by_the_deadline_too(scrape):
    """A server that accepts the connection and never answers (a hung pooler, say)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"postgresql://u:dbsecret@127.0.0.1:{silent.getsockname()[1]}/none"
        started = time.monotonic()
        assert scrape("ranks", DATABASE_URL=url, SCRAPE_DEADLINE_SECONDS="2") == 1
        # The connect timeout is otherwise 5 s; libpq does not wait less than 2 s.
        assert time.monotonic() - started < 3.5
