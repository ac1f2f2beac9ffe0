"""``python -m scrapers ranks``: the chosen provider's volume ranking becomes a snapshot."""

from __future__ import annotations

import json

import pytest
import requests
from sqlalchemy import Row, select, text
from sqlalchemy.orm import Session

from fakeproviders import FakeProviders
from tests.support import CMC_KEY, COINDESK_KEY, CRYPTOCOMPARE_KEY, PayloadServer
from topcoins.models import ScrapeRun

PROVIDERS = ["coindesk", "cryptocompare", "coinmarketcap"]
KEYS = {
    "coindesk": ("COINDESK_API_KEY", COINDESK_KEY),
    "cryptocompare": ("CRYPTOCOMPARE_API_KEY", CRYPTOCOMPARE_KEY),
    "coinmarketcap": ("COINMARKETCAP_API_KEY", CMC_KEY),
}


def ranking(db) -> list[Row]:
    """Every stored ranking, with the price a CoinMarketCap listing carried for each coin."""
    with db.connect() as connection:
        return list(
            connection.execute(
                text(
                    "SELECT r.*, p.price_usd, p.last_updated AS price_updated_at "
                    "FROM rankings r LEFT JOIN price_quotes p "
                    "ON p.day = r.day AND p.run_id = r.run_id AND p.cmc_id = r.cmc_id "
                    "ORDER BY r.run_id, r.rank"
                )
            )
        )


def runs(db) -> list[ScrapeRun]:
    with Session(db) as session:
        return list(session.scalars(select(ScrapeRun).order_by(ScrapeRun.id)))


def calls(providers: FakeProviders, provider: str, path: str) -> list[dict[str, str]]:
    return [r.query for r in providers.requests if r.provider == provider and r.path == path]


def test_coindesk_ranks_the_top_200_by_spot_volume_from_page_1(scrape, db, providers):
    assert scrape("ranks") == 0
    expected = providers.market.ranking[:200]
    assert [(e.rank, e.symbol, e.name) for e in ranking(db)] == [
        (i, coin.symbol.rstrip("*"), coin.full_name) for i, coin in enumerate(expected, start=1)
    ]
    pages = calls(providers, "coindesk", "/asset/v1/top/list")
    assert [(p["page"], p["page_size"]) for p in pages] == [("1", "100"), ("2", "100")]
    assert {(p["sort_by"], p["sort_direction"], p["toplist_quote_asset"]) for p in pages} == {
        ("SPOT_MOVING_24_HOUR_QUOTE_VOLUME_USD", "DESC", "USD")
    }
    [run] = runs(db)
    assert (run.kind, run.source, run.status, run.item_count, run.measure) == (
        "ranking",
        "coindesk",
        "succeeded",
        200,
        "SPOT_MOVING_24_HOUR_QUOTE_VOLUME_USD",
    )


def test_coindesk_ids_slug_volume_and_coinmarketcap_id_are_kept(scrape, db, providers):
    assert scrape("ranks") == 0
    stored = {e.rank: e for e in ranking(db)}
    with_id = [
        (rank, coin)
        for rank, coin in enumerate(providers.market.ranking[:200], start=1)
        if coin.coindesk_cmc_id is not None and coin.price is not None
    ]
    assert len(with_id) > 100
    for rank, coin in with_id:
        entry = stored[rank]
        assert entry.provider_asset_id == coin.cc_id
        assert entry.volume_24h_usd == pytest.approx(float(coin.volume_24h), rel=1e-6)
        assert (entry.cmc_id, entry.resolved_by) == (coin.coindesk_cmc_id, "provider")
        assert entry.slug
        # CoinDesk's own price is not CoinMarketCap's: the prices run buys the one served.
        assert entry.price_usd is None
    bitcoin = stored[1]
    assert (bitcoin.symbol, bitcoin.slug, bitcoin.cmc_id) == ("BTC", "bitcoin", 1)


def test_cryptocompare_legacy_ranking_pages_from_0_by_total_volume(scrape, db, providers):
    assert scrape("ranks", RANKING_PROVIDER="cryptocompare") == 0
    pages = calls(providers, "cryptocompare", "/data/top/totalvolfull")
    assert pages == [
        {"tsym": "USD", "limit": "100", "page": "0"},
        {"tsym": "USD", "limit": "100", "page": "1"},
    ]
    stored = ranking(db)
    expected = providers.market.ranking[:200]
    assert [(e.symbol, e.name) for e in stored] == [
        (coin.symbol.rstrip("*"), coin.full_name) for coin in expected
    ]
    assert stored[0].provider_asset_id == expected[0].cc_id
    assert stored[0].volume_24h_usd == pytest.approx(float(expected[0].volume_24h), rel=1e-6)
    [run] = runs(db)
    assert (run.source, run.measure) == ("cryptocompare", "TOTALVOLUME24HTO")


