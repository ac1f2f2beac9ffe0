"""The served top list, loaded once per snapshot pair and rendered once per shape.

Every response for one (ranking run, price run) pair is the same, so requests never
touch the database: a background thread in each worker polls for a newer pair about
once a second and swaps in a fresh list, and rendered bodies are memoised per
(limit, format).  When the database goes away the last list keeps being served.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal

from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.http import http_date, quote_etag

from topcoins.models import RunKind, Source, latest_runs, top_coins

log = logging.getLogger("api.toplist")

CSV_HEADER = ("Rank", "Symbol", "Price USD")


class NoDataYet(Exception):
    """No successful scrape of a source has been stored yet."""


class DatabaseUnavailable(Exception):
    """Nothing was ever loaded, and the database cannot be reached to load it."""


@dataclass(frozen=True)
class Coin:
    rank: int
    symbol: str
    name: str
    price_usd: Decimal | None


MEDIA_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8"}


@dataclass(frozen=True)
class Rendered:
    """A complete response for one (limit, format): body and headers, built once."""

    body: bytes
    headers: tuple[tuple[str, str], ...]


@dataclass
class TopList:
    """One snapshot pair as served, with its rendered bodies memoised."""

    coins: tuple[Coin, ...]
    ranking_run_id: int
    ranking_source: str
    ranking_measure: str | None
    ranked_at: datetime
    price_run_id: int
    priced_at: datetime
    ranking_stale: bool = False
    prices_stale: bool = False
    _rendered: dict[tuple[int, str], Rendered] = field(default_factory=dict, repr=False)

    @property
    def last_modified(self) -> datetime:
        return max(self.ranked_at, self.priced_at)

    def render(self, limit: int, fmt: str) -> Rendered:
        limit = min(limit, len(self.coins))
        cached = self._rendered.get((limit, fmt))
        if cached is None:
            body = self._csv(limit) if fmt == "csv" else self._json(limit)
            tag = f"r{self.ranking_run_id}-p{self.price_run_id}-{limit}-{fmt}"
            if self.ranking_stale or self.prices_stale:
                tag += "-stale"
            headers = (
                ("Content-Type", MEDIA_TYPES[fmt]),
                ("ETag", quote_etag(tag)),
                ("Last-Modified", http_date(self.last_modified)),
                ("Cache-Control", "no-cache"),
                ("Vary", "Accept"),
            )
            cached = self._rendered.setdefault((limit, fmt), Rendered(body, headers))
        return cached

    def _json(self, limit: int) -> bytes:
        coins = self.coins[:limit]
        document = {
            "data": [
                {
                    "rank": c.rank,
                    "symbol": c.symbol,
                    "name": c.name,
                    "price_usd": None if c.price_usd is None else float(c.price_usd),
                }
                for c in coins
            ],
            "meta": {
                "count": len(coins),
                "unpriced": sum(1 for c in coins if c.price_usd is None),
                "stale": self.ranking_stale or self.prices_stale,
                "ranking": {
                    "source": self.ranking_source,
                    "measure": self.ranking_measure,
                    "run_id": self.ranking_run_id,
                    "scraped_at": _iso(self.ranked_at),
                    "stale": self.ranking_stale,
                },
                "prices": {
                    "source": Source.COINMARKETCAP.value,
                    "run_id": self.price_run_id,
                    "scraped_at": _iso(self.priced_at),
                    "stale": self.prices_stale,
                },
            },
        }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

    def _csv(self, limit: int) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_HEADER)
        for c in self.coins[:limit]:
            writer.writerow((c.rank, c.symbol, "" if c.price_usd is None else f"{c.price_usd:f}"))
        return buffer.getvalue().encode()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class TopListCache:
    """Per-process holder of the current ``TopList``, kept fresh by a daemon thread."""

    def __init__(
        self,
        engine: Engine,
        *,
        stale_after_seconds: float,
        refresh_interval_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.stale_after = stale_after_seconds
        self.interval = refresh_interval_seconds
        self.clock = clock
        self._current: TopList | None = None
        self._missing: str | None = None
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()

    def current(self) -> TopList:
        """The list to serve now; only the first call in a process may hit the database."""
        if self._pid != os.getpid():
            self._start()
        top = self._current
        if top is None:
            if self._missing is not None:
                raise NoDataYet(self._missing)
            raise DatabaseUnavailable("the database could not be reached")
        return top

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            # A forked worker must not reuse connections inherited from its parent.
            self.engine.dispose(close=False)
            self._stop.clear()
            self.refresh()
            thread = threading.Thread(target=self._run, name="toplist-refresh", daemon=True)
            thread.start()
            self._pid = os.getpid()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        # A poll a second per worker is not worth a trace; loads made inside a request are.
        with suppress_instrumentation():
            while not self._stop.wait(self.interval):
                self.refresh()

    def refresh(self) -> None:
        """Swap in the newest snapshot pair, if any changed; never raises."""
        try:
            self._refresh()
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            log.warning(
                "top list refresh failed; serving the last loaded list: %s",
                type(cause).__name__,
            )

    def _refresh(self) -> None:
        with self.engine.connect() as connection:
            latest: dict[str, int] = {
                kind: run_id
                for kind, run_id in connection.execute(select(latest_runs.c.kind, latest_runs.c.id))
            }
            ranking_id = latest.get(RunKind.RANKING.value)
            price_id = latest.get(RunKind.PRICES.value)
            if ranking_id is None or price_id is None:
                missing = [
                    name
                    for name, run_id in (("ranking", ranking_id), ("price", price_id))
                    if run_id is None
                ]
                self._missing = f"no successful {' or '.join(missing)} scrape yet"
                self._current = None
                return
            current = self._current
            if current is None or (current.ranking_run_id, current.price_run_id) != (
                ranking_id,
                price_id,
            ):
                loaded = self._load(connection)
                if loaded is None:
                    return
                current = loaded
                log.info(
                    "serving ranking run %d with price run %d: %d coins",
                    current.ranking_run_id,
                    current.price_run_id,
                    len(current.coins),
                    extra={
                        "ranking_run_id": current.ranking_run_id,
                        "price_run_id": current.price_run_id,
                        "item_count": len(current.coins),
                    },
                )
        self._current = self._with_staleness(current)
        self._missing = None

    def _load(self, connection: Connection) -> TopList | None:
        rows = connection.execute(select(top_coins).order_by(top_coins.c.rank)).all()
        if not rows:
            return None
        first = rows[0]
        return TopList(
            coins=tuple(Coin(r.rank, r.symbol, r.name, r.price_usd) for r in rows),
            ranking_run_id=first.ranking_run_id,
            ranking_source=first.ranking_source,
            ranking_measure=first.ranking_measure,
            ranked_at=first.ranked_at,
            price_run_id=first.price_run_id,
            priced_at=first.priced_at,
        )

    def _with_staleness(self, top: TopList) -> TopList:
        now = self.clock()
        ranking_stale = now - top.ranked_at.timestamp() > self.stale_after
        prices_stale = now - top.priced_at.timestamp() > self.stale_after
        if (ranking_stale, prices_stale) == (top.ranking_stale, top.prices_stale):
            return top
        # Stale flags are in the bodies and ETags, so the copy starts with no rendered bodies.
        return replace(top, ranking_stale=ranking_stale, prices_stale=prices_stale, _rendered={})
