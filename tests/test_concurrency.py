"""Two runs of the same scraper at once (CronJobs are at-least-once): one writes, one skips."""

from __future__ import annotations

import json
import subprocess
import sys

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from fakeproviders import Fault
from scrapers.snapshots import LOCK_KEYS
from tests.support import ROOT
from topcoins.models import RunKind, ScrapeRun


def run_count(db) -> int:
    with Session(db) as session:
        return session.scalar(select(func.count()).select_from(ScrapeRun))


def test_scrape_skips_without_writing_while_another_holds_the_lock(scrape, db, providers, capsys):
    with db.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEYS[RunKind.RANKING]})
        assert scrape("ranks") == 0
        assert (
            scrape("prices") == 1
        )  # the other scraper's lock is not held: it runs (and fails: no ranking)
        holder.execute(text("SELECT pg_advisory_unlock_all()"))
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
