"""``GET /`` and the probes, against a real database filled through the scrapers' writer."""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from tests.support import recorded_statements, wait_for

BTC = ("BTC", "Bitcoin")
ETH = ("ETH", "Ethereum")


@pytest.fixture
def two_coins(store):
    store.ranking([BTC, ETH, ("NOPE", "Nowhere")])
    store.prices(
        [(1, "BTC", "Bitcoin", 1, "96463.34789639605"), (1027, "ETH", "Ethereum", 2, "0.00000001")]
    )


def test_json_lists_ranked_coins_with_prices_and_scrape_times(client, two_coins):
    response = client.get("/?limit=3")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    document = response.get_json()
    unknown = dict.fromkeys(
        ("provider_asset_id", "price_updated_at", "volume_24h_usd", "market_cap_usd"), None
    )
    assert document["data"] == [
        {"rank": 1, "symbol": "BTC", "name": "Bitcoin", "cmc_id": 1, **unknown,
         "price_usd": 96463.34789639605, "percent_change_24h": None},
        {"rank": 2, "symbol": "ETH", "name": "Ethereum", "cmc_id": 1027, **unknown,
         "price_usd": 1e-08, "percent_change_24h": None},
        {"rank": 3, "symbol": "NOPE", "name": "Nowhere", "cmc_id": None, **unknown,
         "price_usd": None, "percent_change_24h": None},
    ]  # fmt: skip
    meta = document["meta"]
    assert meta["count"] == 3
    assert meta["total"] == 3
    assert meta["unpriced"] == 1
    assert meta["stale"] is False
    for part in ("ranking", "prices"):
        scraped_at = datetime.fromisoformat(meta[part]["scraped_at"])
        assert abs(datetime.now(UTC) - scraped_at) < timedelta(minutes=1)
        assert meta[part]["stale"] is False
    assert meta["ranking"]["source"] == "coindesk"
    assert meta["ranking"]["measure"] == "SPOT_MOVING_24_HOUR_QUOTE_VOLUME_USD"
    assert meta["prices"]["source"] == "coinmarketcap"


def test_csv_has_the_header_and_plain_decimal_prices(client, two_coins):
    response = client.get("/?format=csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.get_data(as_text=True).splitlines() == [
        "Rank,Symbol,Price USD",
        "1,BTC,96463.34789639605",
        "2,ETH,0.00000001",
        "3,NOPE,",
    ]
    assert list(csv.reader(io.StringIO(response.get_data(as_text=True))))[2] == [
        "2",
        "ETH",
        "0.00000001",
    ]


def test_accept_header_chooses_csv(client, two_coins):
    response = client.get("/", headers={"Accept": "text/csv"})
    assert response.mimetype == "text/csv"
    assert response.get_data(as_text=True).startswith("Rank,Symbol,Price USD\r\n1,BTC,")
    assert client.get("/", headers={"Accept": "application/json"}).mimetype == "application/json"
    assert client.get("/", headers={"Accept": "*/*"}).mimetype == "application/json"


def test_format_parameter_wins_over_accept(client, two_coins):
    response = client.get("/?format=json", headers={"Accept": "text/csv"})
    assert response.mimetype == "application/json"


def test_limit_cuts_the_list_and_defaults_to_200(client, store):
    coins = [(f"C{i}", f"Coin {i}") for i in range(1, 251)]
    store.ranking(coins)
    store.prices([(i, f"C{i}", f"Coin {i}", i, str(i)) for i in range(1, 251)])
    assert [c["rank"] for c in client.get("/?limit=2").get_json()["data"]] == [1, 2]
    assert len(client.get("/").get_json()["data"]) == 200
    assert len(client.get("/?limit=1000").get_json()["data"]) == 250


def test_limit_above_the_ranking_returns_what_it_holds(client, two_coins):
    document = client.get("/?limit=5000").get_json()
    assert [c["symbol"] for c in document["data"]] == ["BTC", "ETH", "NOPE"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=1.5", "limit"),
        ("limit=", "limit"),
        ("limit=+5", "limit"),
        ("limit=%205", "limit"),
        ("limit=5001", "limit"),
        ("limit=99999999999999999999999", "limit"),
        ("limit=%D9%A3", "limit"),
        ("limit=1&limit=2", "limit"),
        ("format=xml", "format"),
        ("format=", "format"),
        ("format=JSON", "format"),
    ],
)
def test_bad_input_is_a_400_problem_naming_the_parameter(client, two_coins, query, parameter):
    response = client.get(f"/?{query}")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == 400
    assert problem["invalid_params"][0]["name"] == parameter
    assert problem["detail"].startswith(f"{parameter}: ")


def test_bad_input_is_rejected_even_before_any_data_exists(client):
    assert client.get("/?limit=abc").status_code == 400


def test_unacceptable_accept_header_is_a_406_problem(client, two_coins):
    response = client.get("/", headers={"Accept": "text/html"})
    assert response.status_code == 406
    assert response.mimetype == "application/problem+json"


def test_no_successful_scrape_yet_is_a_503_problem(client, store):
    response = client.get("/")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert "no successful ranking or price scrape yet" in response.get_json()["detail"]
    store.ranking([BTC])
    assert wait_for(lambda: "price" in client.get("/").get_json()["detail"])


