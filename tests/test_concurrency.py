"""Two runs of one kind at once (CronJobs are at-least-once): one writes, one skips; a dead or
stuck holder of the lock does not keep it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from fakeproviders import Fault
from scrapers.database import scraper_engine
from scrapers.deadline import Deadline
from scrapers.history import ensure_partitions, partition_name
from tests.support import ROOT, wait_for
from topcoins.db import make_engine
from topcoins.models import RunKind, ScrapeRun, history_day
from topcoins.settings import database_url


def run_count(db) -> int:
    with Session(db) as session:
        return session.scalar(select(func.count()).select_from(ScrapeRun))


def hold_lock(connection, kind: RunKind) -> None:
    """What a run does to lock its kind: its row of scrape_locks, until the transaction ends."""
    locked = connection.scalar(
        text("SELECT kind FROM scrape_locks WHERE kind = :kind FOR UPDATE"), {"kind": kind}
    )
    assert locked == kind


def test_scrape_skips_without_writing_while_another_holds_the_lock(scrape, db, providers, capsys):
    with db.connect() as holder:
        hold_lock(holder, RunKind.RANKING)
        assert scrape("ranks") == 0
        assert (
            scrape("prices") == 1
        )  # the other scraper's lock is not held: it runs (and fails: no ranking)
        holder.rollback()
    with Session(db) as session:
        assert [r.kind for r in session.scalars(select(ScrapeRun))] == ["prices"]
    assert [r for r in providers.requests if r.provider == "coindesk"] == []
    skipped = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"skipped"' in line
    ]
    assert (skipped[0]["kind"], skipped[0]["source"]) == ("ranking", "coindesk")
    assert skipped[0]["reason"] == "another ranking scrape holds the lock"


def test_two_concurrent_processes_write_one_snapshot(env, db, providers):
    providers.inject("coindesk", Fault.HANG, times=1, argument=1.5)
    command = [sys.executable, "-m", "scrapers", "ranks"]
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=60)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0]
    outcomes = sorted(json.loads(out.splitlines()[-1])["outcome"] for out in outputs)
    assert outcomes == ["skipped", "succeeded"]
    assert run_count(db) == 1


def test_lock_is_released_after_a_run(scrape, db):
    assert scrape("ranks") == 0
    assert scrape("ranks") == 0
    assert run_count(db) == 2


def sessions(db, application_names: tuple[str, ...], *, waiting: bool = False) -> int:
    """Sessions of these names on the test database, or only those waiting for a lock."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = ANY(:names)"
    )
    if waiting:
        query += " AND wait_event_type = 'Lock'"
    with db.connect() as connection:
        return connection.scalar(text(query), {"names": list(application_names)})


def test_a_scraper_killed_while_blocked_in_the_database_does_not_keep_the_lock(env, db):
    """Its sessions end within seconds although the statement it sent is still blocked.

    The next run then waits for the table like its predecessor, instead of skipping.
    """
    command = [sys.executable, "-m", "scrapers", "ranks"]
    names = ("scraper-ranks", "top-coins-lock-ranking")
    with db.connect() as blocker:
        blocker.execute(text("LOCK TABLE ranking_entries IN ACCESS EXCLUSIVE MODE"))
        killed = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        try:
            assert wait_for(lambda: sessions(db, names, waiting=True), timeout=20)
        finally:
            killed.kill()
            killed.wait(timeout=10)
        assert wait_for(lambda: sessions(db, names) == 0, timeout=3)
        second = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert wait_for(lambda: sessions(db, names, waiting=True), timeout=20)
        finally:
            blocker.rollback()
            released = time.monotonic()
            output = second.communicate(timeout=60)[0]
    assert time.monotonic() - released < 2
    assert second.returncode == 0
    assert json.loads(output.splitlines()[-1])["outcome"] == "succeeded"