def test_a_starred_cryptocompare_ticker_is_stored_as_the_plain_ticker(scrape, db, providers):
    starred = [c for c in providers.market.ranking[:200] if c.symbol.endswith("*")]
    assert {c.symbol for c in starred} >= {"HOT*", "POLY*"}
    assert scrape("ranks", RANKING_PROVIDER="cryptocompare") == 0
    by_name = {e.name: e.symbol for e in ranking(db)}
    assert by_name["Holo"] == "HOT"
    assert by_name["Polymath Network"] == "POLY"


def test_coinmarketcap_ranks_by_volume_in_one_listings_call_with_ids(scrape, db, providers):
    assert scrape("ranks", RANKING_PROVIDER="coinmarketcap") == 0
    [listing] = calls(providers, "coinmarketcap", "/v1/cryptocurrency/listings/latest")
    assert (listing["sort"], listing["sort_dir"], listing["limit"], listing["convert"]) == (
        "volume_24h",
        "desc",
        "200",
        "USD",
    )
    stored = ranking(db)
    assert len(stored) == 200
    volumes = [e.volume_24h_usd for e in stored]
    assert volumes == sorted(volumes, reverse=True)
    assets = {a.id: a for a in providers.market.assets}
    assert all(e.resolved_by == "provider" and e.cmc_id == e.provider_asset_id for e in stored)
    assert all(e.symbol == assets[e.cmc_id].symbol for e in stored)
    assert all(e.price_usd == assets[e.cmc_id].price for e in stored)
    assert all(e.price_updated_at is not None for e in stored)
    [run] = runs(db)
    assert (run.source, run.measure, run.credit_count) == ("coinmarketcap", "volume_24h", 1)
    assert run.credits_left_monthly == 10_000


def test_coinmarketcap_ranking_is_the_providers_own_volume_order(scrape, db, providers, env):
    assert scrape("ranks", RANKING_PROVIDER="coinmarketcap") == 0
    listed = requests.get(
        providers.coinmarketcap_url + "/v1/cryptocurrency/listings/latest",
        params={"sort": "volume_24h", "limit": "200"},
        headers={"X-CMC_PRO_API_KEY": env["COINMARKETCAP_API_KEY"]},
        timeout=5,
    ).json()["data"]
    assert [e.cmc_id for e in ranking(db)] == [asset["id"] for asset in listed]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_ranking_size_is_configurable(scrape, db, providers, provider):
    assert scrape("ranks", RANKING_PROVIDER=provider, RANKING_SIZE="250") == 0
    stored = ranking(db)
    assert [e.rank for e in stored] == list(range(1, 251))


def test_sponsored_data_is_not_ranked(scrape, db, providers):
    sponsored = {coin.symbol for coin in providers.market.sponsored}
    assert sponsored
    for provider in ("coindesk", "cryptocompare"):
        assert scrape("ranks", RANKING_PROVIDER=provider) == 0
    assert sponsored.isdisjoint(e.symbol for e in ranking(db))


@pytest.mark.parametrize("provider", ["coindesk", "cryptocompare"])
def test_entries_without_market_data_keep_their_place(scrape, db, providers, provider):
    no_price = [
        (i, c.symbol)
        for i, c in enumerate(providers.market.ranking[:200], start=1)
        if c.price is None
    ]
    assert no_price
    assert scrape("ranks", RANKING_PROVIDER=provider) == 0
    stored = {e.rank: e for e in ranking(db)}
    for rank, symbol in no_price:
        assert stored[rank].symbol == symbol


def test_each_scrape_keeps_its_own_snapshot(scrape, db):
    assert scrape("ranks") == 0
    assert scrape("ranks") == 0
    assert [r.item_count for r in runs(db)] == [200, 200]
    assert len({e.run_id for e in ranking(db)}) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_key_goes_in_a_header_only(scrape, providers, provider):
    assert scrape("ranks", RANKING_PROVIDER=provider) == 0
    _variable, key = KEYS[provider]
    sent = [r for r in providers.requests if r.provider == provider]
    assert sent
    header = "X-CMC_PRO_API_KEY" if provider == "coinmarketcap" else "Authorization"
    expected = key if provider == "coinmarketcap" else f"Apikey {key}"
    assert all(r.headers[header] == expected for r in sent)
    assert all(key not in r.raw_url for r in providers.requests)


