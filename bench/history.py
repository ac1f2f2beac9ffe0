"""What a week of history costs: the view, the poll, pruning one day, and disk.

Usage: .venv/bin/python -m bench.history [--coins 200 5000] [--days 7] [--repeat 7]

Builds, for each ranking size, a fresh database holding ``--days`` of synthetic
history as production makes it (a ranking every minute, prices every 5 minutes), then
measures, as medians over ``--repeat`` runs:

- ``top_coins``: what each API worker loads at every new snapshot (target <= 25 ms at 5000);
- the poll: the API's safety-net lookup of the latest runs (target <= 0.2 ms, flat);
- pruning one day, as a scraper's run does it, and the dead rows it leaves (<= 100 ms, none);
- disk: the database's size (target <= 3 GB for 7 days at 5000 coins).

The history is written with set-based SQL straight into the schema (the scrapers'
writer would take hours for 50 million rows); the pruning is the scrapers' own.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from api.history import Window, build
from bench.common import ROOT, migrated_database
from devtools.postgres import drop_database, find_server
from scrapers.history import ensure_partitions, prune, summarize
from scrapers.ranking import RankedCoin
from scrapers.ranks import write_ranking
from scrapers.snapshots import RunRecord, Snapshot, write_snapshot
from topcoins.db import make_engine
from topcoins.models import RunKind, Source, history_day
from topcoins.settings import database_url

RANKS_EVERY = timedelta(minutes=1)
PRICES_EVERY = timedelta(minutes=5)
COINS, DAYS, REPEAT = (200, 5000), 7, 7


def fill(engine: Engine, coins: int, days: int, today: datetime) -> None:
    """``days`` whole UTC days before ``today``: a ranking every minute, prices every 5."""
    start = today - timedelta(days=days)
    with Session(engine) as session, session.begin():
        for day in range(history_day(start), history_day(today)):
            ensure_partitions(session, day)
        session.execute(
            text(
                "INSERT INTO assets (source, provider_asset_id, symbol, name, slug, cmc_id,"
                " resolved_by) SELECT 'coindesk', 100000 + c, 'C' || c, 'Coin number ' || c,"
                " 'coin-number-' || c, c, 'provider' FROM generate_series(1, :coins) c ORDER BY c"
            ),
            {"coins": coins},
        )
    for kind, source, every in (
        ("ranking", "coindesk", RANKS_EVERY),
        ("prices", "coinmarketcap", PRICES_EVERY),
    ):
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO scrape_runs (kind, source, status, started_at, finished_at,"
                    " item_count, credit_count, measure, day)"
                    " SELECT :kind, :source, 'succeeded', t, t, :coins, 0,"
                    " CASE WHEN :kind = 'ranking' THEN 'SPOT_MOVING_24_HOUR_QUOTE_VOLUME_USD' END,"
                    " timezone('UTC', t)::date - date '2000-01-01'"
                    " FROM generate_series(:start, :end, :every) t ORDER BY t"
                ),
                {
                    "kind": kind,
                    "source": source,
                    "coins": coins,
                    "start": start,
                    "end": today - every,
                    "every": every,
                },
            )
    # A day per transaction, in run order, as the scrapers would have written them.
    for day in range(history_day(start), history_day(today)):
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO ranking_entries (run_id, asset_id, volume_24h_usd, rank, day)"
                    " SELECT r.id, c, 1e10 / c, c, r.day"
                    " FROM scrape_runs r CROSS JOIN generate_series(1, :coins) c"
                    " WHERE r.kind = 'ranking' AND r.day = :day ORDER BY r.id, c"
                ),
                {"coins": coins, "day": day},
            )
            connection.execute(
                text(
                    "INSERT INTO price_quotes (last_updated, run_id, cmc_id, day, price_usd,"
                    " market_cap_usd, percent_change_24h)"
                    " SELECT r.started_at, r.id, c, r.day,"
                    " round(((1e4 / c) * (1 + random() / 100))::numeric, 12),"
                    " 1e12 / c * (1 + random() / 100), random() * 20 - 10"
                    " FROM scrape_runs r CROSS JOIN generate_series(1, :coins) c"
                    " WHERE r.kind = 'prices' AND r.day = :day ORDER BY r.id, c"
                ),
                {"coins": coins, "day": day},
            )
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))


def write_one_ranking(engine: Engine, coins: int) -> float:
    """One more ranking, through the scrapers' own writer and upkeep; its time in ms."""
    resolved = [
        (
            RankedCoin(
                rank=c,
                symbol=f"C{c}",
                name=f"Coin number {c}",
                provider_asset_id=100000 + c,
                slug=f"coin-number-{c}",
                volume_24h_usd=Decimal(10**10) / c,
            ),
            c,
            "provider",
        )
        for c in range(1, coins + 1)
    ]
    record = RunRecord(RunKind.RANKING, Source.COINDESK, datetime.now(UTC))
    started = time.perf_counter()
    with Session(engine) as session:
        with session.begin():
            ensure_partitions(session, record.day)
        with session.begin():
            snapshot = Snapshot(coins, partial(write_ranking, resolved=resolved))
            write_snapshot(session, record, snapshot)
        with session.begin():
            summarize(session, record.day)
    return (time.perf_counter() - started) * 1000


def plan_nodes(engine: Engine, sql: str) -> list[str]:
    """The plan's scans: a history table read any other way than by index would show."""
    with engine.connect() as connection:
        plan = connection.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")).scalar_one()
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if "Relation Name" in node and node.get("Actual Loops", 0):
            found.append(f"{node['Node Type']} on {node['Relation Name']}")
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return sorted(set(found))


