"""With OTEL_EXPORTER_OTLP_ENDPOINT set, spans really leave the process over OTLP/HTTP."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.support import Gunicorn, RecordingServer, run_scrapers, wait_for
from topcoins.models import ScrapeRun


@pytest.fixture
def collector() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.stop()


def exported(collector: RecordingServer) -> list[tuple[str, str, str]]:
    """(service name, span name, trace id) of every span the collector received."""
    spans = []
    for method, path, body in collector.requests:
        assert (method, path) == ("POST", "/v1/traces")
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope in resource_spans.scope_spans:
                spans += [(service, s.name, s.trace_id.hex()) for s in scope.spans]
    return spans


def test_a_scrape_exports_its_trace(env, db, providers, collector):
    result = run_scrapers({**env, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}, "ranks")
    assert result.returncode == 0, result.stdout
    with Session(db) as session:
        trace_id = session.scalars(select(ScrapeRun.trace_id)).one()
    spans = exported(collector)
    assert ("top-coins-scraper-ranks", "scrape ranking", trace_id) in spans
    # Two ranking pages, CoinMarketCap's key usage and its id map.
    assert sum(1 for _, name, t in spans if t == trace_id and name == "GET") == 4
    [line] = [json.loads(x) for x in result.stdout.splitlines() if '"scrapers.run"' in x]
    assert line["trace_id"] == trace_id


def test_no_endpoint_no_export_and_no_trace_id(env, db, providers, collector):
    assert run_scrapers(env, "ranks").returncode == 0
    assert collector.requests == []
    with Session(db) as session:
        assert session.scalars(select(ScrapeRun.trace_id)).one() is None


def test_the_api_exports_server_spans_from_its_workers(env, scraped, collector, tmp_path):
    api = Gunicorn(
        {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100"},
        tmp_path / "gunicorn.log",
    )
    try:
        api.wait_until_up()
        api.wait_until_ready()
        traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        # Plain urllib: the requests instrumentation active in this process would replace
        # the traceparent with one of its own.
        request = urllib.request.Request(
            api.base + "/?limit=1", headers={"traceparent": traceparent}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        assert wait_for(
            lambda: any(name == "GET /" for _, name, _ in exported(collector)), timeout=5
        ), api.output()
    finally:
        api.stop()
    spans = exported(collector)
    assert ("top-coins-api", "GET /", "0af7651916cd43dd8448eb211c80319c") in spans
