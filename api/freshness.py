"""Prometheus metrics about the data, from what the refresher last read of ``scrape_runs``.

The scrapers live for seconds, so Prometheus cannot scrape them; what they did is in
``scrape_runs``, and one small query turns it into gauges per kind of run.  The
refresher thread runs it at most every few seconds while ``/metrics`` is scraped
(``api.cache``): a scrape of ``/metrics`` never waits on the database, and a flood of
them costs it nothing.  Ages are measured when scraped, so they keep growing while the
database is away.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Row, text

if TYPE_CHECKING:
    from .cache import TopListCache

# One row per kind of run: the served snapshot, the failures since, and how often runs
# succeed (the median gap between the last seven successes, which staleness is measured
# against whatever the schedule or the provider).  Each row also carries the totals:
# CoinMarketCap's credits as the last run that read /v1/key/info saw them, what every
# run of the last day spent, and the coins served without a price or without an id.
FRESHNESS_SQL = text(
    """
    WITH kinds(kind) AS (VALUES ('ranking'), ('prices'))
    SELECT
        k.kind,
        l.source,
        l.measure,
        extract(epoch FROM l.finished_at) AS last_success,
        l.item_count,
        (SELECT count(*) FROM scrape_runs f
         WHERE f.kind = k.kind AND f.status = 'failed') AS failed_runs,
        (SELECT count(*) FROM scrape_runs f
         WHERE f.kind = k.kind AND f.status = 'failed'
           AND f.id > coalesce(l.id, 0)) AS consecutive_failures,
        (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY g.gap) FROM (
            SELECT extract(epoch FROM s.finished_at - lag(s.finished_at) OVER (ORDER BY s.id))
                AS gap
            FROM (
                SELECT id, finished_at FROM scrape_runs
                WHERE kind = k.kind AND status = 'succeeded'
                ORDER BY id DESC LIMIT 7
            ) s
        ) g) AS interval,
        totals.*
    FROM kinds k
    LEFT JOIN latest_runs l USING (kind)
    CROSS JOIN (
        SELECT
            (SELECT credit_count FROM latest_runs WHERE kind = 'prices') AS credits_last_run,
            (SELECT coalesce(sum(credit_count), 0) FROM scrape_runs
             WHERE finished_at > now() - interval '1 day') AS credits_24h,
            u.credit_limit_monthly,
            u.credits_left_monthly,
            extract(epoch FROM u.credits_reset_at) AS credits_reset_at,
            (SELECT count(*) FROM top_coins WHERE price_usd IS NULL) AS unpriced,
            (SELECT count(*) FROM top_coins
             WHERE match IS NULL OR match = 'ticker') AS unresolved
        FROM (SELECT 1) one
        LEFT JOIN LATERAL (
            SELECT credit_limit_monthly, credits_left_monthly, credits_reset_at
            FROM scrape_runs
            WHERE credits_left_monthly IS NOT NULL OR credit_limit_monthly IS NOT NULL
            ORDER BY id DESC LIMIT 1
        ) u ON true
    ) totals
    ORDER BY k.kind
    """
)


class FreshnessCollector(Collector):
    def __init__(self, cache: TopListCache, version: str, commit: str) -> None:
        self.cache = cache
        self.version = version
        self.commit = commit

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not read anything."""
        return []

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("top_coins_app", "Version and git commit of the running API")
        info.add_metric([], {"version": self.version, "commit": self.commit})
        yield info
        up = GaugeMetricFamily(
            "top_coins_database_up", "1 if this worker's last polls of the database worked"
        )
        up.add_metric([], 1 if self.cache.database_up() else 0)
        yield up
        freshness = self.cache.freshness()
        if freshness is None or not freshness.rows:
            return
        yield from _per_kind(freshness.rows, time.time())
        yield from _totals(freshness.rows[0])


def _per_kind(rows: list[Row[Any]], now: float) -> Iterator[Metric]:
    def gauge(name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=["kind"])

    per_kind: list[tuple[GaugeMetricFamily, Callable[..., float | None]]] = [
        (
            gauge("top_coins_last_success_timestamp_seconds", "End of the last successful run"),
            lambda r: r.last_success,
        ),
        (
            gauge("top_coins_data_age_seconds", "Seconds since the last successful run"),
            lambda r: None if r.last_success is None else now - float(r.last_success),
        ),
        (gauge("top_coins_snapshot_items", "Rows in the served snapshot"), lambda r: r.item_count),
        (
            gauge("top_coins_scrape_failed_runs", "Failed runs kept in the history"),
            lambda r: r.failed_runs,
        ),
        (
            gauge(
                "top_coins_scrape_consecutive_failures", "Failed runs since the last successful one"
            ),
            lambda r: r.consecutive_failures,
        ),
        (
            gauge(
                "top_coins_scrape_interval_seconds",
                "Median time between the last seven successful runs: the schedule as it runs",
            ),
            lambda r: r.interval,
        ),
    ]
    info = GaugeMetricFamily(
        "top_coins_snapshot_info",
        "The provider and measure of the served snapshot of each kind",
        labels=["kind", "source", "measure"],
    )
    for row in rows:
        for family, value in per_kind:
            number = value(row)
            if number is not None:
                family.add_metric([row.kind], float(number))
        if row.source is not None:
            info.add_metric([row.kind, row.source, row.measure or ""], 1)
    yield from (family for family, _ in per_kind)
    yield info


def _totals(row: Row[Any]) -> Iterator[Metric]:
    gauges = [
        (
            "top_coins_coinmarketcap_credits_last_run",
            "CoinMarketCap credits spent by the last successful price scrape",
            row.credits_last_run,
        ),
        (
            "top_coins_coinmarketcap_credits_24h",
            "CoinMarketCap credits spent by all runs of the last 24 hours",
            row.credits_24h,
        ),
        (
            "top_coins_coinmarketcap_credit_limit_monthly",
            "The CoinMarketCap plan's monthly credits, as /v1/key/info last said",
            row.credit_limit_monthly,
        ),
        (
            "top_coins_coinmarketcap_credits_left_monthly",
            "CoinMarketCap credits left this month, as /v1/key/info last said",
            row.credits_left_monthly,
        ),
        (
            "top_coins_coinmarketcap_credits_reset_timestamp_seconds",
            "When CoinMarketCap's monthly credits reset",
            row.credits_reset_at,
        ),
        ("top_coins_unpriced_coins", "Ranked coins served without a price", row.unpriced),
        (
            "top_coins_unresolved_coins",
            "Ranked coins without a CoinMarketCap id (priced by ticker, if at all)",
            row.unresolved,
        ),
    ]
    for name, doc, value in gauges:
        family = GaugeMetricFamily(name, doc)
        if value is not None:
            family.add_metric([], float(value))
        yield family
