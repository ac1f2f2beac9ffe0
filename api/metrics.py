"""``/metrics``: request counts and latencies with bounded labels, plus the data gauges.

Every label value comes from a fixed set: a made-up method, an unknown path or a status
nobody sends is one value, never a new series, so no client can grow ``/metrics`` or the
workers' metric files.  The names are the ones prometheus-flask-exporter used, which the
alerts and the dashboard read; that library labels with whatever method a client sends.

Under gunicorn each worker counts in files under ``PROMETHEUS_MULTIPROC_DIR``, summed at
each scrape; the Flask test client and single-process servers use one registry in memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, got_request_exception, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .request_id import StartResponse, WsgiApp

# Answers come from memory in well under a millisecond; the default buckets start at 5 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
OTHER = "other"
NO_ENDPOINT = "none"
# Where the app leaves the name of the view that answered: Flask drops its request object
# before a WSGI middleware sees the response.
ENDPOINT_KEY = "topcoins.endpoint"

bp = Blueprint("metrics", __name__)


class RequestMetrics:
    """A WSGI middleware timing each request as the worker handles it."""

    def __init__(self, app: WsgiApp, registry: CollectorRegistry | None) -> None:
        self.app = app
        self.duration = Histogram(
            "flask_http_request_duration_seconds",
            "Flask HTTP request duration in seconds",
            ["method", "status", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.total = Counter(
            "flask_http_request_total",
            "Total number of HTTP requests",
            ["method", "status"],
            registry=registry,
        )
        self.exceptions = Counter(
            "flask_http_request_exceptions_total",
            "Total number of HTTP requests which resulted in an exception",
            ["method", "status"],
            registry=registry,
        )
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        statuses: list[str] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            statuses.append(status)
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            status = statuses[-1][:3] if statuses else "500"
            self._observe(environ, status, time.perf_counter() - started)

    def count_exception(self, sender: object, **extra: object) -> None:
        self.exceptions.labels(_method(request.environ), "500").inc()

    def _observe(self, environ: dict[str, Any], status: str, seconds: float) -> None:
        key = (_method(environ), status if status.isdigit() else OTHER, _endpoint(environ))
        children = self._children.get(key)
        if children is None:
            method, status, endpoint = key
            children = (
                self.duration.labels(method, status, endpoint),
                self.total.labels(method, status),
            )
            self._children[key] = children
        duration, total = children
        duration.observe(seconds)
        total.inc()


def _method(environ: dict[str, Any]) -> str:
    method = environ.get("REQUEST_METHOD", "")
    return method if method in METHODS else OTHER


def _endpoint(environ: dict[str, Any]) -> str:
    """The Flask view that answered: routes are fixed, so their names are too."""
    return str(environ.get(ENDPOINT_KEY, NO_ENDPOINT))


@bp.get("/metrics")
def metrics() -> Response:
    exposed: CollectorRegistry = current_app.extensions["metrics_registry"]()
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(
        encode(exposed), content_type=content_type, headers={"Cache-Control": "no-store"}
    )


def registry(multiprocess: bool) -> CollectorRegistry | None:
    """Where this app's metrics live: files shared by the workers, or one registry in memory."""
    return None if multiprocess else CollectorRegistry()


def init_app(
    app: Flask, shared: CollectorRegistry | None, collectors: tuple[Collector, ...]
) -> RequestMetrics:
    """Request metrics around the app, and ``/metrics`` with our own collectors."""
    request_metrics = RequestMetrics(app.wsgi_app, shared)
    app.wsgi_app = request_metrics  # type: ignore[method-assign]
    got_request_exception.connect(request_metrics.count_exception, app, weak=False)
    if shared is None:

        def exposed() -> CollectorRegistry:
            # Per scrape: the workers' files, read afresh, and the collectors beside them.
            fresh = CollectorRegistry()
            MultiProcessCollector(fresh)  # type: ignore[no-untyped-call]  # untyped upstream
            for collector in collectors:
                fresh.register(collector)
            return fresh

    else:
        for collector in collectors:
            shared.register(collector)

        def exposed() -> CollectorRegistry:
            return shared

    app.extensions["metrics_registry"] = exposed
    app.register_blueprint(bp)
    return request_metrics
