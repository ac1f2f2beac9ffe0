"""Optional push of a run's metrics to a Prometheus Pushgateway (``PUSHGATEWAY_URL``).

A scraper lives for seconds, so Prometheus cannot scrape it; the API's freshness
metrics already cover the data from the database, and this is for operators who
want the runs themselves in Prometheus too.  A failed push is logged, never fatal.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

from .run import Outcome, RunReport

log = logging.getLogger("scrapers.pushgateway")
JOB = "top_coins_scraper"


def push_run(url: str, report: RunReport, *, timeout: float = 5.0) -> None:
    registry = CollectorRegistry()
    labels = {"registry": registry}
    Gauge("top_coins_scrape_duration_seconds", "Duration of the last run", **labels).set(
        report.duration_seconds
    )
    Gauge("top_coins_scrape_items", "Rows stored by the last run", **labels).set(report.item_count)
    Gauge("top_coins_scrape_credits", "Provider credits spent by the last run", **labels).set(
        report.credit_count or 0
    )
    outcome = Gauge(
        "top_coins_scrape_outcome", "1 for the outcome of the last run", ["outcome"], **labels
    )
    for value in Outcome:
        outcome.labels(value.value).set(1 if report.outcome is value else 0)
    if report.outcome is Outcome.SUCCEEDED:
        # Pushed only on success: pushadd keeps the previous value when a run fails.
        Gauge(
            "top_coins_scrape_last_success_timestamp_seconds",
            "When the last successful run ended",
            **labels,
        ).set(time.time())
    try:
        pushadd_to_gateway(
            url,
            job=JOB,
            grouping_key={"source": report.source.value},
            registry=registry,
            timeout=timeout,
        )
    except OSError as exc:
        log.warning("could not push run metrics to the Pushgateway: %s", type(exc).__name__)
