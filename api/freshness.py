"""Prometheus metrics about the data, read from the database at each scrape of /metrics.

The scrapers live for seconds, so Prometheus cannot scrape them; what they did is in
``scrape_runs``, and one small query here turns it into gauges per source.  Nothing
here runs per API request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, Row, text
from sqlalchemy.exc import SQLAlchemyError

from topcoins.models import Source

log = logging.getLogger("api.freshness")

FRESHNESS_SQL = text(
    """
    WITH sources(source) AS (VALUES ('cryptocompare'), ('coinmarketcap')),
    last_success AS (
        SELECT DISTINCT ON (source) source, id, finished_at, item_count, credit_count
        FROM scrape_runs WHERE status = 'succeeded'
        ORDER BY source, id DESC
    )
    SELECT
        s.source,
        extract(epoch FROM l.finished_at) AS last_success,
        extract(epoch FROM now()) AS now,
        l.item_count,
        l.credit_count,
        (SELECT count(*) FROM scrape_runs f
         WHERE f.source = s.source AND f.status = 'failed') AS failed_runs,
        (SELECT count(*) FROM scrape_runs f
         WHERE f.source = s.source AND f.status = 'failed'
           AND f.id > coalesce(l.id, 0)) AS consecutive_failures,
        (SELECT coalesce(sum(c.credit_count), 0) FROM scrape_runs c
         WHERE c.source = s.source AND c.finished_at > now() - interval '1 day') AS credits_24h,
        (SELECT count(*) FROM top_coins WHERE price_usd IS NULL) AS unpriced
    FROM sources s LEFT JOIN last_success l USING (source)
    ORDER BY s.source
    """
)


class FreshnessCollector(Collector):
    def __init__(self, engine: Engine, version: str, commit: str) -> None:
        self.engine = engine
        self.version = version
        self.commit = commit

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not query the database."""
        return []

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("top_coins_app", "Version and git commit of the running API")
        info.add_metric([], {"version": self.version, "commit": self.commit})
        yield info
        up = GaugeMetricFamily(
            "top_coins_database_up", "1 if the freshness query on the database worked"
        )
        try:
            rows = self._query()
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            log.warning("freshness metrics unavailable: %s", type(cause).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _families(rows)

    def _query(self) -> list[Row]:
        with self.engine.connect() as connection:
            connection.execute(text("SET LOCAL statement_timeout = '2s'"))
            return list(connection.execute(FRESHNESS_SQL))


def _families(rows: list[Row]) -> Iterator[Metric]:
    def gauge(name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=["source"])

    last = gauge("top_coins_last_success_timestamp_seconds", "End of the last successful scrape")
    age = gauge("top_coins_data_age_seconds", "Seconds since the last successful scrape")
    items = gauge("top_coins_snapshot_items", "Rows in the current snapshot")
    failed = gauge("top_coins_scrape_failed_runs", "Failed runs kept in the history")
    streak = gauge(
        "top_coins_scrape_consecutive_failures", "Failed runs since the last successful one"
    )
    per_source: list[tuple[GaugeMetricFamily, Callable[..., float | None]]] = [
        (last, lambda r: r.last_success),
        (age, lambda r: None if r.last_success is None else float(r.now - r.last_success)),
        (items, lambda r: r.item_count),
        (failed, lambda r: r.failed_runs),
        (streak, lambda r: r.consecutive_failures),
    ]
    for row in rows:
        for family, value in per_source:
            number = value(row)
            if number is not None:
                family.add_metric([row.source], float(number))
    yield from (family for family, _ in per_source)

    prices = next((r for r in rows if r.source == Source.COINMARKETCAP.value), None)
    credits_last = GaugeMetricFamily(
        "top_coins_coinmarketcap_credits_last_run",
        "CoinMarketCap credits spent by the last successful price scrape",
    )
    credits_day = GaugeMetricFamily(
        "top_coins_coinmarketcap_credits_24h", "CoinMarketCap credits spent in the last 24 hours"
    )
    if prices is not None:
        if prices.credit_count is not None:
            credits_last.add_metric([], prices.credit_count)
        credits_day.add_metric([], float(prices.credits_24h))
    yield credits_last
    yield credits_day
    unpriced = GaugeMetricFamily("top_coins_unpriced_coins", "Ranked coins served without a price")
    if rows:
        unpriced.add_metric([], rows[0].unpriced)
    yield unpriced
