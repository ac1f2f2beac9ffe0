"""``GET /`` beyond the top N: the fields people ask for, paging, selection, columns, precision."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from scrapers.coinmarketcap import Quote
from scrapers.ranking import RankedCoin

UPDATED = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


def ranked(rank: int, symbol: str, name: str, cmc_id: int | None, **extra) -> RankedCoin:
    return RankedCoin(rank=rank, symbol=symbol, name=name, cmc_id=cmc_id, **extra)


def quote(cmc_id: int, symbol: str, price: str | None, **extra) -> Quote:
    return Quote(
        cmc_id=cmc_id,
        symbol=symbol,
        name=symbol.title(),
        slug=None,
        cmc_rank=None,
        price_usd=None if price is None else Decimal(price),
        last_updated=extra.pop("last_updated", None),
        **extra,
    )


@pytest.fixture
def market(store):
    """Five coins; BTC with every figure, and two namesakes of HOT."""
    store.ranking(
        [
            ranked(1, "BTC", "Bitcoin", 1, provider_asset_id=1182,
                   volume_24h_usd=Decimal("25000123456.78")),
            ranked(2, "ETH", "Ethereum", 1027, provider_asset_id=7605),
            ranked(3, "HOT", "Holo", 2682),
            ranked(4, "HOT", "Hydro Protocol", 2430),
            ranked(5, "NOPE", "Nowhere", None),
        ]
    )  # fmt: skip
    store.prices(
        [
            quote(1, "BTC", "96463.34789639605", market_cap=Decimal("1910000000000.5"),
                  percent_change_24h=-1.2345678, last_updated=UPDATED),
            quote(1027, "ETH", "2630.918154224"),
            quote(2682, "HOT", "0.00201"),
            quote(2430, "HOT", None),
        ]
    )  # fmt: skip


def test_each_coin_carries_its_ids_volume_market_cap_change_and_price_time(client, market):
    data = client.get("/?limit=2").get_json()["data"]
    assert data[0] == {
        "rank": 1,
        "symbol": "BTC",
        "name": "Bitcoin",
        "cmc_id": 1,
        "provider_asset_id": 1182,
        "price_usd": 96463.34789639605,
        "price_updated_at": "2026-11-25T09:30:00Z",
        "volume_24h_usd": 25000120000.0,  # stored to seven significant digits
        "market_cap_usd": 1910000000000.5,
        "percent_change_24h": -1.234568,
    }
    assert data[1]["provider_asset_id"] == 7605
    assert [data[1][k] for k in ("volume_24h_usd", "market_cap_usd", "percent_change_24h")] == [
        None,
        None,
        None,
    ]


def test_pages_follow_the_link_header_to_the_end(client, market):
    seen, url, pages = [], "/?limit=2", 0
    while url is not None:
        response = client.get(url)
        document = response.get_json()
        assert document["meta"]["total"] == 5
        seen += [coin["rank"] for coin in document["data"]]
        pages += 1
        found = re.search(r'<\?([^>]*)>; rel="next"', response.headers.get("Link", ""))
        url = f"/?{found.group(1)}" if found else None
    assert seen == [1, 2, 3, 4, 5]
    assert pages == 3


def test_a_middle_page_links_both_ways_and_counts_its_own_coins(client, market):
    response = client.get("/?limit=2&offset=2&format=csv")
    assert response.headers["Link"] == (
        '<?limit=2&offset=4&format=csv>; rel="next", <?limit=2&offset=0&format=csv>; rel="prev"'
    )
    assert response.get_data(as_text=True).splitlines() == [
        "Rank,Symbol,Price USD",
        "3,HOT,0.00201",
        "4,HOT,",
    ]
    meta = client.get("/?limit=2&offset=2").get_json()["meta"]
    assert (meta["count"], meta["total"], meta["offset"], meta["limit"], meta["unpriced"]) == (
        2,
        5,
        2,
        2,
        1,
    )


def test_an_offset_past_the_end_is_an_empty_page(client, market):
    response = client.get("/?offset=50")
    assert response.status_code == 200
    assert response.get_json()["data"] == []
    assert response.get_json()["meta"]["total"] == 5
    assert 'rel="prev"' in response.headers["Link"]
    assert 'rel="next"' not in response.headers["Link"]


def test_symbols_and_ids_select_coins_keeping_their_ranks_and_name_the_unknown(client, market):
    document = client.get("/?symbols=hot,BTC,DOGE&ids=1027,999").get_json()
    assert [(c["rank"], c["symbol"], c["cmc_id"]) for c in document["data"]] == [
        (1, "BTC", 1),
        (2, "ETH", 1027),
        (3, "HOT", 2682),
        (4, "HOT", 2430),
    ]
    assert document["meta"]["unknown_symbols"] == ["DOGE"]
    assert document["meta"]["unknown_ids"] == [999]
    assert document["meta"]["total"] == 4


def test_selection_pages_like_the_whole_list(client, market):
    response = client.get("/?symbols=HOT&limit=1")
    assert [c["name"] for c in response.get_json()["data"]] == ["Holo"]
    assert '<?limit=1&offset=1&format=json&symbols=HOT>; rel="next"' in response.headers["Link"]


def test_csv_stays_rank_symbol_price_and_fields_pick_columns_by_their_json_names(client, market):
    plain = client.get("/?format=csv&limit=1").get_data(as_text=True)
    assert plain == "Rank,Symbol,Price USD\r\n1,BTC,96463.34789639605\r\n"
    picked = client.get(
        "/?format=csv&limit=2&fields=cmc_id,symbol,market_cap_usd,price_updated_at"
    ).get_data(as_text=True)
    assert list(csv.reader(io.StringIO(picked))) == [
        ["cmc_id", "symbol", "market_cap_usd", "price_updated_at"],
        ["1", "BTC", "1910000000000.5", "2026-11-25T09:30:00Z"],
        ["1027", "ETH", "", ""],
    ]


def test_fields_pick_the_members_of_each_json_coin_too(client, market):
    data = client.get("/?limit=2&fields=symbol,price_usd").get_json()["data"]
    assert data == [
        {"symbol": "BTC", "price_usd": 96463.34789639605},
        {"symbol": "ETH", "price_usd": 2630.918154224},
    ]


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        ("12345678.9012345678", "12345678.9012345678"),  # 18 significant digits
        ("0.000000000123456789", "0.000000000123456789"),  # below 1e-8
    ],
)
def test_prices_are_served_with_every_stored_digit_in_json_and_csv(client, store, price, expected):
    store.ranking([ranked(1, "XYZ", "Xyz", 77)])
    store.prices([quote(77, "XYZ", price)])
    body = client.get("/").get_data(as_text=True)
    assert f'"price_usd":{expected},' in body
    coin = json.loads(body, parse_float=Decimal)["data"][0]
    assert coin["price_usd"] == Decimal(expected)
    rows = list(csv.reader(io.StringIO(client.get("/?format=csv").get_data(as_text=True))))
    assert rows[1] == ["1", "XYZ", expected]
    assert Decimal(rows[1][2]) == Decimal(price)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("offset=-1", "offset"),
        ("offset=abc", "offset"),
        ("offset=1e3", "offset"),
        ("offset=1&offset=2", "offset"),
        ("fields=rank,colour", "fields"),
        ("fields=rank,rank", "fields"),
        ("fields=", "fields"),
        ("fields=rank,", "fields"),
        ("symbols=" + ",".join(f"S{i}" for i in range(501)), "symbols"),
        ("symbols=BT%20C", "symbols"),
        ("symbols=%3Cscript%3E", "symbols"),
        ("symbols=BTC;ETH", "symbols"),
        ("symbols=" + "A" * 33, "symbols"),
        ("symbols=", "symbols"),
        ("ids=0", "ids"),
        ("ids=abc", "ids"),
        ("ids=1,,2", "ids"),
        ("ids=2147483648", "ids"),
        ("ids=-5", "ids"),
    ],
)
def test_bad_paging_selection_or_fields_is_a_400_naming_the_parameter(
    client, market, query, parameter
):
    response = client.get(f"/?{query}")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["invalid_params"] == [
        {"name": parameter, "reason": problem["detail"].removeprefix(f"{parameter}: ")}
    ]


def test_five_hundred_symbols_are_accepted(client, market):
    symbols = ",".join(["BTC"] + [f"S{i}" for i in range(499)])
    document = client.get(f"/?symbols={symbols}").get_json()
    assert [c["symbol"] for c in document["data"]] == ["BTC"]
    assert len(document["meta"]["unknown_symbols"]) == 499


def test_tickers_with_marks_and_other_scripts_are_valid_symbols(client, market):
    response = client.get("/?symbols=HOT*,USD.E,币安币")
    assert response.status_code == 200, response.get_json()["detail"]
    assert response.get_json()["meta"]["unknown_symbols"] == ["HOT*", "USD.E", "币安币"]
