"""The API keeps serving while its database is away, locked, silent or failing oddly."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from alembic import command
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from devtools.postgres import drop_database
from scrapers.cli import main as scrapers_main
from tests.support import Gunicorn, Store, TcpProxy, alembic_config, wait_for
from topcoins.buildinfo import schema_head
from topcoins.settings import database_url

BTC = ("BTC", "Bitcoin", 1, "symbol")


@pytest.fixture
def own_database(fresh_database: Callable[[], str]) -> str:
    """A migrated database of the test's own, which the test may take away."""
    url = fresh_database()
    command.upgrade(alembic_config(url), "head")
    return url


def fill(url: str, price: str = "5") -> Store:
    store = Store(create_engine(database_url({"DATABASE_URL": url})))
    store.ranking([BTC])
    store.prices([(1, "BTC", "Bitcoin", 1, price)])
    return store


def take_away(admin_url: str, url: str) -> None:
    drop_database(admin_url, url.rsplit("/", 1)[1])


def served(client, path: str = "/") -> tuple[int, dict]:
    response = client.get(path)
    return response.status_code, response.get_json()


def test_during_an_outage_the_list_is_served_ready_and_turns_stale(
    make_app, own_database, admin_url
):
    fill(own_database)
    client = make_app(own_database, stale_after_seconds=1).test_client()
    assert served(client)[1]["meta"]["stale"] is False
    take_away(admin_url, own_database)
    time.sleep(1.2)
    status, document = served(client)
    assert (status, document["data"][0]["price_usd"]) == (200, 5)
    assert (document["meta"]["stale"], document["meta"]["prices"]["stale"]) == (True, True)
    assert served(client, "/readyz")[0] == 200
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "top_coins_database_up 0.0" in metrics


def test_a_worker_started_during_an_outage_serves_the_list_its_siblings_saved(
    make_app, own_database, admin_url, tmp_path
):
    fill(own_database, price="7")
    first = make_app(own_database, state_dir=tmp_path).test_client()
    assert served(first)[0] == 200
    take_away(admin_url, own_database)
    started_late = make_app(own_database, state_dir=tmp_path).test_client()
    status, document = served(started_late)
    assert (status, document["data"][0]["price_usd"]) == (200, 7)
    assert served(started_late, "/readyz")[0] == 200


def test_the_database_wins_over_a_saved_list_as_soon_as_it_answers(
    make_app, own_database, fresh_database, tmp_path
):
    fill(own_database, price="7")
    assert served(make_app(own_database, state_dir=tmp_path).test_client())[0] == 200
    other = fresh_database()
    command.upgrade(alembic_config(other), "head")
    fill(other, price="9")
    status, document = served(make_app(other, state_dir=tmp_path).test_client())
    assert (status, document["data"][0]["price_usd"]) == (200, 9)
    empty = fresh_database()
    command.upgrade(alembic_config(empty), "head")
    status, problem = served(make_app(empty, state_dir=tmp_path).test_client())
    assert (status, problem["title"]) == (503, "No data yet")


def test_readiness_needs_a_list_and_a_schema_not_behind_this_code(make_app, own_database):
    client = make_app(own_database).test_client()
    status, problem = served(client, "/readyz")
    assert (status, problem["detail"]) == (503, "no successful ranking or price scrape yet")
    fill(own_database)
    assert served(client, "/readyz")[0] == 200

    engine = create_engine(database_url({"DATABASE_URL": own_database}))
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0003'"))
    fill(own_database)  # a new snapshot: loaded under the schema the database says it has
    status, problem = served(client, "/readyz")
    assert status == 503
    assert problem["detail"] == (
        f"database schema is at 0003, this image expects {schema_head()}: run migrations"
    )
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    fill(own_database)
    engine.dispose()
    assert served(client, "/readyz")[0] == 200, "a newer schema is a migration ahead: ready"


