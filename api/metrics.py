"""``/metrics``: request counts and latencies per endpoint, plus the data freshness gauges.

Under gunicorn every worker keeps its own counters, so with ``PROMETHEUS_MULTIPROC_DIR``
set (gunicorn.conf.py sets it) the exporter's multiprocess mode sums them across
workers; the Flask test client and single-process servers use the plain mode.
"""

from __future__ import annotations

from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_flask_exporter import PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics
from sqlalchemy import Engine

from topcoins import __version__

from .freshness import FreshnessCollector

# Answers come from memory in well under a millisecond; the default buckets start at 5 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def init_app(app: Flask, engine: Engine, *, multiprocess: bool, commit: str) -> PrometheusMetrics:
    registry = CollectorRegistry(auto_describe=True)
    factory = GunicornInternalPrometheusMetrics if multiprocess else PrometheusMetrics
    metrics = factory(app, registry=registry, group_by="endpoint", buckets=LATENCY_BUCKETS)
    registry.register(FreshnessCollector(engine, __version__, commit))
    return metrics
