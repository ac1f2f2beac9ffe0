"""The whole system as deployed: scraper processes, gunicorn with the repo config, HTTP."""

from __future__ import annotations

import csv
import io
import time

import pytest
import requests
from sqlalchemy import text

from tests.support import Gunicorn, run_scrapers, wait_for


def scrape(env: dict[str, str], job: str) -> None:
    result = run_scrapers(env, job)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def api(gunicorn: Gunicorn) -> str:
    return gunicorn.base


def served_csv(base: str) -> list[list[str]]:
    response = requests.get(base + "/", params={"limit": "200", "format": "csv"}, timeout=5)
    assert response.status_code == 200
    return list(csv.reader(io.StringIO(response.text)))


def served_by_every_worker(base: str) -> list[list[str]] | None:
    """The CSV once several answers in a row (spread over the workers) are 200, else None."""
    responses = [
        requests.get(base + "/", params={"limit": "200", "format": "csv"}, timeout=5)
        for _ in range(6)
    ]
    if any(r.status_code != 200 for r in responses):
        return None
    return list(csv.reader(io.StringIO(responses[-1].text)))


@pytest.mark.parametrize("provider", ["coindesk", "cryptocompare", "coinmarketcap"])
def test_two_scrapes_then_200_priced_coins_as_csv(env, api, providers, provider):
    env = {**env, "RANKING_PROVIDER": provider}
    assert requests.get(api + "/", timeout=5).status_code == 503
    scrape(env, "ranks")
    scrape(env, "prices")
    rows = wait_for(lambda: served_by_every_worker(api))
    assert rows[0] == ["Rank", "Symbol", "Price USD"]
    assert len(rows) == 201
    meta = requests.get(api + "/", timeout=5).json()["meta"]
    assert (meta["ranking"]["source"], meta["prices"]["source"]) == (provider, "coinmarketcap")
    priced = [r for r in rows[1:] if r[2]]
    if provider == "coinmarketcap":
        assert len(priced) == 200
    else:
        ranked = providers.market.ranking[:200]
        assert [r[1] for r in rows[1:]] == [c.symbol.rstrip("*") for c in ranked]
        assert len(priced) == sum(1 for c in ranked if c.cmc_id is not None) == 199
    assert all("e" not in r[2].lower() for r in priced)
    assert requests.get(api + "/readyz", timeout=5).status_code == 200
    assert providers.requests, "scrapers talked to the fakes"
    calls = len(providers.requests)
    requests.get(api + "/?limit=5", timeout=5)
    assert len(providers.requests) == calls, "no API request calls a provider"


def test_rank_change_is_served_after_next_scrape(env, api, providers):
    scrape(env, "ranks")
    scrape(env, "prices")
    rows = wait_for(lambda: served_by_every_worker(api))
    assert rows[200][:2] == ["200", "WINGS"]
    providers.market.swap(199)  # CoinDesk ranks in the same order as the fake market
    scrape(env, "ranks")
    committed = time.monotonic()
    assert wait_for(
        lambda: all(served_csv(api)[199][:2] == ["199", "WINGS"] for _ in range(6)), timeout=3
    )
    assert time.monotonic() - committed < 3
    assert served_csv(api)[199][2] != ""


def test_a_new_snapshot_is_pushed_to_every_worker_without_waiting_for_a_poll(
    env, providers, tmp_path
):
    """With the safety-net poll a minute away, only the scraper's NOTIFY can tell the workers."""
    server = Gunicorn({**env, "API_REFRESH_SECONDS": "60"}, tmp_path / "gunicorn.log")
    try:
        server.wait_until_up()
        scrape(env, "ranks")
        scrape(env, "prices")
        assert wait_for(lambda: served_by_every_worker(server.base), timeout=3), server.output()
        providers.market.swap(199)
        scrape(env, "ranks")
        assert wait_for(
            lambda: all(served_csv(server.base)[199][:2] == ["199", "WINGS"] for _ in range(6)),
            timeout=3,
        )
    finally:
        server.stop()


def test_a_lost_listener_is_replaced_and_the_poll_covers_the_gap(env, db, providers, tmp_path):
    server = Gunicorn({**env, "API_REFRESH_SECONDS": "0.5"}, tmp_path / "gunicorn.log")
    try:
        server.wait_until_up()
        scrape(env, "ranks")
        scrape(env, "prices")
        assert wait_for(lambda: served_by_every_worker(server.base), timeout=5)
        with db.begin() as connection:
            terminated = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'top-coins-api' AND query LIKE 'LISTEN%'"
                )
            ).scalar()
        assert terminated >= 1
        providers.market.swap(199)
        scrape(env, "ranks")
        assert wait_for(
            lambda: all(served_csv(server.base)[199][:2] == ["199", "WINGS"] for _ in range(6)),
            timeout=5,
        ), server.output()
        assert wait_for(lambda: listeners(db) == 2, timeout=5), "each worker listens again"
    finally:
        server.stop()


def listeners(db) -> int:
    with db.connect() as connection:
        return connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'top-coins-api' AND query LIKE 'LISTEN%'"
            )
        ).scalar()
