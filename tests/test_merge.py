"""The ``top_coins`` view: which CoinMarketCap price each ranked coin gets."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.orm import Session

from scrapers.history import HISTORY_TABLES, partition_name
from scrapers.snapshots import RunRecord, record_failure
from topcoins.models import RunKind, Source


def prices_by_symbol(store) -> dict[str, tuple[int | None, Decimal | None, str | None]]:
    return {
        row["symbol"]: (row["cmc_id"], row["price_usd"], row["match"]) for row in store.top_coins()
    }


def test_resolved_coins_are_priced_by_their_id(store):
    store.ranking([("BTC", "Bitcoin", 1, "provider"), ("ETH", "Ethereum", 1027, "symbol")])
    store.prices(
        [(1, "BTC", "Bitcoin", 1, "96463.34789639605"), (1027, "ETH", "Ethereum", 2, "2630.5")]
    )
    rows = store.top_coins()
    assert [(r["rank"], r["symbol"], r["name"], r["price_usd"], r["match"]) for r in rows] == [
        (1, "BTC", "Bitcoin", Decimal("96463.34789639605"), "provider"),
        (2, "ETH", "Ethereum", Decimal("2630.5"), "symbol"),
    ]


def test_the_id_decides_even_when_tickers_and_names_differ(store):
    store.ranking([("IOT", "IOTA", 1720, "slug"), ("ETC", "Ethereum Classic", 1321, "symbol")])
    store.prices(
        [
            (1720, "MIOTA", "IOTA", 60, "0.25"),
            (1400, "ETC", "Ethercoin", 37, "0.01"),
            (1321, "ETC", "Ethereum Classic", 38, "20.5"),
        ]
    )
    assert prices_by_symbol(store) == {
        "IOT": (1720, Decimal("0.25"), "slug"),
        "ETC": (1321, Decimal("20.5"), "symbol"),
    }


def test_a_resolved_coin_missing_from_the_prices_keeps_its_id_and_no_price(store):
    store.ranking([("HOT", "Holo", 424242, "alias")])
    store.prices([(2682, "HOT", "Holo", 80, "0.002")])
    assert prices_by_symbol(store)["HOT"] == (424242, None, "alias")


def test_unresolved_coin_falls_back_to_the_ticker_with_the_same_name_first(store):
    store.ranking([("ETC", "Ethereum Classic")])
    store.prices(
        [
            (1400, "ETC", "Ethercoin", 50, "0.01"),
            (1321, "ETC", "ETHEREUM classic", 120, "20.5"),
        ]
    )
    assert prices_by_symbol(store)["ETC"] == (1321, Decimal("20.5"), "ticker")


def test_unresolved_coin_without_name_match_takes_the_best_ranked_namesake(store):
    store.ranking([("HOT", "Holochain")])
    store.prices(
        [
            (2430, "HOT", "Hydro Protocol", 900, "0.0001"),
            (9999, "HOT", "Hot Unranked", None, "5"),
            (2682, "HOT", "Holo", 80, "0.002"),
        ]
    )
    assert prices_by_symbol(store)["HOT"] == (2682, Decimal("0.002"), "ticker")


def test_unranked_namesakes_lose_to_ranked_ones_and_ties_go_to_the_lowest_id(store):
    store.ranking([("DUP", "Duplicate")])
    store.prices([(30, "DUP", "Other A", None, "3"), (20, "DUP", "Other B", None, "2")])
    assert prices_by_symbol(store)["DUP"] == (20, Decimal("2"), "ticker")


def test_a_resolved_coin_never_takes_a_namesakes_price(store):
    store.ranking([("HOT", "Holo", 2682, "symbol")])
    store.prices([(2430, "HOT", "Hydro Protocol", 900, "0.0001")])
    assert prices_by_symbol(store)["HOT"] == (2682, None, "symbol")


def test_unmatched_coin_keeps_its_rank_without_price(store):
    store.ranking(
        [
            ("BTC", "Bitcoin", 1, "symbol"),
            ("NOPE", "Nowhere Coin"),
            ("ETH", "Ethereum", 1027, "symbol"),
        ]
    )
    store.prices([(1, "BTC", "Bitcoin", 1, "1"), (1027, "ETH", "Ethereum", 2, "2")])
    rows = store.top_coins()
    assert [(r["rank"], r["symbol"], r["price_usd"], r["match"]) for r in rows] == [
        (1, "BTC", Decimal("1"), "symbol"),
        (2, "NOPE", None, None),
        (3, "ETH", Decimal("2"), "symbol"),
    ]


def test_coin_with_null_price_is_served_unpriced(store):
    store.ranking([("BTC", "Bitcoin", 1, "symbol")])
    store.prices([(1, "BTC", "Bitcoin", 1, None)])
    assert prices_by_symbol(store)["BTC"] == (1, None, "symbol")


def test_latest_successful_snapshots_are_served_and_failed_runs_ignored(store, db):
    store.ranking([("OLD", "Old Coin", 1, "symbol")])
    store.prices([(1, "OLD", "Old Coin", 1, "1")])
    ranking_id = store.ranking([("BTC", "Bitcoin", 1, "symbol")])
    price_id = store.prices([(1, "BTC", "Bitcoin", 1, "2")])
    with Session(db) as session, session.begin():
        for kind, source in (
            (RunKind.RANKING, Source.COINDESK),
            (RunKind.PRICES, Source.COINMARKETCAP),
        ):
            record_failure(session, RunRecord(kind, source, datetime.now(UTC)), "boom")
    rows = store.top_coins()
    assert [
        (r["symbol"], r["price_usd"], r["ranking_run_id"], r["price_run_id"]) for r in rows
    ] == [("BTC", Decimal("2"), ranking_id, price_id)]


def test_a_coinmarketcap_ranking_and_coinmarketcap_prices_are_told_apart_by_kind(store):
    ranking_id = store.ranking([("BTC", "Bitcoin", 1, "provider")], source=Source.COINMARKETCAP)
    price_id = store.prices([(1, "BTC", "Bitcoin", 1, "7")])
    [row] = store.top_coins()
    assert (row["ranking_run_id"], row["price_run_id"], row["price_usd"]) == (
        ranking_id,
        price_id,
        Decimal("7"),
    )
    assert (row["ranking_source"], row["match"]) == ("coinmarketcap", "provider")


def test_ranking_without_any_price_snapshot_is_unpriced(store):
    store.ranking([("BTC", "Bitcoin", 1, "symbol")])
    [row] = store.top_coins()
    assert (row["symbol"], row["price_usd"], row["price_run_id"]) == ("BTC", None, None)


def test_no_ranking_means_no_rows(store):
    store.prices([(1, "BTC", "Bitcoin", 1, "1")])
    assert store.top_coins() == []


def test_the_view_reads_only_the_partitions_of_the_latest_runs(store, db):
    """However long the history, top_coins reads one day of each table, by the run's index."""
    for _ in range(3):
        store.ranking([("BTC", "Bitcoin", 1, "provider")])
        store.prices([(1, "BTC", "Bitcoin", 1, "5")])
        store.age(1)
    ranking = store.ranking([("BTC", "Bitcoin", 1, "provider")])
    store.age(2)
    store.prices([(1, "BTC", "Bitcoin", 1, "6")])
    with db.connect() as connection:
        plan = connection.execute(
            text("EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM top_coins")
        ).scalar_one()
        days = dict(connection.execute(text("SELECT kind, day FROM latest_runs")).all())
    read = sorted(
        node["Relation Name"]
        for node in plan_nodes(plan[0]["Plan"])
        if node.get("Actual Loops") and node.get("Relation Name", "").startswith(HISTORY_TABLES)
    )
    assert read == [
        partition_name("price_quotes", days["prices"]),
        partition_name("ranking_entries", days["ranking"]),
    ]
    assert days["ranking"] == days["prices"] - 2
    assert store.top_coins()[0]["ranking_run_id"] == ranking


def plan_nodes(node: dict) -> list[dict]:
    return [node, *(n for child in node.get("Plans", []) for n in plan_nodes(child))]
