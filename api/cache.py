"""Each worker's copy of the served list, kept fresh by a thread, never by a request.

Requests only read what the refresher thread loaded, so a slow, locked or partitioned
database never holds a request: the thread waits instead, within the engine's timeouts,
and the last list stays served meanwhile.  A worker starting during an outage begins
with the list its siblings saved on local disk (``saved_list``).  The refresher also
runs the freshness query for ``/metrics``, at most every few seconds and only while
someone scrapes, so that a flood of ``/metrics`` costs the database nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import psycopg
from opentelemetry.instrumentation.utils import suppress_instrumentation
from prometheus_client import Counter
from psycopg import sql
from sqlalchemy import Connection, Engine, Row, select, text

from topcoins.buildinfo import schema_head, schema_is_behind
from topcoins.models import SNAPSHOT_CHANNEL, RunKind, latest_runs, top_coins

from . import saved_list
from .freshness import FRESHNESS_SQL
from .rendered_list import Coin, Snapshot, TopList

log = logging.getLogger("api.cache")

# How often the freshness query may run, and for how long after the last /metrics scrape.
FRESHNESS_EVERY = 5.0
FRESHNESS_WANTED_FOR = 120.0
FAILURE_LOG_EVERY = 60.0
# How long a request may wait for a newly started worker's first poll.
FIRST_POLL_WAIT = 0.5


class NoDataYet(Exception):
    """The database answers, but holds no successful ranking or price snapshot yet."""


class NotLoaded(Exception):
    """Nothing to serve yet: the first load has not succeeded."""


@dataclass(frozen=True)
class Freshness:
    """The freshness query's rows, and when they were read."""

    rows: list[Row[Any]]
    read_at: float


