"""``python -m scrapers ranks``: CryptoCompare's volume ranking becomes a snapshot."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from fakeproviders import FakeProviders
from scrapers.cli import main as scrapers_main
from topcoins.models import RankingEntry, ScrapeRun


def ranking(db) -> list[RankingEntry]:
    with Session(db) as session:
        return list(
            session.scalars(select(RankingEntry).order_by(RankingEntry.run_id, RankingEntry.rank))
        )


def runs(db) -> list[ScrapeRun]:
    with Session(db) as session:
        return list(session.scalars(select(ScrapeRun).order_by(ScrapeRun.id)))


def test_ranking_holds_the_top_200_in_volume_order(scrape, db, providers):
    assert scrape("ranks") == 0
    stored = ranking(db)
    expected = providers.market.ranking[:200]
    assert [(e.rank, e.symbol, e.name) for e in stored] == [
        (i, coin.symbol, coin.full_name) for i, coin in enumerate(expected, start=1)
    ]
    [run] = runs(db)
    assert (run.source, run.status, run.item_count, run.error) == (
        "cryptocompare",
        "succeeded",
        200,
        None,
    )
    assert run.finished_at >= run.started_at


def test_pages_of_100_are_requested_from_page_0(scrape, providers):
    assert scrape("ranks") == 0
    pages = [r.query for r in providers.requests if r.provider == "cryptocompare"]
    assert pages == [
        {"tsym": "USD", "limit": "100", "page": "0"},
        {"tsym": "USD", "limit": "100", "page": "1"},
    ]
    assert all(r.path == "/data/top/totalvolfull" for r in providers.requests)


def test_ranking_size_is_configurable(scrape, db, providers):
    assert scrape("ranks", RANKING_SIZE="250") == 0
    stored = ranking(db)
    assert len(stored) == 250
    assert stored[-1].symbol == providers.market.ranking[249].symbol


def test_sponsored_data_is_not_ranked(scrape, db, providers):
    sponsored = {coin.symbol for coin in providers.market.sponsored}
    assert sponsored
    assert scrape("ranks") == 0
    assert sponsored.isdisjoint(e.symbol for e in ranking(db))


def test_entries_without_market_data_keep_their_place(scrape, db, providers):
    no_raw = [
        (i, c.symbol)
        for i, c in enumerate(providers.market.ranking[:200], start=1)
        if c.price is None
    ]
    assert no_raw
    assert scrape("ranks") == 0
    stored = {e.rank: e for e in ranking(db)}
    for rank, symbol in no_raw:
        assert stored[rank].symbol == symbol
        assert stored[rank].volume_24h_usd is None


def test_volume_and_ids_are_stored(scrape, db, providers):
    assert scrape("ranks") == 0
    first = ranking(db)[0]
    coin = providers.market.ranking[0]
    assert first.volume_24h_usd == coin.volume_24h
    assert first.cryptocompare_id == coin.cc_id


def test_each_scrape_keeps_its_own_snapshot(scrape, db):
    assert scrape("ranks") == 0
    assert scrape("ranks") == 0
    assert [r.item_count for r in runs(db)] == [200, 200]
    assert len({e.run_id for e in ranking(db)}) == 2


def test_cryptocompare_key_goes_in_the_authorization_header_only(env, db):
    with FakeProviders(cryptocompare_key="cc-secret-123") as server:
        assert (
            scrapers_main(["ranks"], {**env, "CRYPTOCOMPARE_BASE_URL": server.cryptocompare_url})
            == 1
        )
        assert (
            scrapers_main(
                ["ranks"],
                {
                    **env,
                    "CRYPTOCOMPARE_BASE_URL": server.cryptocompare_url,
                    "CRYPTOCOMPARE_API_KEY": "cc-secret-123",
                },
            )
            == 0
        )
        last = server.requests[-1]
    assert last.headers["Authorization"] == "Apikey cc-secret-123"
    assert "cc-secret-123" not in last.raw_url
    assert [r.status for r in runs(db)] == ["failed", "succeeded"]