def test_a_locked_database_never_holds_a_request(make_app, own_database):
    fill(own_database)
    engine = create_engine(database_url({"DATABASE_URL": own_database}))
    with engine.connect() as holder:
        holder.execute(text("LOCK TABLE scrape_runs IN ACCESS EXCLUSIVE MODE"))
        app = make_app(own_database)
        plain = FlaskClient(app, app.response_class)
        started = time.monotonic()
        answers = [plain.get(path).status_code for path in ("/healthz", "/readyz", "/")]
        assert time.monotonic() - started < 1
        assert answers == [200, 503, 503]
        cache = app.extensions["toplist"]
        assert cache.polled.wait(5), "the lock timeout ends the poll"
        assert "LockNotAvailable" in plain.get("/").get_json()["detail"]
        holder.rollback()
    engine.dispose()
    assert wait_for(lambda: plain.get("/").status_code == 200, timeout=5)


def test_a_silent_network_partition_never_holds_a_request(make_app, own_database):
    fill(own_database)
    port = int(own_database.rsplit(":", 1)[1].split("/", 1)[0])
    proxy = TcpProxy(port)
    try:
        through_proxy = own_database.replace(f":{port}/", f":{proxy.port}/")
        app = make_app(through_proxy)
        client = app.test_client()
        assert served(client)[0] == 200
        plain = FlaskClient(app, app.response_class)
        proxy.silent.set()
        time.sleep(0.3)
        for _ in range(10):
            started = time.monotonic()
            assert [plain.get(p).status_code for p in ("/", "/readyz", "/healthz")] == [200] * 3
            assert time.monotonic() - started < 0.5
            time.sleep(0.1)
    finally:
        proxy.stop()


def test_the_refresher_outlives_errors_that_are_not_the_databases(make_app, own_database):
    """Whatever a poll raises, the worker's list keeps up and the failure is counted."""
    fill(own_database, price="5")
    failures = iter([RuntimeError("a bug"), ValueError("another"), None])

    def clock() -> float:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return time.time()

    app = make_app(own_database)
    cache = app.extensions["toplist"]
    cache.clock = clock
    assert wait_for(lambda: cache._current is not None, timeout=5)
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert "top_coins_refresh_failures_total 2.0" in metrics


@pytest.fixture
def outage_env(env: dict[str, str], own_database: str) -> dict[str, str]:
    """The API's environment on a database of its own, filled by the real scrapers."""
    own = {**env, "DATABASE_URL": own_database, "STALE_AFTER_SECONDS": "2"}
    assert scrapers_main(["ranks"], own) == 0
    assert scrapers_main(["prices"], own) == 0
    return own


def test_gunicorn_keeps_serving_through_an_outage_and_a_killed_worker(
    outage_env, own_database, admin_url, tmp_path: Path
):
    server = Gunicorn(outage_env, tmp_path / "gunicorn.log")
    try:
        server.wait_until_up()
        assert wait_for(
            lambda: all(requests.get(server.base + "/", timeout=5).ok for _ in range(6)),
            timeout=10,
        )
        take_away(admin_url, own_database)
        workers = [int(p) for p in os.popen(f"pgrep -P {server.process.pid}").read().split()]
        os.kill(workers[0], signal.SIGKILL)
        time.sleep(2.5)
        answers = [requests.get(server.base + "/", timeout=5) for _ in range(40)]
        ready = [requests.get(server.base + "/readyz", timeout=5) for _ in range(10)]
    finally:
        server.stop()
    assert [a.status_code for a in answers] == [200] * 40, server.output()
    assert all(a.json()["meta"]["stale"] for a in answers)
    assert [r.status_code for r in ready] == [200] * 10


def test_gunicorn_started_while_the_database_is_locked_answers_at_once(
    outage_env, own_database, tmp_path: Path
):
    engine = create_engine(database_url({"DATABASE_URL": own_database}))
    with engine.connect() as holder:
        holder.execute(text("LOCK TABLE scrape_runs IN ACCESS EXCLUSIVE MODE"))
        server = Gunicorn(outage_env, tmp_path / "gunicorn.log")
        try:
            server.wait_until_up()
            started = time.monotonic()
            answers = [requests.get(server.base + p, timeout=5) for p in ("/healthz", "/")]
            assert time.monotonic() - started < 1
            assert [a.status_code for a in answers] == [200, 503]
            assert answers[1].headers["Content-Type"] == "application/problem+json"
            holder.rollback()
            assert wait_for(lambda: requests.get(server.base + "/", timeout=5).ok, timeout=10)
        finally:
            server.stop()
    engine.dispose()
