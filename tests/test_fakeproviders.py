"""Pins the fake providers' wire formats: the scrapers are tested against them, so a drift here
would let the scrapers pass against shapes the real APIs never send."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from fakeproviders import CmcAsset, FakeProviders, Fault, Market, RankedCoin

COINDESK_KEY = "test-coindesk-key"
CRYPTOCOMPARE_KEY = "test-cryptocompare-key"
CMC_KEY = "test-cmc-key"
TOP_LIST = "/asset/v1/top/list"
TOTALVOL = "/data/top/totalvolfull"
LISTINGS = "/v1/cryptocurrency/listings/latest"
QUOTES = "/v2/cryptocurrency/quotes/latest"
MAP = "/v1/cryptocurrency/map"
KEY_INFO = "/v1/key/info"
VOLUME = "SPOT_MOVING_24_HOUR_QUOTE_VOLUME_USD"
MARKET_CAP = "CIRCULATING_MKT_CAP_USD"
QUIRK_SYMBOLS = {"IOT", "HOT*", "POLY*", "ETC", "GRT", "BTG", "XYZ"}
TIMEOUT = 10


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProviders]:
    with FakeProviders() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeProviders) -> Iterator[FakeProviders]:
    server.reset()
    yield server
    server.reset()


def _json(response: requests.Response) -> Any:
    return response.json(parse_float=Decimal)


def coindesk(
    fake: FakeProviders, *, key: str | None = COINDESK_KEY, **params: Any
) -> requests.Response:
    headers = {} if key is None else {"Authorization": f"Apikey {key}"}
    return requests.get(
        fake.coindesk_url + TOP_LIST, params=params, headers=headers, timeout=TIMEOUT
    )


def coindesk_list(fake: FakeProviders, **params: Any) -> list[dict[str, Any]]:
    response = coindesk(fake, **params)
    assert response.status_code == 200
    return _json(response)["Data"]["LIST"]


def every_coindesk_item(fake: FakeProviders) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in range(1, 5):
        items += coindesk_list(fake, page=page, page_size=100, sort_by=VOLUME)
    return items


def cryptocompare(
    fake: FakeProviders, *, key: str | None = CRYPTOCOMPARE_KEY, **params: Any
) -> requests.Response:
    headers = {} if key is None else {"Authorization": f"Apikey {key}"}
    return requests.get(
        fake.cryptocompare_url + TOTALVOL,
        params={"tsym": "USD", **params},
        headers=headers,
        timeout=TIMEOUT,
    )


def cmc(fake: FakeProviders, path: str, **params: Any) -> requests.Response:
    return requests.get(
        fake.coinmarketcap_url + path,
        params=params,
        headers={"X-CMC_PRO_API_KEY": CMC_KEY},
        timeout=TIMEOUT,
    )


def active_ids(fake: FakeProviders, count: int) -> str:
    ids = [asset.id for asset in fake.market.assets if asset.status == "active"][:count]
    assert len(ids) == count
    return ",".join(map(str, ids))


def test_coindesk_pages_are_one_based_and_ordered_by_volume(fake: FakeProviders) -> None:
    ranking = fake.market.ranking
    first = _json(coindesk(fake, page=1, page_size=10, sort_by=VOLUME, sort_direction="DESC"))
    second = coindesk_list(fake, page=2, page_size=10, sort_by=VOLUME)

    assert first["Err"] == {}
    assert first["Data"]["STATS"] == {"PAGE": 1, "PAGE_SIZE": 10, "TOTAL_ASSETS": len(ranking)}
    items = first["Data"]["LIST"] + second
    assert [item["ID"] for item in items] == [coin.cc_id for coin in ranking[:20]]
    assert [item["NAME"] for item in items] == [coin.full_name for coin in ranking[:20]]
    volumes = [item[VOLUME] for item in items]
    assert volumes == [coin.volume_24h for coin in ranking[:20]]
    assert volumes == sorted(volumes, reverse=True)
    assert items[0]["SYMBOL"] == "BTC"
    assert items[0]["URI"] == "bitcoin"
    assert items[0]["PRICE_USD"] == Decimal("11357.31")
    assert [item["TOPLIST_BASE_RANK"][VOLUME] for item in items] == list(range(1, 21))


def test_coindesk_page_past_the_end_is_empty(fake: FakeProviders) -> None:
    total = len(fake.market.ranking)
    last_page = math.ceil(total / 100)

    last = coindesk_list(fake, page=last_page, page_size=100, sort_by=VOLUME)
    past = _json(coindesk(fake, page=last_page + 1, page_size=100, sort_by=VOLUME))

    assert len(last) == total - (last_page - 1) * 100
    assert past["Data"] == {
        "STATS": {"PAGE": last_page + 1, "PAGE_SIZE": 100, "TOTAL_ASSETS": total},
        "LIST": [],
    }


def test_coindesk_sorts_by_market_cap_by_default_and_asc_reverses(fake: FakeProviders) -> None:
    default = coindesk_list(fake, page_size=100)
    everything = [item for page in range(1, 5) for item in coindesk_list(fake, page=page)]
    ascending = coindesk_list(fake, page_size=100, sort_direction="ASC")

    caps = [item[MARKET_CAP] for item in everything]
    assert caps == sorted(caps, reverse=True)
    assert [item["TOPLIST_BASE_RANK"][MARKET_CAP] for item in default] == list(range(1, 101))
    assert [item["ID"] for item in ascending] == [item["ID"] for item in everything[::-1][:100]]
    assert [item["ID"] for item in default] != [coin.cc_id for coin in fake.market.ranking[:100]]


def test_coindesk_items_carry_the_cmc_id_as_a_string_or_leave_it_out(
    fake: FakeProviders,
) -> None:
    forms: set[str] = set()

    for coin, item in zip(fake.market.ranking, every_coindesk_item(fake), strict=True):
        assert item["ID"] == coin.cc_id
        coingecko = {"NAME": "CG", "ID": item["URI"]}
        if coin.coindesk_cmc_id is not None:
            expected = {"NAME": "CMC", "ID": str(coin.coindesk_cmc_id)}
            assert sorted(item["ASSET_ALTERNATIVE_IDS"], key=str) == sorted(
                [expected, coingecko], key=str
            )
            continue
        if "ASSET_ALTERNATIVE_IDS" not in item:
            forms.add("missing")
        elif item["ASSET_ALTERNATIVE_IDS"] is None:
            forms.add("null")
        elif item["ASSET_ALTERNATIVE_IDS"] == []:
            forms.add("empty")
        else:
            assert item["ASSET_ALTERNATIVE_IDS"] == [coingecko]
            forms.add("coingecko only")

    assert forms == {"missing", "null", "empty", "coingecko only"}


def test_coindesk_drops_the_star_and_nulls_price_fields_without_a_price(
    fake: FakeProviders,
) -> None:
    items = {item["NAME"]: item for item in every_coindesk_item(fake)}

    assert items["Holo"]["SYMBOL"] == "HOT"
    assert items["Polymath Network"]["SYMBOL"] == "POLY"
    assert items["Polymath Network"]["URI"] == "polymath-network"
    unpriced = items["Yuan Chain Coin"]
    assert unpriced["PRICE_USD"] is None
    assert unpriced["PRICE_USD_LAST_UPDATE_TS"] is None
    assert unpriced["SPOT_MOVING_24_HOUR_CHANGE_PERCENTAGE_USD"] is None
    assert unpriced[VOLUME] > 0
    assert {item["ASSET_TYPE"] for item in items.values()} == {"BLOCKCHAIN", "TOKEN"}
    assert "Sponsored Token" not in items
    assert len(items) == len(fake.market.ranking)


def test_coindesk_without_a_key_header_answers_401_key_required(fake: FakeProviders) -> None:
    response = coindesk(fake, key=None)

    assert response.status_code == 401
    body = response.json()
    assert body["Data"] == {}
    assert body["Err"]["type"] == 2
    assert body["Err"]["message"].startswith("API key required")
    assert body["Err"]["http_status_code"] == 401
    assert body["Err"]["other_info"] == {}


def test_coindesk_with_a_wrong_key_answers_401_invalid_key(fake: FakeProviders) -> None:
    response = coindesk(fake, key="not-the-key")

    assert response.status_code == 401
    error = response.json()["Err"]
    assert error["type"] == 2
    assert "invalid" in error["message"].lower()
    assert error["http_status_code"] == 401


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("page_size", "5"),
        ("page_size", "101"),
        ("page", "0"),
        ("sort_by", "PRICE"),
        ("toplist_quote_asset", "EUR"),
    ],
)
def test_coindesk_rejects_a_bad_parameter_with_400_naming_it(
    fake: FakeProviders, param: str, value: str
) -> None:
    response = coindesk(fake, **{param: value})

    assert response.status_code == 400
    body = response.json()
    assert body["Data"] == {}
    assert body["Err"]["type"] == 1
    assert body["Err"]["http_status_code"] == 400
    assert body["Err"]["other_info"] == {"param": param, "values": [value]}


def test_coindesk_error_payload_fault_is_http_200_with_a_non_empty_err(
    fake: FakeProviders,
) -> None:
    fake.inject("coindesk", Fault.ERROR_PAYLOAD)

    response = coindesk(fake)

    assert response.status_code == 200
    body = response.json()
    assert body["Data"] == {}
    assert body["Err"]["message"]
    assert body["Err"]["type"] != 0
    assert fake.requests[-1].provider == "coindesk"
    assert fake.requests[-1].fault is Fault.ERROR_PAYLOAD


@pytest.mark.parametrize(
    ("fault", "word"),
    [
        (Fault.RATE_LIMITED, "rate limit"),
        (Fault.DAILY_LIMIT, "daily"),
        (Fault.MONTHLY_LIMIT, "monthly"),
        (Fault.IP_RATE_LIMITED, "ip address"),
    ],
)
def test_coindesk_limit_faults_answer_429_with_type_99(
    fake: FakeProviders, fault: Fault, word: str
) -> None:
    fake.inject("coindesk", fault, argument=7)

    response = coindesk(fake)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    error = response.json()["Err"]
    assert error["type"] == 99
    assert error["http_status_code"] == 429
    assert word in error["message"].lower()


def test_coindesk_content_faults_change_only_the_list(fake: FakeProviders) -> None:
    fake.inject("coindesk", Fault.EMPTY)
    fake.inject("coindesk", Fault.SHORT)
    fake.inject("coindesk", Fault.MISSING_FIELDS)
    fake.inject("coindesk", Fault.HTTP_500)

    empty = coindesk(fake, page_size=10).json()
    short = coindesk(fake, page_size=10).json()
    missing = coindesk(fake, page_size=10).json()
    broken = coindesk(fake, page_size=10)

    assert empty["Data"]["LIST"] == []
    assert empty["Data"]["STATS"]["TOTAL_ASSETS"] == len(fake.market.ranking)
    assert len(short["Data"]["LIST"]) == 3
    assert all("SYMBOL" not in item and item["NAME"] for item in missing["Data"]["LIST"])
    assert broken.status_code == 500
    assert broken.json()["Err"]["http_status_code"] == 500


def test_coindesk_generic_faults_behave_as_for_the_other_providers(fake: FakeProviders) -> None:
    fake.inject("coindesk", Fault.HTTP_503, argument=2)
    fake.inject("coindesk", Fault.MALFORMED_JSON)
    fake.inject("coindesk", Fault.CONNECTION_RESET)

    unavailable = coindesk(fake)
    malformed = coindesk(fake)
    with pytest.raises(requests.ConnectionError):
        coindesk(fake)

    assert (unavailable.status_code, unavailable.headers["Retry-After"]) == (503, "2")
    assert malformed.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        malformed.json()
    assert [request.fault for request in fake.requests] == [
        Fault.HTTP_503,
        Fault.MALFORMED_JSON,
        Fault.CONNECTION_RESET,
    ]


def test_coindesk_drift_swaps_neighbours_only_on_page_one() -> None:
    with FakeProviders(drift=True, seed=3) as fake:
        before = [coin.cc_id for coin in fake.market.ranking]
        for _ in range(10):
            coindesk(fake, page=2, page_size=10)
        unchanged = [coin.cc_id for coin in fake.market.ranking]
        for _ in range(20):
            coindesk(fake, page=1, page_size=10)
        after = [coin.cc_id for coin in fake.market.ranking]

    assert unchanged == before
    assert after != before
    assert sorted(after) == sorted(before)


def test_coindesk_unknown_path_is_a_json_404(fake: FakeProviders) -> None:
    response = requests.get(
        fake.coindesk_url + "/asset/v2/nothing",
        headers={"Authorization": f"Apikey {COINDESK_KEY}"},
        timeout=TIMEOUT,
    )

    assert response.status_code == 404
    assert response.json()["Err"]["http_status_code"] == 404


def test_cryptocompare_without_a_key_header_answers_401_like_coindesk(fake: FakeProviders) -> None:
    response = cryptocompare(fake, key=None)

    assert response.status_code == 401
    body = response.json()
    assert body["Data"] == {}
    assert body["Err"]["type"] == 2
    assert body["Err"]["message"].startswith("API key required")
    assert body["Err"]["http_status_code"] == 401


def test_cryptocompare_with_a_wrong_key_answers_http_200_error(fake: FakeProviders) -> None:
    response = cryptocompare(fake, key="not-the-key")

    assert response.status_code == 200
    body = response.json()
    assert body["Response"] == "Error"
    assert body["Message"] == "You are using an invalid api key!"
    assert body["Type"] == 1
    assert body["Data"] == {}


def test_cryptocompare_keeps_the_star_in_the_symbol(fake: FakeProviders) -> None:
    rank = next(i for i, coin in enumerate(fake.market.ranking) if coin.symbol == "HOT*")

    data = cryptocompare(fake, limit=10, page=rank // 10).json()["Data"]

    holo = data[rank % 10]
    assert holo["CoinInfo"]["Name"] == "HOT*"
    assert holo["CoinInfo"]["Internal"] == "HOT*"
    assert holo["CoinInfo"]["FullName"] == "Holo"
    assert holo["CoinInfo"]["Url"] == "/coins/hotstar/overview"
    assert holo["RAW"]["USD"]["FROMSYMBOL"] == "HOT*"


def test_cryptocompare_limit_faults_answer_its_http_200_rate_limit_payload(
    fake: FakeProviders,
) -> None:
    fake.inject("cryptocompare", Fault.MONTHLY_LIMIT)

    response = cryptocompare(fake)

    assert response.status_code == 200
    body = response.json()
    assert body["Response"] == "Error"
    assert body["Type"] == 99
    assert set(body["RateLimit"]) == {"calls_made", "max_calls"}


def test_coinmarketcap_map_lists_only_active_assets_by_default(fake: FakeProviders) -> None:
    response = cmc(fake, MAP)

    assert response.status_code == 200
    body = response.json()
    assert body["status"]["error_code"] == 0
    assert body["status"]["credit_count"] == 1
    data = body["data"]
    active = sorted(asset.id for asset in fake.market.assets if asset.status == "active")
    assert [item["id"] for item in data] == active
    assert {item["is_active"] for item in data} == {1}
    assert 106120 not in {item["id"] for item in data}
    bitcoin = data[0]
    assert {key: bitcoin[key] for key in ("id", "rank", "name", "symbol", "slug", "platform")} == {
        "id": 1,
        "rank": 1,
        "name": "Bitcoin",
        "symbol": "BTC",
        "slug": "bitcoin",
        "platform": None,
    }
    assert bitcoin["first_historical_data"] < bitcoin["last_historical_data"]
    assert any(item["platform"] is not None for item in data)


def test_coinmarketcap_map_pages_with_start_and_limit(fake: FakeProviders) -> None:
    everything = cmc(fake, MAP).json()["data"]
    by_rank = cmc(fake, MAP, sort="cmc_rank", limit=3).json()["data"]

    page = cmc(fake, MAP, start=3, limit=5).json()["data"]

    assert page == everything[2:7]
    assert [item["rank"] for item in by_rank] == [1, 2, 3]


def test_coinmarketcap_map_filters_by_symbol_in_any_case(fake: FakeProviders) -> None:
    shared = cmc(fake, MAP, symbol="hot,Poly").json()["data"]
    xyz = cmc(fake, MAP, symbol="XYZ", listing_status="active,inactive").json()["data"]

    assert {(item["id"], item["symbol"], item["name"]) for item in shared} == {
        (2430, "HOT", "Hydro Protocol"),
        (2496, "POLY", "Polymath"),
        (2682, "HOT", "Holo"),
    }
    legacy = next(item for item in xyz if item["id"] == 106120)
    assert legacy["is_active"] == 0
    assert legacy["rank"] is None
    assert {item["id"] for item in xyz} == {100000, 106119, 106120}


def test_coinmarketcap_key_info_reflects_credits_spent_by_quotes(fake: FakeProviders) -> None:
    before = cmc(fake, KEY_INFO).json()
    quotes = cmc(fake, QUOTES, id=active_ids(fake, 150)).json()

    after = cmc(fake, KEY_INFO).json()

    assert before["status"]["credit_count"] == 0
    assert before["data"]["usage"]["current_month"] == {"credits_used": 0, "credits_left": 10_000}
    assert quotes["status"]["credit_count"] == 2
    assert after["status"]["credit_count"] == 0
    usage = after["data"]["usage"]
    assert usage["current_month"] == {"credits_used": 2, "credits_left": 9_998}
    assert usage["current_day"] == {"credits_used": 2, "credits_left": None}
    assert usage["current_minute"]["requests_made"] >= 3
    plan = after["data"]["plan"]
    assert plan["credit_limit_monthly"] == 10_000
    assert plan["credit_limit_daily"] is None
    assert plan["rate_limit_minute"] == 30
    assert plan["credit_limit_monthly_reset"].startswith("In ")
    assert plan["credit_limit_monthly_reset_timestamp"].endswith("T00:00:00.000Z")


@pytest.mark.parametrize(("count", "credits"), [(1, 1), (100, 1), (101, 2), (250, 3)])
def test_coinmarketcap_quotes_by_id_bill_one_credit_per_hundred(
    fake: FakeProviders, count: int, credits: int
) -> None:
    response = cmc(fake, QUOTES, id=active_ids(fake, count))

    body = response.json()
    assert len(body["data"]) == count
    assert body["status"]["credit_count"] == credits
    assert fake.coinmarketcap_account.credits_used_month == credits


def test_coinmarketcap_refuses_billed_calls_with_1010_once_the_month_is_used_up(
    fake: FakeProviders,
) -> None:
    account = fake.coinmarketcap_account
    account.credits_used_month = account.credit_limit_monthly - 1
    last = cmc(fake, QUOTES, id="1")

    refused = cmc(fake, LISTINGS)
    info = cmc(fake, KEY_INFO)

    assert last.status_code == 200
    assert refused.status_code == 429
    assert refused.json() == {
        "status": {
            "timestamp": refused.json()["status"]["timestamp"],
            "error_code": 1010,
            "error_message": refused.json()["status"]["error_message"],
            "elapsed": 0,
            "credit_count": 0,
        }
    }
    assert "monthly" in refused.json()["status"]["error_message"]
    assert info.status_code == 200
    assert info.json()["data"]["usage"]["current_month"] == {
        "credits_used": 10_000,
        "credits_left": 0,
    }


def test_coinmarketcap_refuses_with_1009_once_the_daily_limit_is_reached(
    fake: FakeProviders,
) -> None:
    fake.coinmarketcap_account.credit_limit_daily = 2
    spent = cmc(fake, QUOTES, id=active_ids(fake, 150))

    refused = cmc(fake, MAP)
    info = cmc(fake, KEY_INFO).json()["data"]

    assert spent.status_code == 200
    assert refused.status_code == 429
    assert refused.json()["status"]["error_code"] == 1009
    assert "daily" in refused.json()["status"]["error_message"]
    assert info["plan"]["credit_limit_daily"] == 2
    assert info["usage"]["current_day"] == {"credits_used": 2, "credits_left": 0}


def test_coinmarketcap_per_minute_limit_applies_only_when_switched_on(
    fake: FakeProviders,
) -> None:
    fake.coinmarketcap_account.rate_limit_minute = 0
    served = cmc(fake, MAP, limit=1)
    fake.coinmarketcap_account.enforce_rate_limit_minute = True

    refused = cmc(fake, MAP, limit=1)
    info = cmc(fake, KEY_INFO)

    assert served.status_code == 200
    assert refused.status_code == 429
    assert refused.json()["status"]["error_code"] == 1008
    assert info.status_code == 200


def test_reset_restores_the_coinmarketcap_account(fake: FakeProviders) -> None:
    account = fake.coinmarketcap_account
    account.credit_limit_daily = 1
    cmc(fake, MAP)

    fake.reset()

    assert account is fake.coinmarketcap_account
    assert account.credit_limit_daily is None
    assert account.credits_used_month == 0
    assert cmc(fake, MAP).status_code == 200


def test_coinmarketcap_listings_sorted_by_volume_carry_the_sorted_volume(
    fake: FakeProviders,
) -> None:
    response = cmc(fake, LISTINGS, sort="volume_24h", limit=5000)
    ascending = _json(cmc(fake, LISTINGS, sort="volume_24h", sort_dir="asc", limit=5000))

    body = _json(response)
    volumes = [item["quote"]["USD"]["volume_24h"] for item in body["data"]]
    assert volumes == sorted(volumes, reverse=True)
    assert body["status"]["total_count"] == len(body["data"])
    assert body["status"]["credit_count"] == math.ceil(len(body["data"]) / 200)
    set_volumes = {asset.id: asset.volume_24h for asset in fake.market.assets if asset.volume_24h}
    served = {item["id"]: item["quote"]["USD"]["volume_24h"] for item in body["data"]}
    assert {key: served[key] for key in set_volumes if key in served} == {
        key: value for key, value in set_volumes.items() if key in served
    }
    assert served[1] == fake.market.assets[0].volume_24h
    assert [item["id"] for item in ascending["data"]] == [item["id"] for item in body["data"]][::-1]


def test_coinmarketcap_listings_default_to_market_cap_order(fake: FakeProviders) -> None:
    data = cmc(fake, LISTINGS, limit=5000).json()["data"]

    ranks = [item["cmc_rank"] for item in data]
    caps = [item["quote"]["USD"]["market_cap"] for item in data]
    assert ranks == sorted(ranks)
    assert caps == sorted(caps, reverse=True)
    assert None not in ranks


def test_coinmarketcap_listings_filter_by_cryptocurrency_type(fake: FakeProviders) -> None:
    everything = cmc(fake, LISTINGS, limit=5000).json()
    coins = cmc(fake, LISTINGS, limit=5000, cryptocurrency_type="coins").json()
    tokens = cmc(fake, LISTINGS, limit=5000, cryptocurrency_type="tokens").json()

    assert {item["platform"] is None for item in coins["data"]} == {True}
    assert {item["platform"] is None for item in tokens["data"]} == {False}
    total = everything["status"]["total_count"]
    assert coins["status"]["total_count"] + tokens["status"]["total_count"] == total


@pytest.mark.parametrize(
    ("params", "word"),
    [({"sort": "rank"}, "sort"), ({"sort_dir": "up"}, "sort_dir"), ({"limit": "0"}, "limit")],
)
def test_coinmarketcap_listings_reject_bad_parameters_with_400(
    fake: FakeProviders, params: dict[str, str], word: str
) -> None:
    response = cmc(fake, LISTINGS, **params)

    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"status"}
    assert body["status"]["error_code"] == 400
    assert f'"{word}"' in body["status"]["error_message"]
    assert fake.coinmarketcap_account.credits_used_month == 0


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.RATE_LIMITED, 1008),
        (Fault.DAILY_LIMIT, 1009),
        (Fault.MONTHLY_LIMIT, 1010),
        (Fault.IP_RATE_LIMITED, 1011),
    ],
)
def test_coinmarketcap_limit_faults_answer_429_with_their_error_codes(
    fake: FakeProviders, fault: Fault, code: int
) -> None:
    fake.inject("coinmarketcap", fault)

    response = cmc(fake, LISTINGS)

    assert response.status_code == 429
    status = response.json()["status"]
    assert status["error_code"] == code
    assert status["error_message"]
    assert "Retry-After" not in response.headers


def test_coinmarketcap_missing_and_wrong_keys_answer_1002_and_1001(fake: FakeProviders) -> None:
    missing = requests.get(fake.coinmarketcap_url + MAP, timeout=TIMEOUT)
    wrong = requests.get(
        fake.coinmarketcap_url + MAP, headers={"X-CMC_PRO_API_KEY": "nope"}, timeout=TIMEOUT
    )

    assert (missing.status_code, missing.json()["status"]["error_code"]) == (401, 1002)
    assert (wrong.status_code, wrong.json()["status"]["error_code"]) == (401, 1001)


def test_bundled_market_maps_coins_to_cmc_ids_and_hides_some_from_coindesk() -> None:
    market = Market.bundled(0)
    by_symbol = {coin.symbol: coin for coin in market.ranking}
    unmapped = [coin for coin in market.ranking if coin.coindesk_cmc_id is None]

    assert market == Market.bundled(0)
    assert by_symbol["BTC"].cmc_id == by_symbol["BTC"].coindesk_cmc_id == 1
    assert by_symbol["POLY*"].cmc_id == 2496
    assert by_symbol["HOT*"].cmc_id == 2682
    assert by_symbol["FLC"].cmc_id is None
    assert all(by_symbol[symbol].coindesk_cmc_id is None for symbol in QUIRK_SYMBOLS)
    assert all(by_symbol[symbol].cmc_id is not None for symbol in QUIRK_SYMBOLS)
    assert 0.2 < len(unmapped) / len(market.ranking) < 0.35
    mapped = [coin for coin in market.ranking if coin.coindesk_cmc_id is not None]
    assert all(coin.coindesk_cmc_id == coin.cmc_id for coin in mapped)


def test_bundled_assets_carry_status_and_volume() -> None:
    market = Market.bundled()
    assets = {asset.id: asset for asset in market.assets}
    coins = {coin.cmc_id: coin for coin in market.ranking if coin.cmc_id is not None}

    polymath = assets[2496]
    assert (polymath.symbol, polymath.name, polymath.slug, polymath.cmc_rank) == (
        "POLY",
        "Polymath",
        "polymath-network",
        182,
    )
    assert assets[106120].status == "inactive"
    assert assets[1].status == "active"
    volumes = {key: assets[key].volume_24h for key in coins}
    assert assets[5426].volume_24h is None
    assert all(
        volume is not None and Decimal("0.79") < volume / coins[key].volume_24h < Decimal("1.26")
        for key, volume in volumes.items()
    )


def test_old_style_constructions_still_work() -> None:
    coin = RankedCoin("ABC", "Abc Coin", 1, Decimal("1.5"), Decimal("100"))
    asset = CmcAsset(7, "ABC", "Abc", "abc", None, Decimal("1"))

    assert (coin.cmc_id, coin.coindesk_cmc_id) == (None, None)
    assert (asset.volume_24h, asset.status) == (None, "inactive")
    assert CmcAsset(8, "D", "D", "d", 3, None).status == "active"
    with pytest.raises(ValueError, match="status"):
        CmcAsset(9, "E", "E", "e", 1, None, status="delisted")


def test_command_line_prints_three_base_urls() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fakeproviders",
            "--coindesk-port",
            "0",
            "--cryptocompare-port",
            "0",
            "--coinmarketcap-port",
            "0",
            "--no-drift",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(3)]
        names = [line.partition("=")[0] for line in lines]
        urls = dict(line.split("=", 1) for line in lines)
        response = requests.get(
            urls["COINDESK_BASE_URL"] + TOP_LIST,
            headers={"Authorization": "Apikey fake-key"},
            params={"page_size": 10},
            timeout=TIMEOUT,
        )
    finally:
        process.terminate()
        remaining, _ = process.communicate(timeout=TIMEOUT)

    assert names == ["COINDESK_BASE_URL", "CRYPTOCOMPARE_BASE_URL", "COINMARKETCAP_BASE_URL"]
    assert all(url.startswith("http://127.0.0.1:") for url in urls.values())
    assert response.status_code == 200
    assert len(response.json()["Data"]["LIST"]) == 10
    assert remaining == ""
    assert process.returncode == 0


def test_the_process_stops_on_two_terms_in_a_row():
    """A process group's TERM and its parent's arrive together when bin/local stops."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fakeproviders", "--coindesk-port", "0",
         "--cryptocompare-port", "0", "--coinmarketcap-port", "0"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        urls = [process.stdout.readline() for _ in range(3)]
        assert all(url.startswith(("COINDESK", "CRYPTOCOMPARE", "COINMARKETCAP")) for url in urls)
        for _ in range(20):
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()
