"""Optional push of a run's metrics to a Prometheus Pushgateway (``PUSHGATEWAY_URL``).

A scraper lives for seconds, so Prometheus cannot scrape it; the API's freshness
metrics already cover the data from the database, and this is for operators who
want the runs themselves in Prometheus too.  A failed push is logged, never fatal.
"""

from __future__ import annotations

import logging
import time

from .run import Outcome, RunReport

log = logging.getLogger("scrapers.pushgateway")
JOB = "top_coins_scraper"


def push_run(url: str, report: RunReport, *, timeout: float = 5.0) -> None:
    """Grouped by kind, so that switching provider replaces the group rather than adding one."""
    # Imported here: most scrapers run without a Pushgateway, and start-up is paid every run.
    from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

    registry = CollectorRegistry()
    source = report.source.value

    def gauge(name: str, documentation: str, value: float) -> None:
        Gauge(name, documentation, ["source"], registry=registry).labels(source).set(value)

    gauge("top_coins_scrape_duration_seconds", "Duration of the last run", report.duration_seconds)
    gauge("top_coins_scrape_items", "Rows stored by the last run", report.item_count)
    gauge(
        "top_coins_scrape_credits",
        "CoinMarketCap credits spent by the last run",
        report.credit_count or 0,
    )
    outcome = Gauge(
        "top_coins_scrape_outcome",
        "1 for the outcome of the last run",
        ["source", "outcome"],
        registry=registry,
    )
    for value in Outcome:
        outcome.labels(source, value.value).set(1 if report.outcome is value else 0)
    if report.outcome is Outcome.SUCCEEDED:
        # Pushed only on success: pushadd keeps the previous value when a run fails.
        gauge(
            "top_coins_scrape_last_success_timestamp_seconds",
            "When the last successful run ended",
            time.time(),
        )
    try:
        pushadd_to_gateway(
            url,
            job=JOB,
            grouping_key={"kind": report.kind.value},
            registry=registry,
            timeout=timeout,
        )
    except OSError as exc:
        log.warning("could not push run metrics to the Pushgateway: %s", type(exc).__name__)
