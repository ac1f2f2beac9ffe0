"""``GET /coins/{cmc_id}/history``: a coin's rank and price over the retained snapshots."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from alembic import command
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from api import create_app
from api.history import PRICES_SQL, RANKS_SQL
from scrapers.history import partition_day, prune
from tests.conftest import CaughtUpClient
from tests.support import Store, alembic_config, recorded_statements
from topcoins.db import make_engine
from topcoins.models import history_day
from topcoins.settings import ApiSettings, database_url

BTC, ETH = ("BTC", "Bitcoin", 1, "provider"), ("ETH", "Ethereum", 1027, "provider")
# Whole hours, a week before the last one: the history under test.
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
START = END - timedelta(days=7)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def snapshot_pair(store, at: datetime, btc_rank: int, btc_price: str) -> None:
    """A ranking and a price run at ``at`` (the price run a second later)."""
    store.ranking([BTC, ETH] if btc_rank == 1 else [ETH, BTC], at=at)
    store.prices(
        [(1, "BTC", "Bitcoin", 1, btc_price), (1027, "ETH", "Ethereum", 2, "2000")],
        at=at + timedelta(seconds=1),
    )


@pytest.fixture(scope="module")
def week(fresh_database) -> Iterator[FlaskClient]:
    """A client of a database of its own holding snapshots at :10 and :40 of every hour for
    a week: BTC second, then first, each hour; its price at :10 is the hour's number, at :40
    the hour's number plus 0.5.  Built once: the tests using it only read.
    """
    url = fresh_database()
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(database_url({"DATABASE_URL": url}), application_name="tests")
    store = Store(engine)
    for hour in range(7 * 24):
        start = START + timedelta(hours=hour)
        snapshot_pair(store, start + timedelta(minutes=10), 2, f"{hour}")
        snapshot_pair(store, start + timedelta(minutes=40), 1, f"{hour}.5")
    app = create_app(ApiSettings(database_url=database_url({"DATABASE_URL": url})))
    app.test_client_class = CaughtUpClient
    yield app.test_client()
    app.extensions["toplist"].stop()
    app.extensions["engine"].dispose()
    engine.dispose()


@pytest.fixture
def one_pair(store) -> None:
    snapshot_pair(store, datetime.now(UTC) - timedelta(minutes=5), 1, "10")


def test_a_week_of_snapshots_gives_the_hourly_history_by_default(week):
    document = week.get("/coins/1/history").get_json(force=True)
    points = document["data"]
    assert len(points) == 7 * 24
    for hour, point in enumerate(points):
        start = START + timedelta(hours=hour)
        assert point == {
            "time": iso(start),
            "rank": 1,
            "price_usd": hour + 0.5,
            "ranked_at": iso(start + timedelta(minutes=40)),
            "priced_at": iso(start + timedelta(minutes=40, seconds=1)),
        }
    meta = document["meta"]
    assert (meta["cmc_id"], meta["symbol"], meta["name"], meta["interval"]) == (
        1,
        "BTC",
        "Bitcoin",
        "1h",
    )
    assert (meta["from"], meta["to"], meta["count"]) == (iso(START), iso(END), 7 * 24)
    assert meta["retained"] == {
        "from": iso(START + timedelta(minutes=10)),
        "to": iso(END - timedelta(minutes=20, seconds=-1)),
    }


def test_each_bucket_takes_the_last_value_within_it(week):
    daily = week.get("/coins/1/history?interval=1d").get_json()["data"]
    days = sorted({(START + timedelta(hours=h)).date() for h in range(7 * 24)})
    assert [p["time"][:10] for p in daily] == [day.isoformat() for day in days]
    last_hour_of = {
        day: max(h for h in range(7 * 24) if (START + timedelta(hours=h)).date() == day)
        for day in days
    }
    assert [p["price_usd"] for p in daily] == [last_hour_of[day] + 0.5 for day in days]
    five = week.get(
        f"/coins/1/history?interval=5m&from={iso(START)}&to={iso(START + timedelta(hours=1))}"
    ).get_json()["data"]
    assert [(p["time"], p["rank"], p["price_usd"]) for p in five] == [
        (iso(START + timedelta(minutes=10)), 2, 0),
        (iso(START + timedelta(minutes=40)), 1, 0.5),
    ]


def test_history_as_csv(week):
    window = f"from={iso(START)}&to={iso(START + timedelta(hours=2))}"
    response = week.get(f"/coins/1027/history?{window}&format=csv")
    assert response.mimetype == "text/csv"
    assert list(csv.reader(io.StringIO(response.get_data(as_text=True)))) == [
        ["Time", "Rank", "Price USD"],
        [iso(START), "2", "2000"],
        [iso(START + timedelta(hours=1)), "2", "2000"],
    ]
    assert week.get(f"/coins/1027/history?{window}", headers={"Accept": "text/csv"}).mimetype == (
        "text/csv"
    )


def test_a_window_outside_the_retention_is_empty_and_says_what_is_retained(week):
    response = week.get("/coins/1/history?from=2025-01-01&to=2025-01-02T00:00:00%2B00:00")
    assert response.status_code == 200
    document = response.get_json()
    assert document["data"] == []
    assert document["meta"]["count"] == 0
    assert document["meta"]["retained"]["from"] == iso(START + timedelta(minutes=10))


@pytest.mark.parametrize("bound", ["to=2025-01-01", "from=2099-01-01"])
def test_one_bound_beyond_the_retention_gives_an_empty_window_not_a_reversed_one(week, bound):
    document = week.get(f"/coins/1/history?{bound}").get_json()
    assert document["data"] == []
    assert document["meta"]["from"] == document["meta"]["to"]


def test_a_coin_never_seen_or_no_longer_retained_is_a_404_problem(client, store, db):
    store.ranking([("OLD", "Oldcoin", 5, "provider")], at=datetime.now(UTC) - timedelta(days=20))
    snapshot_pair(store, datetime.now(UTC) - timedelta(minutes=5), 1, "10")
    with Session(db) as session, session.begin():
        prune(session, timedelta(days=7))
    for cmc_id in (5, 424242):
        response = client.get(f"/coins/{cmc_id}/history")
        assert response.status_code == 404
        assert response.mimetype == "application/problem+json"
        assert f"id {cmc_id} is not in the retained history" in response.get_json()["detail"]
    assert client.get("/coins/1/history").status_code == 200


def test_a_window_of_more_points_than_allowed_is_a_400_saying_how_to_narrow_it(week):
    response = week.get(f"/coins/1/history?interval=1m&from={iso(START)}&to={iso(END)}")
    assert response.status_code == 400
    problem = response.get_json()
    assert problem["invalid_params"][0]["name"] == "from"
    assert "10080 points at 1m, more than 10000" in problem["detail"]
    assert "coarser interval (5m, 1h, 1d)" in problem["detail"]
    # The default window of 1m is as much as allowed.
    assert week.get("/coins/1/history?interval=1m").get_json()["meta"]["count"] <= 10_000


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/coins/1/history?interval=2m", "interval"),
        ("/coins/1/history?interval=", "interval"),
        ("/coins/1/history?from=yesterday", "from"),
        ("/coins/1/history?to=2026-13-01", "to"),
        ("/coins/1/history?from=1800-01-01", "from"),
        ("/coins/1/history?from=20261125", "from"),
        ("/coins/1/history?from=2026-W01-1", "from"),
        ("/coins/1/history?from=2026-11-25T10:00:00%2B01:00:30", "from"),
        ("/coins/1/history?from=2026-11-02&to=2026-11-01", "from"),
        ("/coins/1/history?from=2026-11-01&from=2026-11-02", "from"),
        ("/coins/1/history?format=xml", "format"),
        ("/coins/0/history", "cmc_id"),
        ("/coins/btc/history", "cmc_id"),
        ("/coins/99999999999/history", "cmc_id"),
    ],
)
def test_bad_history_parameters_are_a_400_naming_them(client, one_pair, path, parameter):
    response = client.get(path)
    assert response.status_code == 400
    assert response.get_json()["invalid_params"][0]["name"] == parameter


def test_an_answer_is_memoised_until_the_next_snapshot(app, client, store, db):
    at = datetime.now(UTC) - timedelta(minutes=30)
    snapshot_pair(store, at, 1, "10")
    first = client.get("/coins/1/history?interval=1m").get_json()
    with recorded_statements(app.extensions["engine"]) as statements:
        again = FlaskClient(app).get("/coins/1/history?interval=1m")  # no refresh first
    assert again.get_json() == first
    assert statements == []
    snapshot_pair(store, at + timedelta(minutes=20), 2, "11")
    after = client.get("/coins/1/history?interval=1m").get_json()
    assert [(p["rank"], p["price_usd"]) for p in after["data"]] == [(1, 10), (2, 11)]


def test_conditional_requests_get_304(week):
    response = week.get("/coins/1/history")
    again = week.get("/coins/1/history", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    assert again.get_data() == b""


def test_a_query_over_its_budget_is_a_503_problem_and_the_list_still_serves(make_app, store, db):
    snapshot_pair(store, datetime.now(UTC) - timedelta(minutes=5), 1, "10")
    app = make_app(history_budget_seconds=0.2)
    assert app.test_client().get("/").status_code == 200
    client = FlaskClient(app)  # asks without a refresh first, which would wait on the lock
    with db.connect() as blocker, blocker.begin():
        blocker.execute(text("LOCK TABLE ranking_entries IN ACCESS EXCLUSIVE MODE"))
        response = client.get("/coins/1/history")
        assert client.get("/").status_code == 200
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "budget of 0.2 s" in response.get_json()["detail"]


def test_the_history_reads_only_the_partitions_of_its_window(week):
    start, end = END - timedelta(days=1), END
    params = {
        "step": timedelta(hours=1),
        "origin": datetime(2000, 1, 1, tzinfo=UTC),
        "start": start,
        "end": end,
        "first_day": history_day(start) - 1,
        "last_day": history_day(end),
        "cmc_id": 1,
        "assets": [1],
    }
    wanted = {history_day(start) - 1, history_day(start), history_day(end)}
    for query, table in ((RANKS_SQL, "ranking_entries"), (PRICES_SQL, "price_quotes")):
        with week.application.extensions["engine"].connect() as connection:
            plan = connection.scalar(text(f"EXPLAIN (FORMAT JSON) {query.text}"), params)
        scanned = set(_relations(plan[0]["Plan"] if isinstance(plan, list) else plan))
        partitions = {name for name in scanned if name.startswith(table)}
        assert partitions
        assert {partition_day(name) for name in partitions} <= wanted


def _relations(node: dict) -> list[str]:
    found = [node["Relation Name"]] if "Relation Name" in node else []
    for child in node.get("Plans", []):
        found += _relations(child)
    return found


def test_history_prices_keep_every_stored_digit(client, store):
    snapshot_pair(store, datetime.now(UTC) - timedelta(minutes=5), 1, "0.000000000123456789")
    body = client.get("/coins/1/history").get_data(as_text=True)
    point = json.loads(body, parse_float=Decimal)["data"][0]
    assert point["price_usd"] == Decimal("0.000000000123456789")
