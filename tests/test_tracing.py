"""OpenTelemetry: API requests and scrapes produce connected spans, and traceparent is honoured."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import select
from sqlalchemy.orm import Session

from fakeproviders import Fault
from topcoins.models import ScrapeRun
from topcoins.tracing import configure_tracing

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture(scope="session")
def exporter() -> InMemorySpanExporter:
    """The process's tracer provider, set up as production does, plus an in-memory exporter."""
    exporter = InMemorySpanExporter()
    configure_tracing("tests", {}).add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    yield exporter
    exporter.clear()


def of_trace(spans: list[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context.trace_id == trace_id]


def descends_from(span: ReadableSpan, ancestor: ReadableSpan, spans: list[ReadableSpan]) -> bool:
    by_id = {s.context.span_id: s for s in spans}
    parent = span.parent
    while parent is not None:
        if parent.span_id == ancestor.context.span_id:
            return True
        node = by_id.get(parent.span_id)
        parent = node.parent if node else None
    return False


def test_api_request_is_a_server_span_without_database_spans(spans, client, store):
    store.ranking([("BTC", "Bitcoin")])
    store.prices([(1, "BTC", "Bitcoin", 1, "5")])
    spans.clear()
    assert client.get("/?limit=1").status_code == 200
    finished = spans.get_finished_spans()
    [server] = [s for s in finished if s.kind is SpanKind.SERVER]
    assert server.attributes["http.route"] == "/"
    status = server.attributes.get(
        "http.response.status_code", server.attributes.get("http.status_code")
    )
    assert status == 200
    in_request = [s for s in of_trace(finished, server.context.trace_id) if s is not server]
    assert in_request == [], "a request never waits on the database: the refresher loads"


def test_incoming_traceparent_is_continued(spans, client):
    client.get("/", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    [server] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert format(server.parent.span_id, "016x") == PARENT_ID


def test_a_scrape_is_one_trace_with_http_and_database_spans(spans, scrape, db, capsys, providers):
    assert scrape("ranks") == 0
    finished = spans.get_finished_spans()
    [root] = [s for s in finished if s.name == "scrape ranking"]
    assert root.parent is None
    assert root.attributes["topcoins.outcome"] == "succeeded"
    assert root.attributes["topcoins.source"] == "coindesk"
    trace = of_trace(finished, root.context.trace_id)
    http = [
        s
        for s in trace
        if s.kind is SpanKind.CLIENT
        and s.attributes.get("http.request.method", s.attributes.get("http.method")) == "GET"
    ]
    # Two pages of the ranking, then CoinMarketCap's key usage and its id map.
    assert len(http) == 4
    assert all(descends_from(s, root, finished) for s in http)
    database = [s for s in trace if "db.system" in s.attributes or "db.system.name" in s.attributes]
    assert any(
        "INSERT INTO ranking_entries" in str(s.attributes.get("db.statement", "")) for s in database
    )
    assert all(descends_from(s, root, finished) for s in database)

    with Session(db) as session:
        run = session.scalars(select(ScrapeRun)).one()
    assert run.trace_id == format(root.context.trace_id, "032x")
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"scrapers.run"' in x]
    assert line["trace_id"] == run.trace_id


def test_provider_requests_carry_the_scrapes_traceparent(spans, scrape, db, providers):
    assert scrape("ranks") == 0
    with Session(db) as session:
        run = session.scalars(select(ScrapeRun)).one()
    sent = [r.headers.get("traceparent", "") for r in providers.requests]
    assert sent
    assert all(header.split("-")[1] == run.trace_id for header in sent)


def test_failed_scrape_span_has_error_status_and_its_trace_id_is_recorded(
    spans, scrape, db, providers
):
    providers.inject("coindesk", Fault.ERROR_PAYLOAD, times=-1)
    assert scrape("ranks") == 1
    [root] = [s for s in spans.get_finished_spans() if s.name == "scrape ranking"]
    assert root.status.status_code.name == "ERROR"
    with Session(db) as session:
        run = session.scalars(select(ScrapeRun)).one()
    assert (run.status, run.trace_id) == ("failed", format(root.context.trace_id, "032x"))