def test_unknown_paths_and_methods_are_problems_not_html(client, two_coins):
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"
    assert missing.get_json()["title"] == "Not Found"
    wrong_method = client.post("/")
    assert wrong_method.status_code == 405
    assert wrong_method.mimetype == "application/problem+json"
    assert "GET" in wrong_method.headers["Allow"]


def test_new_snapshot_is_served_after_the_next_scrape(client, store):
    coins = [(f"C{i}", f"Coin {i}") for i in range(1, 199)] + [("WINGS", "Wings"), ("LAST", "Last")]
    store.ranking(coins)
    store.prices([(1, "WINGS", "Wings", 900, "0.01")])
    assert client.get("/?limit=200").get_json()["data"][198]["symbol"] == "WINGS"
    coins[198], coins[199] = coins[199], coins[198]
    store.ranking(coins)
    assert wait_for(lambda: client.get("/?limit=200").get_json()["data"][198]["symbol"] == "LAST")
    wings = client.get("/?limit=200").get_json()["data"][199]
    assert (wings["rank"], wings["symbol"], wings["price_usd"]) == (200, "WINGS", 0.01)


def test_etag_allows_conditional_requests(client, two_coins):
    first = client.get("/?limit=2")
    assert first.headers["ETag"]
    again = client.get("/?limit=2", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    other = client.get("/?limit=2&format=csv", headers={"If-None-Match": first.headers["ETag"]})
    assert other.status_code == 200


def test_old_data_is_still_served_and_marked_stale(db, make_app, two_coins):
    with db.begin() as connection:
        connection.execute(
            text(
                "UPDATE scrape_runs SET finished_at = now() - interval '2 hours'"
                " WHERE kind = 'prices'"
            )
        )
    document = make_app(stale_after_seconds=3600).test_client().get("/").get_json()
    assert document["data"][0]["symbol"] == "BTC"
    assert document["meta"]["stale"] is True
    assert document["meta"]["prices"]["stale"] is True
    assert document["meta"]["ranking"]["stale"] is False


def test_healthz_and_version(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    version = client.get("/version").get_json()
    assert version["version"] == "0.1.0"
    assert version["api_version"] == "1.1.0"
    assert len(version["commit"]) == 40 or version["commit"] == "unknown"


def test_readyz_names_the_snapshot_pair_it_serves(client, two_coins, db):
    ready = client.get("/readyz")
    assert ready.status_code == 200
    with db.connect() as connection:
        runs = dict(connection.execute(text("SELECT kind, id FROM latest_runs")).all())
    assert ready.get_json() == {
        "status": "ready",
        "ranking_run_id": runs["ranking"],
        "price_run_id": runs["prices"],
    }


def test_responses_never_query_the_database_per_request(app, client, two_coins):
    client.get("/")
    app.extensions["toplist"].stop()
    time.sleep(0.1)
    plain = FlaskClient(app, app.response_class)
    with recorded_statements(app.extensions["engine"]) as statements:
        for limit in (1, 2, 3, 200):
            for fmt in ("json", "csv"):
                assert plain.get(f"/?limit={limit}&format={fmt}").status_code == 200
        for path in ("/healthz", "/readyz", "/version", "/metrics"):
            assert plain.get(path).status_code == 200
    assert statements == []


def test_json_body_is_valid_json_for_every_limit(client, two_coins):
    for limit in (1, 2, 3):
        assert len(json.loads(client.get(f"/?limit={limit}").data)["data"]) == limit


def test_gzip_is_answered_with_the_body_compressed_once_and_its_own_tag(client, two_coins):
    plain = client.get("/?limit=3")
    packed = client.get("/?limit=3", headers={"Accept-Encoding": "br, gzip;q=0.8"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.data) == plain.data
    assert packed.headers["ETag"] == plain.headers["ETag"][:-1] + '-gzip"'
    assert "Accept-Encoding" in packed.headers["Vary"]
    assert "Content-Encoding" not in plain.headers
    refused = client.get("/?limit=3", headers={"Accept-Encoding": "gzip;q=0"})
    assert refused.data == plain.data
    again = client.get(
        "/?limit=3",
        headers={"Accept-Encoding": "gzip", "If-None-Match": packed.headers["ETag"]},
    )
    assert again.status_code == 304


def without_request_id(headers) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in headers.items() if k != "X-Request-ID")


def test_the_hot_path_answers_exactly_as_the_flask_view(make_app, two_coins):
    shortcut = make_app(tracing=False).test_client()
    flask = make_app(tracing=True).test_client()
    for path in ("/", "/?limit=2", "/?format=csv", "/?limit=abc", "/?limit=1&limit=2"):
        for headers in ({}, {"Accept": "text/csv"}, {"Accept-Encoding": "gzip"}, {"Accept": "x/y"}):
            fast, slow = shortcut.get(path, headers=headers), flask.get(path, headers=headers)
            assert (fast.status_code, fast.data) == (slow.status_code, slow.data), (path, headers)
            assert without_request_id(fast.headers) == without_request_id(slow.headers)


def test_the_hot_path_is_counted_as_the_top_list(make_app, two_coins):
    client = make_app(tracing=False).test_client()
    for _ in range(3):
        assert client.get("/?limit=2").status_code == 200
    metrics = client.get("/metrics").get_data(as_text=True)
    assert (
        'flask_http_request_duration_seconds_count{endpoint="top.top_list",method="GET",'
        'status="200"} 3.0'
    ) in metrics
