"""The ``top_coins`` view: which CoinMarketCap price each ranked coin gets."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from scrapers.snapshots import record_failure
from topcoins.models import Source


def prices_by_symbol(store) -> dict[str, tuple[int | None, Decimal | None, str | None]]:
    return {
        row["symbol"]: (row["cmc_id"], row["price_usd"], row["match"]) for row in store.top_coins()
    }


def test_symbol_match_gives_the_price(store):
    store.ranking([("BTC", "Bitcoin"), ("ETH", "Ethereum")])
    store.prices(
        [(1, "BTC", "Bitcoin", 1, "96463.34789639605"), (1027, "ETH", "Ethereum", 2, "2630.5")]
    )
    rows = store.top_coins()
    assert [(r["rank"], r["symbol"], r["name"], r["price_usd"]) for r in rows] == [
        (1, "BTC", "Bitcoin", Decimal("96463.34789639605")),
        (2, "ETH", "Ethereum", Decimal("2630.5")),
    ]


def test_shared_symbol_prefers_the_asset_whose_name_matches_case_insensitively(store):
    store.ranking([("ETC", "Ethereum Classic")])
    store.prices(
        [
            (1400, "ETC", "Ethercoin", 50, "0.01"),
            (1321, "ETC", "ETHEREUM classic", 120, "20.5"),
        ]
    )
    assert prices_by_symbol(store)["ETC"] == (1321, Decimal("20.5"), "symbol")


def test_shared_symbol_without_name_match_prefers_the_lowest_cmc_rank(store):
    store.ranking([("HOT", "Holochain")])
    store.prices(
        [
            (2430, "HOT", "Hydro Protocol", 900, "0.0001"),
            (9999, "HOT", "Hot Unranked", None, "5"),
            (2682, "HOT", "Holo", 80, "0.002"),
        ]
    )
    assert prices_by_symbol(store)["HOT"] == (2682, Decimal("0.002"), "symbol")


def test_unranked_assets_lose_to_ranked_ones_and_ties_go_to_the_lowest_id(store):
    store.ranking([("DUP", "Duplicate")])
    store.prices([(30, "DUP", "Other A", None, "3"), (20, "DUP", "Other B", None, "2")])
    assert prices_by_symbol(store)["DUP"] == (20, Decimal("2"), "symbol")


def test_missing_symbol_falls_back_to_the_name(store):
    store.ranking([("IOT", "IOTA")])
    store.prices([(1720, "MIOTA", "IOTA", 60, "0.25"), (1, "BTC", "Bitcoin", 1, "1")])
    assert prices_by_symbol(store)["IOT"] == (1720, Decimal("0.25"), "name")


def test_symbol_match_beats_a_name_match_on_another_asset(store):
    store.ranking([("ABC", "Alpha")])
    store.prices([(7, "XYZ", "alpha", 1, "7"), (8, "ABC", "Beta", 500, "8")])
    assert prices_by_symbol(store)["ABC"] == (8, Decimal("8"), "symbol")


def test_alias_wins_over_every_rule(store):
    store.ranking([("HOT", "Holo")])
    store.alias("HOT", 2430)
    store.prices(
        [(2682, "HOT", "Holo", 80, "0.002"), (2430, "HOT", "Hydro Protocol", 900, "0.0001")]
    )
    assert prices_by_symbol(store)["HOT"] == (2430, Decimal("0.0001"), "alias")


def test_alias_to_an_asset_missing_from_the_snapshot_leaves_the_coin_unpriced(store):
    store.ranking([("HOT", "Holo")])
    store.alias("HOT", 424242)
    store.prices([(2682, "HOT", "Holo", 80, "0.002")])
    assert prices_by_symbol(store)["HOT"] == (None, None, None)


def test_unmatched_coin_keeps_its_rank_without_price(store):
    store.ranking([("BTC", "Bitcoin"), ("NOPE", "Nowhere Coin"), ("ETH", "Ethereum")])
    store.prices([(1, "BTC", "Bitcoin", 1, "1"), (1027, "ETH", "Ethereum", 2, "2")])
    rows = store.top_coins()
    assert [(r["rank"], r["symbol"], r["price_usd"]) for r in rows] == [
        (1, "BTC", Decimal("1")),
        (2, "NOPE", None),
        (3, "ETH", Decimal("2")),
    ]


def test_coin_with_null_price_is_served_unpriced(store):
    store.ranking([("BTC", "Bitcoin")])
    store.prices([(1, "BTC", "Bitcoin", 1, None)])
    assert prices_by_symbol(store)["BTC"] == (1, None, "symbol")


def test_latest_successful_snapshots_are_served_and_failed_runs_ignored(store, db):
    store.ranking([("OLD", "Old Coin")])
    store.prices([(1, "OLD", "Old Coin", 1, "1")])
    ranking_id = store.ranking([("BTC", "Bitcoin")])
    price_id = store.prices([(1, "BTC", "Bitcoin", 1, "2")])
    with Session(db) as session, session.begin():
        record_failure(session, Source.CRYPTOCOMPARE, datetime.now(UTC), "boom")
        record_failure(session, Source.COINMARKETCAP, datetime.now(UTC), "boom")
    rows = store.top_coins()
    assert [
        (r["symbol"], r["price_usd"], r["ranking_run_id"], r["price_run_id"]) for r in rows
    ] == [("BTC", Decimal("2"), ranking_id, price_id)]


def test_ranking_without_any_price_snapshot_is_unpriced(store):
    store.ranking([("BTC", "Bitcoin")])
    [row] = store.top_coins()
    assert (row["symbol"], row["price_usd"], row["price_run_id"]) == ("BTC", None, None)


def test_no_ranking_means_no_rows(store):
    store.prices([(1, "BTC", "Bitcoin", 1, "1")])
    assert store.top_coins() == []
