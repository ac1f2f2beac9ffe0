"""Logs: one JSON object per line from every process, with request, run and trace context."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import requests

from fakeproviders import Fault
from tests.support import run_scrapers
from topcoins.jsonlogs import ContextFilter, Formatter


def json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line must be JSON


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """The root logger writing through the project's formatter and filter into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(Formatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(previous)


def test_incoming_request_id_is_returned(client):
    response = client.get("/healthz", headers={"X-Request-ID": "req-42.abc"})
    assert response.headers["X-Request-ID"] == "req-42.abc"


@pytest.mark.parametrize("given", [None, "", "has space", "x" * 129, "semi;colon", "<script>"])
def test_missing_or_unusable_request_id_is_replaced_by_a_generated_one(client, given):
    headers = {} if given is None else {"X-Request-ID": given}
    generated = client.get("/healthz", headers=headers).headers["X-Request-ID"]
    assert len(generated) == 32
    int(generated, 16)
    assert generated != client.get("/healthz").headers["X-Request-ID"]


def test_a_new_snapshot_is_logged_by_the_refresher_not_by_a_request(client, store, log_output):
    store.ranking([("BTC", "Bitcoin")])
    ranking = store.prices([(1, "BTC", "Bitcoin", 1, "5")]) - 1
    assert client.get("/", headers={"X-Request-ID": "trace-me-1"}).status_code == 200
    [loaded] = [r for r in json_lines(log_output.getvalue()) if r["logger"] == "api.cache"]
    assert loaded["level"] == "INFO"
    assert (
        loaded["message"] == f"serving ranking run {ranking} with price run {ranking + 1}: 1 coins"
    )
    assert (loaded["ranking_run_id"], loaded["item_count"]) == (ranking, 1)
    assert "request_id" not in loaded


def test_unexpected_errors_are_logged_with_the_request_id(app, client, log_output):
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("kaboom")

    response = client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert "kaboom" not in response.get_data(as_text=True)
    [record] = [r for r in json_lines(log_output.getvalue()) if r["level"] == "ERROR"]
    assert record["request_id"] == "boom-1"
    assert "kaboom" in record["exc_info"]


def test_gunicorn_and_app_log_only_json_with_access_fields(gunicorn, scraped):
    gunicorn.wait_until_ready()
    requests.get(gunicorn.base + "/?limit=2", headers={"X-Request-ID": "abc-123"}, timeout=5)
    requests.get(gunicorn.base + "/?limit=zero", timeout=5)
    gunicorn.stop()
    records = json_lines(gunicorn.output())
    assert any(
        r["logger"] == "gunicorn.error" and "Booting worker" in r["message"] for r in records
    )
    access = [r for r in records if r["logger"] == "gunicorn.access" and r["path"] == "/"]
    ok = next(r for r in access if r["request_id"] == "abc-123")
    assert (ok["method"], ok["status"], ok["query"]) == ("GET", 200, "limit=2")
    assert 0 < ok["duration_ms"] < 5000
    bad = next(r for r in access if r["status"] == 400)
    assert len(bad["request_id"]) == 32


def test_scraper_logs_its_run_context(env, providers):
    result = run_scrapers(env, "ranks")
    assert result.returncode == 0
    [record] = [r for r in json_lines(result.stdout) if r["logger"] == "scrapers.run"]
    assert (record["kind"], record["source"]) == ("ranking", "coindesk")
    assert record["outcome"] == "succeeded"
    assert isinstance(record["run_id"], int)
    assert record["item_count"] == 200
    assert record["credit_count"] == 1, "the first ranking fetches the id map"
    assert record["resolved"]["provider"] > 100
    assert record["duration_seconds"] > 0
    # No OTLP endpoint, no tracing: no trace id that leads nowhere (tests/test_otlp_export.py).
    assert "trace_id" not in record


def test_scraper_failure_logs_the_reason_with_its_context(env, providers):
    providers.inject("coindesk", Fault.ERROR_PAYLOAD, times=-1)
    result = run_scrapers(env, "ranks")
    assert result.returncode == 1
    [record] = json_lines(result.stdout)
    assert (record["level"], record["outcome"], record["kind"], record["source"]) == (
        "ERROR",
        "failed",
        "ranking",
        "coindesk",
    )
    assert record["error"].startswith("CoinDesk: ")