@pytest.mark.parametrize(("held_for", "exit_code"), [(0, 0), (2.5, 1)])
def test_a_lock_held_longer_than_a_run_may_last_fails_the_run(
    scrape, db, db_url, held_for, exit_code
):
    """A stuck holder is a failed run, which /metrics counts and alerts on, not a quiet skip."""
    url = database_url({"DATABASE_URL": db_url})
    like_a_run = make_engine(url, application_name="top-coins-lock-ranking")
    try:
        with like_a_run.connect() as holder:
            hold_lock(holder, RunKind.RANKING)
            time.sleep(held_for)
            assert (
                scrape("ranks", SCRAPE_DEADLINE_SECONDS="1", SCRAPE_GRACE_SECONDS="1") == exit_code
            )
    finally:
        like_a_run.dispose()
    with Session(db) as session:
        failed = [(r.kind, r.status, r.error) for r in session.scalars(select(ScrapeRun))]
    if exit_code == 0:
        assert failed == []
    else:
        [(kind, status, error)] = failed
        assert (kind, status) == ("ranking", "failed")
        found = re.fullmatch(
            r"another ranking scrape has held the lock for (\d+) s, "
            r"longer than a run may last \(2 s\)",
            error,
        )
        assert found
        assert int(found.group(1)) >= held_for


def test_the_server_frees_the_lock_of_a_scraper_that_hangs(env, db, providers):
    """A stopped scraper keeps its socket open: the lock's idle timeout ends its session."""
    providers.inject("coindesk", Fault.HANG, times=1, argument=20)
    settings = {"SCRAPE_DEADLINE_SECONDS": "2", "SCRAPE_GRACE_SECONDS": "1"}
    command = [sys.executable, "-m", "scrapers", "ranks"]
    hung = subprocess.Popen(command, cwd=ROOT, env={**env, **settings}, stdout=subprocess.DEVNULL)
    try:
        # Stopped once it holds the lock and waits for the provider.
        assert wait_for(lambda: providers.requests, timeout=20)
        assert sessions(db, ("top-coins-lock-ranking",)) == 1
        hung.send_signal(signal.SIGSTOP)
        assert wait_for(lambda: sessions(db, ("top-coins-lock-ranking",)) == 0, timeout=6)
        result = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        hung.kill()
        hung.wait(timeout=10)
    assert result.returncode == 0
    assert json.loads(result.stdout.splitlines()[-1])["outcome"] == "succeeded"


def test_scraper_sessions_ask_the_server_to_notice_a_vanished_scraper(db_url):
    """Keepalives for a host that is gone, and a check on the client during a statement."""
    deadline = Deadline.after(10, grace_seconds=1)
    url = database_url({"DATABASE_URL": db_url})
    engine = scraper_engine(url, application_name="scraper-ranks", deadline=deadline)
    names = (
        "tcp_keepalives_idle",
        "tcp_keepalives_interval",
        "tcp_keepalives_count",
        "client_connection_check_interval",
    )
    try:
        with engine.connect() as connection:
            shown = [connection.exec_driver_sql(f"SHOW {name}").scalar() for name in names]
    finally:
        engine.dispose()
    assert shown == ["5", "2", "3", "1s"]


def test_making_a_days_partitions_waits_for_a_reader_of_top_coins_without_deadlock(db):
    """The view reads ranking_entries, then price_quotes: the partitions' maker locks alike."""
    day = history_day(datetime.now(UTC)) + 30
    made: list[list[str]] = []
    with db.connect() as reader:
        reader.execute(text("SELECT FROM ranking_entries LIMIT 0"))
        maker = threading.Thread(target=lambda: made.append(make_partitions(db, day)))
        maker.start()
        assert wait_for(lambda: waiting_for_a_lock(db), timeout=5)
        # With price_quotes taken first by the maker, this would deadlock.
        reader.execute(text("SELECT FROM price_quotes LIMIT 0"))
        reader.commit()
        maker.join(timeout=10)
    with db.begin() as connection:
        for name in made[0] if made else []:
            connection.execute(text(f'DROP TABLE "{name}"'))
    assert made == [
        [partition_name(t, d) for t in ("price_quotes", "ranking_entries") for d in (day, day + 1)]
    ]


def make_partitions(db, day: int) -> list[str]:
    with Session(db) as session, session.begin():
        return ensure_partitions(session, day)


def waiting_for_a_lock(db) -> bool:
    with db.connect() as connection:
        return bool(
            connection.scalar(
                text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                    "WHERE NOT l.granted AND d.datname = current_database()"
                )
            )
        )
