"""Requests and data an attacker controls: nothing they send may exhaust a worker or a reader."""

from __future__ import annotations

import csv
import io
import json
import sys

from flask.testing import FlaskClient

from api.rendered_list import RENDERED_KEPT


def test_a_thousand_made_up_methods_leave_the_metrics_flat(client, store):
    store.ranking([("BTC", "Bitcoin", 1, "symbol")])
    store.prices([(1, "BTC", "Bitcoin", 1, "5")])
    client.open("/", method="XFIRST")
    client.open("/nowhere-first", method="GET")
    client.get("/metrics")
    before = len(client.get("/metrics").data)
    for n in range(1000):
        assert client.open("/", method=f"X{n:04d}").status_code == 405
    for n in range(200):
        assert client.get(f"/nowhere-{n}").status_code == 404
    after = client.get("/metrics").get_data(as_text=True)
    # Only counts change: a few digits longer, not a series per method or path.
    assert len(after) - before < 500
    assert 'method="other",status="405"' in after
    assert "X0001" not in after
    assert "nowhere" not in after


def test_memory_per_worker_stays_linear_in_the_ranking_at_5000_coins(app, client, store):
    coins = [(f"C{n}", f"Coin {n}", n, "symbol") for n in range(1, 5001)]
    store.ranking(coins)
    store.prices([(n, f"C{n}", f"Coin {n}", n, f"{n}.5") for n in range(1, 5001)])
    full = client.get("/?limit=5000").data
    plain = FlaskClient(app, app.response_class)
    for limit in range(1, 5001, 7):
        for fmt in ("json", "csv"):
            assert plain.get(f"/?limit={limit}&format={fmt}").status_code == 200
    top = app.extensions["toplist"].current()
    kept = list(top._rendered.values())
    assert len(kept) <= RENDERED_KEPT
    rendered_bytes = sum(len(r.body) for r in kept)
    pieces = sum(sys.getsizeof(b) for b in top._json_items + top._csv_rows)
    assert rendered_bytes + pieces < 24 * len(full)


def test_every_limit_renders_the_same_body_as_one_rendering_would(client, store):
    store.ranking([("BTC", "Bitcoin", 1, "symbol"), ("ETH", "Ethereum", 1027, "symbol")])
    store.prices([(1, "BTC", "Bitcoin", 1, "5"), (1027, "ETH", "Ethereum", 2, None)])
    document = json.loads(client.get("/?limit=2").data)
    assert json.loads(client.get("/?limit=1").data)["data"] == document["data"][:1]
    assert document["meta"]["unpriced"] == 1
    assert json.loads(client.get("/?limit=1").data)["meta"]["unpriced"] == 0


def test_spreadsheet_formulas_in_provider_symbols_are_neutralised_in_csv(client, store):
    hostile = ['=HYPERLINK("http://evil","x")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "OK"]
    store.ranking([(symbol, f"Coin {i}", i + 1, "symbol") for i, symbol in enumerate(hostile)])
    store.prices([(i + 1, "X", f"Coin {i}", 1, "1") for i in range(len(hostile))])
    rows = list(csv.reader(io.StringIO(client.get("/?format=csv").get_data(as_text=True))))
    assert [row[1] for row in rows[1:]] == [
        '\'=HYPERLINK("http://evil","x")',
        "'+1+1",
        "'-2+3",
        "'@SUM(A1)",
        "'\tTAB",
        "OK",
    ]
    assert [c["symbol"] for c in client.get("/").get_json()["data"]] == hostile


def test_an_absurd_price_stored_before_it_was_refused_is_served_as_no_price(client, store):
    store.ranking([("BIG", "Big", 1, "symbol"), ("BTC", "Bitcoin", 2, "symbol")])
    store.prices([(1, "BIG", "Big", 1, "1e400"), (2, "BTC", "Bitcoin", 2, "5")])
    body = client.get("/").get_data(as_text=True)
    assert "Infinity" not in body
    document = json.loads(body)
    assert [c["price_usd"] for c in document["data"]] == [None, 5]
    assert document["meta"]["unpriced"] == 1
    csv_rows = client.get("/?format=csv").get_data(as_text=True).splitlines()
    assert csv_rows[1:] == ["1,BIG,", "2,BTC,5"]


def test_every_response_says_nosniff_and_probes_are_never_cached(client, store):
    store.ranking([("BTC", "Bitcoin", 1, "symbol")])
    store.prices([(1, "BTC", "Bitcoin", 1, "5")])
    for path in ("/", "/?format=csv", "/healthz", "/readyz", "/version", "/metrics", "/nope"):
        assert client.get(path).headers["X-Content-Type-Options"] == "nosniff", path
    for path in ("/healthz", "/readyz", "/version", "/metrics"):
        assert client.get(path).headers["Cache-Control"] == "no-store", path


def test_options_names_the_methods_and_has_no_body(client, store):
    response = client.options("/")
    assert response.status_code == 204
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert "Content-Type" not in response.headers
    assert response.data == b""