def median_ms(engine: Engine, sql: str, repeat: int) -> tuple[float, float]:
    """Median (server execution time, client round trip) in milliseconds."""
    server, client = [], []
    with engine.connect() as connection:
        connection.execute(text(sql)).all()  # warm
        for _ in range(repeat):
            plan = connection.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")).scalar_one()
            server.append(plan[0]["Execution Time"])
            started = time.perf_counter()
            connection.execute(text(sql)).all()
            client.append((time.perf_counter() - started) * 1000)
    return statistics.median(server), statistics.median(client)


def history_requests(engine: Engine, coins: int, repeat: int) -> dict[str, float]:
    """What ``GET /coins/{id}/history`` costs the first time per snapshot (later ones are
    memoised): the median ms of the API's own query, for the top coin and the last one."""
    medians = {}
    for label, interval in (("1h", "1h"), ("1m", "1m"), ("1d", "1d")):
        for cmc_id in (1, coins):
            window = Window(cmc_id, None, None, interval, "json")
            build(engine, window, max_points=10_000, budget=30)  # warm
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                answer = build(engine, window, max_points=10_000, budget=30)
                times.append((time.perf_counter() - started) * 1000)
            medians[f"{label} #{cmc_id} ({len(answer.body) // 1000} KB)"] = statistics.median(times)
    return medians


def prune_one_day(engine: Engine, days: int, today: datetime) -> tuple[float, int, int]:
    """The scrapers' own pruning at a retention a day shorter: (ms, runs pruned, dead rows)."""
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_stat_reset()"))
        connection.commit()
        session = Session(bind=connection)
        started = time.perf_counter()
        with session.begin():
            pruned = prune(session, timedelta(days=days - 1), now=today)
        took = (time.perf_counter() - started) * 1000
        connection.execute(text("SELECT pg_stat_force_next_flush()"))
        connection.commit()
        time.sleep(1.5)
        dead = connection.scalar(
            text("SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables")
        )
    return took, pruned.runs, int(dead or 0)


@dataclass(frozen=True)
class History:
    """One ranking size's figures: times in ms (server execution, client round trip), bytes."""

    coins: int
    days: int
    top_coins: float
    top_coins_trip: float
    poll: float
    poll_trip: float
    prune: float
    pruned_runs: int
    dead_rows: int
    disk: int
    sizes: Mapping[str, int]
    written: float
    scans: tuple[str, ...]
    # ms of a coin's history by window, the first request of a snapshot (api.history).
    history: Mapping[str, float]


def measure(admin: str, coins: int, days: int, repeat: int, log: Callable[[str], None]) -> History:
    name = f"topcoins_bench_history_{coins}"
    url = migrated_database(admin, name)
    engine = make_engine(database_url({"DATABASE_URL": url}), application_name="bench")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        started = time.monotonic()
        fill(engine, coins, days, today)
        log(f"{coins} coins: filled {days} days in {time.monotonic() - started:.0f} s")
        with engine.connect() as connection:
            size = connection.scalar(text("SELECT pg_database_size(current_database())"))
            tables = connection.execute(
                text(
                    "SELECT relname, pg_total_relation_size(oid) FROM pg_class "
                    "WHERE relname IN ('ranking_entries', 'price_quotes', 'assets', 'scrape_runs')"
                )
            ).all()
            history = {
                parent: connection.scalar(
                    text(
                        "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                        "WHERE inhparent = CAST(:t AS regclass)"
                    ),
                    {"t": parent},
                )
                for parent in ("ranking_entries", "price_quotes")
            }
        sizes = {name: int(history.get(name) or total) for name, total in tables}
        written = write_one_ranking(engine, coins)
        view_sql = "SELECT * FROM top_coins ORDER BY rank"
        view, view_trip = median_ms(engine, view_sql, repeat)
        poll, poll_trip = median_ms(
            engine, "SELECT kind, id, finished_at FROM latest_runs", repeat * 10
        )
        requests = history_requests(engine, coins, repeat)
        log(
            f"{coins} coins: a coin's history over the default window: "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in requests.items())
        )
        pruned, runs, dead = prune_one_day(engine, days, today)
        log(
            f"{coins} coins: top_coins {view:.1f} ms ({view_trip:.1f} ms round trip), "
            f"poll {poll:.3f} ms ({poll_trip:.3f} ms round trip), "
            f"prune one day {pruned:.0f} ms ({runs} runs) leaving {dead} dead rows, "
            f"disk {size / 1e9:.2f} GB, a new ranking written in {written:.0f} ms"
        )
        log(f"{coins} coins: sizes " + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in sizes.items()))
        scans = plan_nodes(engine, view_sql)
        log(f"{coins} coins: top_coins reads " + "; ".join(scans))
    finally:
        engine.dispose()
        drop_database(admin, name)
    return History(
        coins=coins,
        days=days,
        top_coins=view,
        top_coins_trip=view_trip,
        poll=poll,
        poll_trip=poll_trip,
        prune=pruned,
        pruned_runs=runs,
        dead_rows=dead,
        disk=int(size),
        sizes=sizes,
        written=written,
        scans=tuple(scans),
        history=requests,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coins", type=int, nargs="+", default=list(COINS))
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--repeat", type=int, default=REPEAT)
    args = parser.parse_args()
    admin = find_server(ROOT)
    for coins in args.coins:
        measure(admin, coins, args.days, args.repeat, print)


if __name__ == "__main__":
    main()