@pytest.mark.parametrize(
    ("provider", "reason"),
    [
        ("coindesk", "CoinDesk: key rejected: "),
        ("cryptocompare", "CryptoCompare: key rejected: You are using an invalid api key!"),
        ("coinmarketcap", "CoinMarketCap: key rejected: This API Key is invalid."),
    ],
)
def test_a_rejected_key_fails_the_run_with_a_one_line_reason(scrape, db, provider, reason):
    variable, _ = KEYS[provider]
    assert scrape("ranks", RANKING_PROVIDER=provider, **{variable: "wrong-key"}) == 1
    [run] = runs(db)
    assert (run.kind, run.source, run.status) == ("ranking", provider, "failed")
    assert run.error.startswith(reason)
    assert "\n" not in run.error
    assert "wrong-key" not in run.error


def coindesk_page(items: list[dict]) -> bytes:
    body = {"Data": {"STATS": {"PAGE": 1, "PAGE_SIZE": 10, "TOTAL_ASSETS": 3396}, "LIST": items}}
    return json.dumps({**body, "Err": {}}).encode()


def coindesk_item(number: int, **fields: object) -> dict:
    item = {
        "ID": number,
        "SYMBOL": f"C{number}",
        "NAME": f"Coin {number}",
        "URI": f"coin-{number}",
        "PRICE_USD": 1.5,
        "SPOT_MOVING_24_HOUR_QUOTE_VOLUME_USD": 1000 - number,
        "ASSET_ALTERNATIVE_IDS": [{"NAME": "CMC", "ID": number + 5000}],
    }
    return {**item, **fields}


def test_coindesk_assets_with_missing_fields_moved_or_repeated_keep_the_ranking_whole(
    scrape, db, store
):
    """Any CoinDesk field may be null or missing, and the list moves between two pages."""
    first = [coindesk_item(n) for n in range(1, 11)]
    first[3]["SYMBOL"] = None
    del first[5]["NAME"]
    first[6] = coindesk_item(2)
    first[7]["ASSET_ALTERNATIVE_IDS"] = [{"NAME": "CG", "ID": "coin-8"}, {"NAME": "CMC", "ID": "9"}]
    first[8]["ASSET_ALTERNATIVE_IDS"] = None
    second = [coindesk_item(n) for n in range(11, 21)]

    def page(query: dict[str, str]) -> bytes:
        return coindesk_page(first if query["page"] == "1" else second)

    with PayloadServer({"/asset/v1/top/list": page}) as coindesk:
        assert scrape("ranks", COINDESK_BASE_URL=coindesk.url, RANKING_SIZE="10") == 0
    stored = ranking(db)
    assert [(e.rank, e.symbol) for e in stored] == list(
        enumerate(["C1", "C2", "C3", "C5", "C6", "C8", "C9", "C10", "C11", "C12"], start=1)
    )
    by_symbol = {e.symbol: e for e in stored}
    assert by_symbol["C6"].name == "C6"
    assert (by_symbol["C8"].cmc_id, by_symbol["C8"].resolved_by) == (9, "provider")
    assert (by_symbol["C9"].cmc_id, by_symbol["C9"].resolved_by) == (None, None)


def test_a_provider_repeating_the_same_page_is_not_paged_forever(scrape, db):
    items = [coindesk_item(n) for n in range(1, 101)]
    with PayloadServer({"/asset/v1/top/list": coindesk_page(items)}) as coindesk:
        assert scrape("ranks", COINDESK_BASE_URL=coindesk.url, RANKING_SIZE="150") == 1
        pages = len(coindesk.requests)
    [run] = runs(db)
    assert run.error == "CoinDesk: ranking holds 100 coins, expected 150"
    assert pages == 2


def test_ids_no_provider_uses_are_stored_as_absent_and_the_coin_kept(scrape, db):
    """An id past four bytes (or zero) is a broken value: the coin stays, by its ticker."""
    items = [coindesk_item(n) for n in range(1, 11)]
    items[0]["ID"] = 2**40
    items[1]["ASSET_ALTERNATIVE_IDS"] = [{"NAME": "CMC", "ID": str(2**31)}]
    items[2]["ID"] = 0
    with PayloadServer({"/asset/v1/top/list": coindesk_page(items)}) as coindesk:
        assert scrape("ranks", COINDESK_BASE_URL=coindesk.url, RANKING_SIZE="10") == 0
    by_symbol = {e.symbol: e for e in ranking(db)}
    assert len(by_symbol) == 10
    assert (by_symbol["C1"].provider_asset_id, by_symbol["C1"].cmc_id) == (None, 5001)
    assert (by_symbol["C2"].provider_asset_id, by_symbol["C2"].cmc_id) == (2, None)
    assert by_symbol["C3"].provider_asset_id is None
