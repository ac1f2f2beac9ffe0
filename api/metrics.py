"""``/metrics``: request counts and latencies per endpoint, plus the data freshness gauges.

Under gunicorn every worker keeps its own counters, so with ``PROMETHEUS_MULTIPROC_DIR``
set (gunicorn.conf.py sets it) the exporter's multiprocess mode sums them across
workers; the Flask test client and single-process servers use the plain mode.
"""

from __future__ import annotations

from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_flask_exporter import PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics
from sqlalchemy import Engine

from topcoins import __version__

from .freshness import FreshnessCollector

# Answers come from memory in well under a millisecond; the default buckets start at 5 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GunicornMetrics(GunicornInternalPrometheusMetrics):
    """The exporter's multiprocess mode, plus collectors of our own.

    Per scrape the exporter builds a fresh registry holding only the files of all
    workers; our collectors read the database, not those files, so they join it there.
    """

    def __init__(self, app: Flask, *, collectors: tuple[Collector, ...], **kwargs: object) -> None:
        self.collectors = collectors
        super().__init__(app, **kwargs)

    def generate_metrics(
        self, accept_header: str | None = None, names: list[str] | None = None
    ) -> tuple[str, str]:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        for collector in self.collectors:
            registry.register(collector)
        exposed = registry.restricted_registry(names) if names else registry
        generate_latest, content_type = choose_encoder(accept_header)
        return generate_latest(exposed).decode("utf-8"), content_type


def init_app(app: Flask, engine: Engine, *, multiprocess: bool, commit: str) -> PrometheusMetrics:
    freshness = FreshnessCollector(engine, __version__, commit)
    options = {"group_by": "endpoint", "buckets": LATENCY_BUCKETS}
    if multiprocess:
        return GunicornMetrics(app, collectors=(freshness,), **options)
    registry = CollectorRegistry()
    registry.register(freshness)
    return PrometheusMetrics(app, registry=registry, **options)
