"""Snapshots are kept for history and pruned after the retention, never the last good one."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from fakeproviders import Fault
from scrapers.history import partition_name
from topcoins.models import PriceQuote, RankingEntry, ScrapeRun, history_day, rankings


def partitions(db) -> list[str]:
    with db.connect() as connection:
        return connection.scalars(
            text(
                "SELECT inhrelid::regclass::text FROM pg_inherits "
                "WHERE inhparent = 'ranking_entries'::regclass ORDER BY 1"
            )
        ).all()


def surviving(db, kind: str) -> list[tuple[int, str]]:
    with Session(db) as session:
        rows = session.execute(
            select(ScrapeRun.id, ScrapeRun.status)
            .where(ScrapeRun.kind == kind)
            .order_by(ScrapeRun.id)
        )
        return [tuple(row) for row in rows]


def test_history_is_kept_within_the_retention(scrape, db, store):
    for _ in range(3):
        assert scrape("ranks") == 0
    assert [status for _, status in surviving(db, "ranking")] == ["succeeded"] * 3


def test_runs_older_than_the_retention_are_pruned_with_their_rows(scrape, db, store, providers):
    assert scrape("ranks") == 0
    assert scrape("prices") == 0
    assert scrape("ranks") == 0
    store.age(8)
    [(newest_ranking, _)] = surviving(db, "ranking")[-1:]
    assert scrape("ranks") == 0
    ranking_runs = surviving(db, "ranking")
    assert len(ranking_runs) == 1
    assert ranking_runs[0][0] > newest_ranking
    with Session(db) as session:
        assert session.scalar(select(func.count(func.distinct(rankings.c.run_id)))) == 1
    # The old prices run is the latest good one: it stays, and so does its day, until the
    # next prices run; then the day goes whole, with the rows of the forgotten runs.
    assert len(surviving(db, "prices")) == 1
    today = history_day(datetime.now(UTC))
    old_day = partition_name("ranking_entries", today - 8)
    assert old_day in partitions(db)
    assert scrape("prices") == 0
    assert len(surviving(db, "prices")) == 1
    assert old_day not in partitions(db)
    assert {partition_name("ranking_entries", d) for d in (today, today + 1)} <= set(partitions(db))
    with Session(db) as session:
        assert session.scalar(select(func.count(func.distinct(RankingEntry.run_id)))) == 1


def test_the_last_good_snapshot_outlives_the_retention_while_scrapes_fail(
    scrape, db, store, providers
):
    assert scrape("ranks") == 0
    assert scrape("prices") == 0
    store.age(30)
    served = store.top_coins()
    providers.inject("coinmarketcap", Fault.EMPTY, times=-1)
    assert scrape("prices") == 1
    assert store.top_coins() == served
    providers.clear_faults()
    assert scrape("prices") == 0
    assert [s for _, s in surviving(db, "prices")] == ["failed", "succeeded"]
    # The old ranking is still the latest: its day stays, old quotes and all, but only
    # the quotes of a remembered run are history.
    with Session(db) as session:
        priced = select(func.count(func.distinct(PriceQuote.run_id))).join(
            ScrapeRun, ScrapeRun.id == PriceQuote.run_id
        )
        assert session.scalar(priced) == 1


def test_retention_is_configurable(scrape, db, store):
    assert scrape("ranks") == 0
    store.age(2)
    assert scrape("ranks", RETENTION_DAYS="3") == 0
    assert len(surviving(db, "ranking")) == 2
    assert scrape("ranks", RETENTION_DAYS="1") == 0
    assert len(surviving(db, "ranking")) == 2


def test_pruning_keeps_the_latest_run_of_each_kind_of_the_same_provider(scrape, db, store):
    """Either kind of run prunes both kinds: by kind, never by provider."""
    assert scrape("ranks", RANKING_PROVIDER="coinmarketcap") == 0
    assert scrape("prices") == 0
    assert scrape("ranks", RANKING_PROVIDER="coinmarketcap") == 0
    store.age(8)
    assert scrape("prices") == 0
    assert surviving(db, "ranking") == [(3, "succeeded")]
    assert surviving(db, "prices") == [(4, "succeeded")]
    assert len(store.top_coins()) == 200
    with Session(db) as session:
        sources = set(session.scalars(select(ScrapeRun.source)))
    assert sources == {"coinmarketcap"}
