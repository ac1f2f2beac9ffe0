"""``python -m scrapers prices``: CoinMarketCap quotes for every ranked coin."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from topcoins.models import PriceQuote, ScrapeRun


def price_runs(db) -> list[ScrapeRun]:
    with Session(db) as session:
        return list(
            session.scalars(
                select(ScrapeRun).where(ScrapeRun.source == "coinmarketcap").order_by(ScrapeRun.id)
            )
        )


def cmc_requests(providers) -> list:
    return [r for r in providers.requests if r.provider == "coinmarketcap"]


def expected_match(providers, symbol: str, name: str):
    """The merge rules, restated over the fake market: what a ranked coin should be priced at."""
    same_symbol = [a for a in providers.market.assets if a.symbol == symbol]
    if same_symbol:
        named = [a for a in same_symbol if a.name.lower() == name.lower()]
        if named:
            return named[0]
        return min(same_symbol, key=lambda a: (a.cmc_rank is None, a.cmc_rank or 0, a.id))
    same_name = [a for a in providers.market.assets if a.name.lower() == name.lower()]
    return same_name[0] if same_name else None


def test_every_ranked_coin_that_coinmarketcap_knows_gets_its_price(scraped, store, providers):
    rows = store.top_coins()
    assert len(rows) == 200
    unpriced = []
    for row in rows:
        asset = expected_match(providers, row["symbol"], row["name"])
        if asset is None:
            unpriced.append(row["symbol"])
            assert row["price_usd"] is None
        else:
            assert (row["symbol"], row["cmc_id"], row["price_usd"]) == (
                row["symbol"],
                asset.id,
                asset.price,
            )
    assert 1 <= len(unpriced) < 10


def test_coins_far_down_coinmarketcaps_own_ranking_are_priced(scraped, store, providers):
    ranks = {a.id: a.cmc_rank for a in providers.market.assets}
    far_down = [r for r in store.top_coins() if r["cmc_id"] and (ranks[r["cmc_id"]] or 0) > 200]
    assert far_down
    assert all(r["price_usd"] is not None for r in far_down)


def test_quotes_are_asked_by_symbol_then_by_slug_for_the_rest(scraped, providers):
    calls = cmc_requests(providers)
    assert [c.path for c in calls] == ["/v2/cryptocurrency/quotes/latest"] * 2
    by_symbol, by_slug = calls
    assert "IOT" in by_symbol.query["symbol"].split(",")
    assert "iota" in by_slug.query["slug"].split(",")
    assert all(c.query["convert"] == "USD" for c in calls)


def test_iota_is_found_by_name_under_another_ticker(scraped, store, providers):
    iot = next(r for r in store.top_coins() if r["symbol"] == "IOT")
    miota = next(a for a in providers.market.assets if a.id == 1720)
    assert (iot["cmc_id"], iot["price_usd"], iot["match"]) == (1720, miota.price, "name")


def test_shared_tickers_resolve_by_name_then_by_cmc_rank(scraped, store):
    by_symbol = {r["symbol"]: r["cmc_id"] for r in store.top_coins()}
    assert by_symbol["ETC"] == 1321
    assert by_symbol["HOT"] == 2682


def test_alias_is_fetched_by_id_and_wins(scrape, store, providers):
    assert scrape("ranks") == 0
    store.alias("HOT", 2430)
    assert scrape("prices") == 0
    hot = next(r for r in store.top_coins() if r["symbol"] == "HOT")
    hydro = next(a for a in providers.market.assets if a.id == 2430)
    assert (hot["cmc_id"], hot["price_usd"], hot["match"]) == (2430, hydro.price, "alias")
    by_id = [c for c in cmc_requests(providers) if "id" in c.query]
    assert [c.query["id"] for c in by_id] == ["2430"]
    assert "HOT" not in cmc_requests(providers)[0].query["symbol"].split(",")


def test_credit_count_is_recorded_per_run(scraped, db):
    [run] = price_runs(db)
    assert run.status == "succeeded"
    assert 1 <= run.credit_count <= 10
    with Session(db) as session:
        stored = session.scalar(select(PriceQuote.run_id).limit(1))
    assert stored == run.id


def test_prices_before_any_ranking_fail_with_a_reason(scrape, db, providers):
    assert scrape("prices") == 1
    [run] = price_runs(db)
    assert run.status == "failed"
    assert "no ranking snapshot yet" in run.error
    assert cmc_requests(providers) == []


def test_price_drift_is_served_after_the_next_scrape(scrape, store, providers):
    assert scrape("ranks") == 0
    assert scrape("prices") == 0
    btc = next(a for a in providers.market.assets if a.symbol == "BTC")
    before = next(r for r in store.top_coins() if r["symbol"] == "BTC")["price_usd"]
    btc.price = before * 2
    assert scrape("prices") == 0
    assert next(r for r in store.top_coins() if r["symbol"] == "BTC")["price_usd"] == before * 2
