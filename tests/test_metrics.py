"""``/metrics``: request metrics per endpoint and the data freshness gauges from real runs."""

from __future__ import annotations

import os
import signal
import time

import requests
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from api import create_app
from fakeproviders import Fault
from tests.support import recorded_statements
from topcoins.models import ScrapeRun
from topcoins.settings import ApiSettings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def scrape_metrics(client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    return parse(response.get_data(as_text=True))


def test_freshness_gauges_come_from_real_scrape_runs(client, scraped, db, store):
    samples = scrape_metrics(client)
    assert value(samples, "top_coins_database_up") == 1
    for kind in ("ranking", "prices"):
        assert 0 <= value(samples, "top_coins_data_age_seconds", kind=kind) < 60
        assert (
            abs(value(samples, "top_coins_last_success_timestamp_seconds", kind=kind) - time.time())
            < 60
        )
        assert value(samples, "top_coins_scrape_consecutive_failures", kind=kind) == 0
        assert value(samples, "top_coins_scrape_failed_runs", kind=kind) == 0
    assert value(samples, "top_coins_snapshot_items", kind="ranking") == 200
    info = {labels for name, labels in samples if name == "top_coins_snapshot_info"}
    assert info == {
        frozenset(
            {
                "kind": "ranking",
                "source": "coindesk",
                "measure": "SPOT_MOVING_24_HOUR_QUOTE_VOLUME_USD",
            }.items()
        ),
        frozenset({"kind": "prices", "source": "coinmarketcap", "measure": ""}.items()),
    }
    with Session(db) as session:
        runs = {r.kind: r for r in session.scalars(select(ScrapeRun))}
    prices = runs["prices"]
    assert value(samples, "top_coins_snapshot_items", kind="prices") == prices.item_count
    assert value(samples, "top_coins_coinmarketcap_credits_last_run") == prices.credit_count == 2
    assert value(samples, "top_coins_coinmarketcap_credits_24h") == (
        prices.credit_count + runs["ranking"].credit_count
    )
    assert value(samples, "top_coins_coinmarketcap_credit_limit_monthly") == 10_000
    assert value(samples, "top_coins_coinmarketcap_credits_left_monthly") == (
        prices.credits_left_monthly
    )
    assert value(samples, "top_coins_coinmarketcap_credits_reset_timestamp_seconds") == (
        prices.credits_reset_at.timestamp()
    )
    rows = store.top_coins()
    assert value(samples, "top_coins_unpriced_coins") == sum(
        1 for row in rows if row["price_usd"] is None
    )
    assert value(samples, "top_coins_unresolved_coins") == sum(
        1 for row in rows if row["match"] is None
    )
    assert (
        value(
            samples,
            "top_coins_app_info",
            version="0.1.0",
            commit=client.application.config["GIT_COMMIT"],
        )
        == 1
    )


def test_the_interval_is_the_schedule_as_it_runs(client, scrape, db):
    for _ in range(4):
        assert scrape("ranks") == 0
    with db.begin() as connection:
        connection.execute(
            text(
                "UPDATE scrape_runs"
                " SET finished_at = now() - make_interval(mins => CAST(60 - id AS integer))"
                " WHERE kind = 'ranking'"
            )
        )
    samples = scrape_metrics(client)
    assert value(samples, "top_coins_scrape_interval_seconds", kind="ranking") == 60
    no_prices_yet = ("top_coins_scrape_interval_seconds", frozenset({("kind", "prices")}))
    assert no_prices_yet not in samples


def test_failed_runs_are_counted_until_the_next_success(client, scraped, scrape, providers):
    providers.inject("coinmarketcap", Fault.ERROR_PAYLOAD, times=2)
    assert scrape("prices") == 1
    assert scrape("prices") == 1
    samples = scrape_metrics(client)
    assert value(samples, "top_coins_scrape_consecutive_failures", kind="prices") == 2
    assert value(samples, "top_coins_scrape_failed_runs", kind="prices") == 2
    assert scrape("prices") == 0
    samples = scrape_metrics(client)
    assert value(samples, "top_coins_scrape_consecutive_failures", kind="prices") == 0
    assert value(samples, "top_coins_scrape_failed_runs", kind="prices") == 2
    assert value(samples, "top_coins_coinmarketcap_credits_24h") > value(
        samples, "top_coins_coinmarketcap_credits_last_run"
    )


def test_no_run_yet_reports_no_freshness_but_a_live_database(client):
    samples = scrape_metrics(client)
    assert value(samples, "top_coins_database_up") == 1
    assert not [key for key in samples if key[0] == "top_coins_data_age_seconds"]
    assert value(samples, "top_coins_unpriced_coins") == 0


def test_unreachable_database_reports_database_down():
    app = create_app(ApiSettings(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none"))
    try:
        samples = scrape_metrics(app.test_client())
    finally:
        app.extensions["toplist"].stop()
    assert value(samples, "top_coins_database_up") == 0


def test_request_counts_and_latency_by_endpoint_and_status(client, scraped):
    for path in ("/", "/?limit=5", "/?limit=abc", "/nope", "/healthz"):
        client.get(path)
    samples = scrape_metrics(client)
    histogram = "flask_http_request_duration_seconds_count"
    assert value(samples, histogram, endpoint="top.top_list", method="GET", status="200") == 2
    assert value(samples, histogram, endpoint="top.top_list", method="GET", status="400") == 1
    assert value(samples, histogram, endpoint="health.healthz", method="GET", status="200") == 1
    assert value(samples, "flask_http_request_total", method="GET", status="404") == 1
    fast = value(
        samples,
        "flask_http_request_duration_seconds_bucket",
        endpoint="top.top_list",
        method="GET",
        status="200",
        le="0.25",
    )
    assert fast == 2


def test_an_unhandled_exception_is_counted(app, client):
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("kaboom")

    assert client.get("/boom").status_code == 500
    samples = scrape_metrics(client)
    assert value(samples, "flask_http_request_exceptions_total", method="GET", status="500") == 1
    assert client.get("/healthz").status_code == 200
    assert (
        value(
            scrape_metrics(client),
            "flask_http_request_exceptions_total",
            method="GET",
            status="500",
        )
        == 1
    )


def test_a_flood_of_metrics_scrapes_reads_the_freshness_once_every_few_seconds(
    app, client, scraped
):
    client.get("/metrics")
    plain = FlaskClient(app, app.response_class)
    with recorded_statements(app.extensions["engine"]) as statements:
        started = time.monotonic()
        while time.monotonic() - started < 1.5:
            assert plain.get("/metrics").status_code == 200
    freshness_reads = [s for s in statements if "percentile_cont" in s]
    assert len(freshness_reads) <= 1
    polls = [s for s in statements if "FROM latest_runs" in s and "percentile_cont" not in s]
    assert polls, "the refresher keeps polling meanwhile"


def test_counts_are_summed_across_gunicorn_workers_and_survive_a_worker_dying(gunicorn, scraped):
    def served() -> float:
        samples = parse(requests.get(gunicorn.base + "/metrics", timeout=5).text)
        return sum(
            v
            for (name, labels), v in samples.items()
            if name == "flask_http_request_duration_seconds_count"
            and ("endpoint", "top.top_list") in labels
        )

    for _ in range(40):
        requests.get(gunicorn.base + "/?limit=3", timeout=5)  # a new connection each time
    assert served() == 40
    workers = [int(p) for p in os.popen(f"pgrep -P {gunicorn.process.pid}").read().split()]
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGTERM)
    time.sleep(1.5)
    for _ in range(10):
        requests.get(gunicorn.base + "/?limit=3", timeout=5)
    assert served() == 50
    assert "top_coins_data_age_seconds" in requests.get(gunicorn.base + "/metrics", timeout=5).text


def test_failed_runs_gauge_counts_only_kept_history(db, client, scraped, scrape, providers):
    providers.inject("coindesk", Fault.HTTP_500, times=-1)
    assert scrape("ranks", HTTP_RETRIES="0") == 1
    with Session(db) as session:
        failed = session.scalar(
            select(func.count()).select_from(ScrapeRun).where(ScrapeRun.status == "failed")
        )
    samples = scrape_metrics(client)
    assert value(samples, "top_coins_scrape_failed_runs", kind="ranking") == failed == 1
