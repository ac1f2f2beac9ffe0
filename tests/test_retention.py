"""Snapshots are kept for history and pruned after the retention, never the last good one."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from fakeproviders import Fault
from topcoins.models import PriceQuote, RankingEntry, ScrapeRun


def age_runs(db, days: float) -> None:
    with db.begin() as connection:
        connection.execute(
            text("UPDATE scrape_runs SET finished_at = now() - make_interval(days => :d)"),
            {"d": days},
        )


def surviving(db, kind: str) -> list[tuple[int, str]]:
    with Session(db) as session:
        rows = session.execute(
            select(ScrapeRun.id, ScrapeRun.status)
            .where(ScrapeRun.kind == kind)
            .order_by(ScrapeRun.id)
        )
        return [tuple(row) for row in rows]


def test_history_is_kept_within_the_retention(scrape, db):
    for _ in range(3):
        assert scrape("ranks") == 0
    assert [status for _, status in surviving(db, "ranking")] == ["succeeded"] * 3


def test_runs_older_than_the_retention_are_pruned_with_their_rows(scrape, db, providers):
    assert scrape("ranks") == 0
    assert scrape("prices") == 0
    assert scrape("ranks") == 0
    age_runs(db, 8)
    [(newest_ranking, _)] = surviving(db, "ranking")[-1:]
    assert scrape("ranks") == 0
    ranking_runs = surviving(db, "ranking")
    assert len(ranking_runs) == 1
    assert ranking_runs[0][0] > newest_ranking
    with Session(db) as session:
        assert session.scalar(select(func.count(func.distinct(RankingEntry.run_id)))) == 1
    # The price scraper prunes its own kind on its next run.
    assert len(surviving(db, "prices")) == 1


def test_the_last_good_snapshot_outlives_the_retention_while_scrapes_fail(
    scrape, db, store, providers
):
    assert scrape("ranks") == 0
    assert scrape("prices") == 0
    age_runs(db, 30)
    served = store.top_coins()
    providers.inject("coinmarketcap", Fault.EMPTY, times=-1)
    assert scrape("prices") == 1
    assert store.top_coins() == served
    providers.clear_faults()
    assert scrape("prices") == 0
    assert [s for _, s in surviving(db, "prices")] == ["failed", "succeeded"]
    with Session(db) as session:
        assert session.scalar(select(func.count(func.distinct(PriceQuote.run_id)))) == 1


def test_retention_is_configurable(scrape, db):
    assert scrape("ranks") == 0
    age_runs(db, 2)
    assert scrape("ranks", RETENTION_DAYS="3") == 0
    assert len(surviving(db, "ranking")) == 2
    assert scrape("ranks", RETENTION_DAYS="1") == 0
    assert len(surviving(db, "ranking")) == 2


def test_pruning_one_kind_spares_the_other_kind_of_the_same_provider(scrape, db):
    assert scrape("ranks", RANKING_PROVIDER="coinmarketcap") == 0
    assert scrape("prices") == 0
    assert scrape("ranks", RANKING_PROVIDER="coinmarketcap") == 0
    age_runs(db, 8)
    assert scrape("prices") == 0
    assert len(surviving(db, "ranking")) == 2
    assert [status for _, status in surviving(db, "prices")] == ["succeeded"]
    with Session(db) as session:
        sources = set(session.scalars(select(ScrapeRun.source)))
    assert sources == {"coinmarketcap"}