class TopListCache:
    """Per-process holder of the current ``TopList``."""

    def __init__(
        self,
        engine: Engine,
        *,
        stale_after_seconds: float,
        refresh_interval_seconds: float,
        state_dir: Path | None = None,
        failures: Counter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.stale_after = stale_after_seconds
        self.interval = refresh_interval_seconds
        self.state_dir = state_dir
        self.failures = failures
        self.clock = clock
        self._current: TopList | None = None
        self._schema: str | None = None
        self._missing: str | None = None
        self._database_ok = False
        self._last_error: str | None = None
        self._logged_at = 0.0
        self._freshness: Freshness | None = None
        self._freshness_wanted_at = 0.0
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Set once the first poll of the database succeeded or failed.
        self.polled = threading.Event()
        # One refresh at a time: two would both load a new snapshot, and both announce it.
        self._refreshing = threading.Lock()
        self._waited_for_first_poll = False
        self._listener: psycopg.Connection[Any] | None = None

    def start(self) -> None:
        """Once per process (a forked child starts its own); loads only from local disk here."""
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            # A forked worker must not reuse connections inherited from its parent.
            self.engine.dispose(close=False)
            self._listener = None
            self._stop.clear()
            # Ready for the first scrape of /metrics, which usually follows the start soon.
            self._freshness_wanted_at = self.clock()
            if self.state_dir is not None and self._current is None:
                saved = saved_list.load(self.state_dir, self.stale_after)
                if saved is not None:
                    self._current, self._schema = saved
                    log.info(
                        "serving the saved list of ranking run %d with price run %d "
                        "until the database answers",
                        self._current.snapshot.ranking_run_id,
                        self._current.snapshot.price_run_id,
                    )
            threading.Thread(target=self._run, name="toplist-refresh", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._drop_listener()

    def current(self) -> TopList:
        """The list to serve now, without touching the database.

        Only a worker that has just started, with nothing loaded, lets a request wait for
        its first poll, and briefly: the rest of the time nothing here waits at all.
        """
        if self._pid != os.getpid():
            self.start()
        top = self._current
        if top is None and not self._waited_for_first_poll:
            self._waited_for_first_poll = True
            self.polled.wait(FIRST_POLL_WAIT)
            top = self._current
        if top is None:
            if self._missing is not None:
                raise NoDataYet(self._missing)
            reason = self._last_error or "the first load of the top list is under way"
            raise NotLoaded(reason)
        return top

    def readiness(self) -> tuple[bool, str]:
        """Ready means able to serve: a list is loaded, under a schema not behind this code."""
        if self._pid != os.getpid():
            self.start()
        if self._current is None:
            if self._missing is not None:
                return False, self._missing
            return False, f"no list loaded yet ({self._last_error or 'loading'})"
        if schema_is_behind(self._schema):
            return False, (
                f"database schema is at {self._schema or 'nothing'}, "
                f"this image expects {schema_head()}: run migrations"
            )
        return True, "ready"

    def database_up(self) -> bool:
        """Whether the last poll reached the database: for ``/metrics``, not for readiness."""
        return self._database_ok

    def freshness(self) -> Freshness | None:
        """The latest freshness figures; asking for them keeps the refresher reading them."""
        self._freshness_wanted_at = self.clock()
        return self._freshness

    def _run(self) -> None:
        # The refresher's own queries are not worth a trace.
        with suppress_instrumentation():
            while not self._stop.is_set():
                self.refresh()
                self._wait_for_news()

    def _wait_for_news(self) -> None:
        """Until a snapshot is announced, or the safety-net poll is due.

        The scrapers ``NOTIFY`` on commit (``SNAPSHOT_CHANNEL``), so a new snapshot is
        served within milliseconds; the poll every ``interval`` covers a lost connection.
        """
        listener = self._listener or self._listen()
        if listener is None:
            self._stop.wait(self.interval)
            return
        try:
            for _ in listener.notifies(timeout=self.interval, stop_after=1):
                pass
        except Exception:
            self._drop_listener()
            self._stop.wait(min(self.interval, 1.0))

    def _listen(self) -> psycopg.Connection[Any] | None:
        """A connection of the engine's (same timeouts and keepalives), taken out of its pool."""
        try:
            pooled = self.engine.raw_connection()
        except Exception:
            return None
        driver = cast(psycopg.Connection[Any], pooled.driver_connection)
        pooled.detach()  # never back into the pool while it listens
        try:
            driver.rollback()  # the pool's liveness check may have opened a transaction
            driver.autocommit = True
            driver.execute(sql.SQL("LISTEN {}").format(sql.Identifier(SNAPSHOT_CHANNEL)))
        except Exception:
            with contextlib.suppress(Exception):
                driver.close()
            return None
        self._listener = driver
        return driver

    def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                listener.close()

    def refresh(self, *, freshness: bool = False) -> None:
        """Swap in the newest snapshot pair, if any changed; never raises.

        ``freshness`` reads the freshness figures now rather than when they are due.
        """
        try:
            with self._refreshing, self.engine.connect() as connection:
                self._refresh(connection)
                if freshness or self._freshness_due():
                    rows = list(connection.execute(FRESHNESS_SQL))
                    self._freshness = Freshness(rows, self.clock())
        except Exception as exc:
            cause = getattr(exc, "orig", None) or exc
            self._database_ok = False
            self._last_error = f"database unavailable ({type(cause).__name__})"
            if self.failures is not None:
                self.failures.inc()
            log.warning(
                "top list refresh failed; serving the last loaded list: %s: %s",
                type(cause).__name__,
                str(cause).strip().splitlines()[0] if str(cause).strip() else "",
            )
        finally:
            self.polled.set()

    def _refresh(self, connection: Connection) -> None:
        latest = {
            kind: (run_id, finished_at)
            for kind, run_id, finished_at in connection.execute(
                select(latest_runs.c.kind, latest_runs.c.id, latest_runs.c.finished_at)
            )
        }
        if self._last_error is not None:
            log.info("the database answers again")
        self._database_ok = True
        self._last_error = None
        ranking, prices = latest.get(RunKind.RANKING), latest.get(RunKind.PRICES)
        if ranking is None or prices is None:
            missing = [
                name for name, run in (("ranking", ranking), ("price", prices)) if run is None
            ]
            self._missing = f"no successful {' or '.join(missing)} scrape yet"
            # The database answers and holds nothing: it wins over a list saved on disk.
            self._current = None
            return
        self._missing = None
        current = self._current
        if current is not None and current.snapshot.identity == (ranking, prices):
            return
        loaded = self._load(connection)
        if loaded is None:
            return
        schema = connection.scalar(text("SELECT version_num FROM alembic_version"))
        self._current, self._schema = loaded, schema
        snapshot = loaded.snapshot
        log.info(
            "serving ranking run %d with price run %d: %d coins",
            snapshot.ranking_run_id,
            snapshot.price_run_id,
            len(loaded.coins),
            extra={
                "ranking_run_id": snapshot.ranking_run_id,
                "price_run_id": snapshot.price_run_id,
                "item_count": len(loaded.coins),
            },
        )
        if self.state_dir is not None and schema is not None:
            saved_list.save(self.state_dir, loaded, schema)

    def _load(self, connection: Connection) -> TopList | None:
        rows = connection.execute(select(top_coins).order_by(top_coins.c.rank)).all()
        if not rows:
            return None
        first = rows[0]
        snapshot = Snapshot(
            ranking_run_id=first.ranking_run_id,
            ranking_source=first.ranking_source,
            ranking_measure=first.ranking_measure,
            ranked_at=first.ranked_at,
            price_run_id=first.price_run_id,
            priced_at=first.priced_at,
        )
        coins = tuple(
            Coin(
                rank=r.rank,
                symbol=r.symbol,
                name=r.name,
                price_usd=r.price_usd,
                cmc_id=r.cmc_id,
                provider_asset_id=r.provider_asset_id,
                volume_24h_usd=r.volume_24h_usd,
                market_cap_usd=r.market_cap_usd,
                percent_change_24h=r.percent_change_24h,
                price_updated_at=r.price_updated_at,
            )
            for r in rows
        )
        return TopList(coins, snapshot, self.stale_after)

    def _freshness_due(self) -> bool:
        now = self.clock()
        if now - self._freshness_wanted_at > FRESHNESS_WANTED_FOR:
            return False
        return self._freshness is None or now - self._freshness.read_at >= FRESHNESS_EVERY
