"""``GET /coins/{cmc_id}/history``: a coin's rank and price over the retained snapshots.

The one answer read from PostgreSQL per request, so it is bounded three ways: a window
of at most ``history_max_points`` buckets, an indexed query (``ix_ranking_entries_asset_id``
and ``ix_price_quotes_cmc_id``, in the partitions of the window's days only) under a
statement timeout, and a memo of each answer until the next snapshot, since nothing in a
window changes before then.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from flask import Blueprint, Response, current_app, request
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError
from werkzeug.datastructures import MultiDict
from werkzeug.http import http_date, quote_etag

from topcoins.models import HISTORY_EPOCH, history_day

from .cache import NoDataYet, NotLoaded, TopListCache
from .list_endpoint import MAX_ID, cmc_id_or_none, negotiated_format, single
from .problems import Problem, invalid_parameter
from .rendered_list import MEDIA_TYPES, csv_line, decimal_text, iso, json_bytes

bp = Blueprint("history", __name__)

INTERVALS = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}
DEFAULT_INTERVAL = "1h"
CSV_HEADER = ("Time", "Rank", "Price USD")
# Buckets start at whole intervals since this moment (UTC midnight): days are UTC days.
ORIGIN = datetime.combine(HISTORY_EPOCH, datetime.min.time(), UTC)
# The ISO 8601 forms taken for from= and to= (api/openapi.json states the same pattern):
# a date, or a date and time of day, with an optional offset.  fromisoformat alone would
# also take week dates, basic format and seconds in offsets, which no document promises.
MOMENT = re.compile(
    r"20[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"(?:[T ](?:[01][0-9]|2[0-3])(?::[0-5][0-9](?::[0-5][0-9](?:[.,][0-9]{1,6})?)?)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)?)?"
)
# Moments outside these years are typing mistakes, not windows.
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
# Bodies kept per worker, in bytes: a week at 1 h is ~20 KB, 10 000 points ~1 MB.
MEMO_BYTES = 16 * 2**20

# The coin's assets: every description of it a ranking stored, and the unresolved ones a
# prices run matched to it by ticker.
ASSETS_SQL = text(
    "SELECT id, symbol, name FROM assets WHERE cmc_id = :cmc_id"
    " UNION SELECT a.id, a.symbol, a.name FROM assets a"
    " WHERE a.id IN (SELECT asset_id FROM ticker_matches WHERE cmc_id = :cmc_id)"
    " ORDER BY id DESC"
)
# The coin's last rank in each bucket.  ``day`` bounds the partitions read; the runs'
# own times bound the window.
RANKS_SQL = text(
    "SELECT DISTINCT ON (bucket)"
    " date_bin(:step, r.finished_at, :origin) AS bucket, e.rank, r.finished_at"
    " FROM ranking_entries e JOIN scrape_runs r ON r.id = e.run_id"
    " WHERE e.asset_id = ANY(:assets) AND e.day BETWEEN :first_day AND :last_day"
    " AND r.kind = 'ranking' AND r.status = 'succeeded'"
    " AND r.finished_at >= :start AND r.finished_at < :end"
    " ORDER BY bucket, r.finished_at DESC, e.rank"
)
# The coin's last served price in each bucket: the prices runs', as ``top_coins`` serves.
PRICES_SQL = text(
    "SELECT DISTINCT ON (bucket)"
    " date_bin(:step, r.finished_at, :origin) AS bucket, p.price_usd, r.finished_at"
    " FROM price_quotes p JOIN scrape_runs r ON r.id = p.run_id"
    " WHERE p.cmc_id = :cmc_id AND p.day BETWEEN :first_day AND :last_day"
    " AND r.kind = 'prices' AND r.status = 'succeeded'"
    " AND r.finished_at >= :start AND r.finished_at < :end"
    " ORDER BY bucket, r.finished_at DESC"
)
# What is retained: the oldest and newest successful snapshots.
RETAINED_SQL = text(
    "SELECT min(finished_at), max(finished_at) FROM scrape_runs WHERE status = 'succeeded'"
)
# Whether anything of the coin is retained at all: a 404 otherwise.
KNOWN_SQL = text(
    "SELECT EXISTS (SELECT 1 FROM ranking_entries e JOIN scrape_runs r ON r.id = e.run_id"
    "  WHERE e.asset_id = ANY(:assets) AND r.status = 'succeeded')"
    " OR EXISTS (SELECT 1 FROM price_quotes p JOIN scrape_runs r ON r.id = p.run_id"
    "  WHERE p.cmc_id = :cmc_id AND r.status = 'succeeded')"
)


@dataclass(frozen=True)
class Window:
    """What a request asks, checked; ``None`` bounds are resolved against what is retained."""

    cmc_id: int
    start: datetime | None
    end: datetime | None
    interval: str
    fmt: str


@dataclass(frozen=True)
class Point:
    time: datetime
    rank: int | None
    ranked_at: datetime | None
    price_usd: Decimal | None
    priced_at: datetime | None


@dataclass(frozen=True)
class Answer:
    body: bytes
    headers: tuple[tuple[str, str], ...]


class HistoryMemo:
    """Each worker's answers of the current snapshot pair, least recently used out first."""

    def __init__(self, max_bytes: int = MEMO_BYTES) -> None:
        self.max_bytes = max_bytes
        self._answers: OrderedDict[tuple[object, Window], Answer] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, snapshot: object, window: Window) -> Answer | None:
        with self._lock:
            answer = self._answers.get((snapshot, window))
            if answer is not None:
                self._answers.move_to_end((snapshot, window))
            return answer

    def put(self, snapshot: object, window: Window, answer: Answer) -> None:
        with self._lock:
            for key in [key for key in self._answers if key[0] != snapshot]:
                self._bytes -= len(self._answers.pop(key).body)
            if (snapshot, window) in self._answers or len(answer.body) > self.max_bytes:
                return
            self._answers[(snapshot, window)] = answer
            self._bytes += len(answer.body)
            while self._bytes > self.max_bytes:
                _, dropped = self._answers.popitem(last=False)
                self._bytes -= len(dropped.body)


@bp.get("/coins/<cmc_id>/history")
def coin_history(cmc_id: str) -> Response:
    config = current_app.config
    window = parse_window(cmc_id, request.args, request.headers.get("Accept"))
    cache: TopListCache = current_app.extensions["toplist"]
    try:
        snapshot = cache.current().snapshot.identity
    except (NoDataYet, NotLoaded) as exc:
        raise Problem(503, "No data yet", str(exc), headers={"Retry-After": "5"}) from None
    memo: HistoryMemo = current_app.extensions["history"]
    answer = memo.get(snapshot, window)
    if answer is None:
        answer = build(
            current_app.extensions["engine"],
            window,
            max_points=config["HISTORY_MAX_POINTS"],
            budget=config["HISTORY_BUDGET_SECONDS"],
        )
        memo.put(snapshot, window, answer)
    response = Response(answer.body, headers=answer.headers)
    response.make_conditional(request)
    return response


def parse_window(cmc_id: str, args: MultiDict[str, str], accept: str | None) -> Window:
    coin = cmc_id_or_none(cmc_id)
    if coin is None:
        raise invalid_parameter(
            "cmc_id", f"must be a CoinMarketCap id (1 to {MAX_ID}); got {cmc_id[:20]!r}", "path"
        )
    interval = single(args, "interval")
    if interval is None:
        interval = DEFAULT_INTERVAL
    if interval not in INTERVALS:
        raise invalid_parameter(
            "interval", f"must be one of {', '.join(INTERVALS)}; got {interval[:20]!r}"
        )
    start, end = _moment(args, "from"), _moment(args, "to")
    if start is not None and end is not None and start >= end:
        raise invalid_parameter("from", "must be earlier than to")
    return Window(coin, start, end, interval, negotiated_format(args, accept))


def _moment(args: MultiDict[str, str], name: str) -> datetime | None:
    raw = single(args, name)
    if raw is None:
        return None
    reason = "must be an ISO 8601 date or time, such as 2026-11-25T10:00:00Z (UTC if no offset)"
    try:
        if not MOMENT.fullmatch(raw):
            raise ValueError(raw)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise invalid_parameter(name, f"{reason}; got {raw[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not EARLIEST <= moment <= LATEST:
        raise invalid_parameter(name, f"must be within the years 2000 to 2099; got {raw[:40]!r}")
    return moment.astimezone(UTC)


def bucket_start(moment: datetime, step: timedelta) -> datetime:
    return ORIGIN + (moment - ORIGIN) // step * step


def buckets(start: datetime, end: datetime, step: timedelta) -> int:
    """How many buckets the window [start, end) touches."""
    first = (start - ORIGIN) // step
    last = (end - ORIGIN - timedelta(microseconds=1)) // step
    return last - first + 1


def build(engine: Engine, window: Window, *, max_points: int, budget: float) -> Answer:
    step = INTERVALS[window.interval]
    try:
        with engine.begin() as connection:
            connection.execute(
                text("SELECT set_config('statement_timeout', :ms, true)"),
                {"ms": str(round(budget * 1000))},
            )
            return _build(connection, window, step, max_points)
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == "57014":  # query_canceled
            raise Problem(
                503,
                "History query too slow",
                f"the history query took longer than its budget of {budget:g} s;"
                " ask for a shorter window or a coarser interval",
                headers={"Retry-After": "5"},
            ) from None
        raise Problem(
            503,
            "Database unavailable",
            "the history is read from the database, which is away",
            headers={"Retry-After": "5"},
        ) from None


def _build(connection: Connection, window: Window, step: timedelta, max_points: int) -> Answer:
    assets = connection.execute(ASSETS_SQL, {"cmc_id": window.cmc_id}).all()
    retained_from, retained_to = connection.execute(RETAINED_SQL).one()
    # Without bounds, the window is whole buckets from the newest snapshot back, as far as
    # retained and allowed: the same answer from every worker until the next snapshot.
    end = window.end
    if end is None:
        end = bucket_start(retained_to or datetime.now(UTC), step) + step
    start = window.start
    if start is None:
        start = end - step * max_points
        if retained_from is not None:
            start = max(start, bucket_start(retained_from, step))
    # A bound given beyond the other's default makes an empty window, not a reversed one.
    if window.end is None:
        end = max(end, start)
    start = min(start, end)
    points = buckets(start, end, step)
    if points > max_points:
        coarser = [name for name, size in INTERVALS.items() if size > step]
        raise invalid_parameter(
            "from",
            f"the window from {iso(start)} to {iso(end)} holds {points} points at"
            f" {window.interval}, more than {max_points}: ask for a shorter window"
            + (f" or a coarser interval ({', '.join(coarser)})" if coarser else ""),
        )
    asset_ids = [row.id for row in assets]
    params: dict[str, Any] = {
        "step": step,
        "origin": ORIGIN,
        "start": start,
        "end": end,
        # A run's rows are in the partition of the day it started, before it finished.
        "first_day": history_day(start) - 1,
        "last_day": history_day(end),
        "cmc_id": window.cmc_id,
        "assets": asset_ids,
    }
    ranks = {r.bucket: r for r in connection.execute(RANKS_SQL, params)} if asset_ids else {}
    prices = {r.bucket: r for r in connection.execute(PRICES_SQL, params)}
    if not ranks and not prices and not connection.scalar(KNOWN_SQL, params):
        raise Problem(
            404,
            "Unknown coin",
            f"CoinMarketCap id {window.cmc_id} is not in the retained history",
        )
    series = [
        Point(
            time=moment,
            rank=ranks[moment].rank if moment in ranks else None,
            ranked_at=ranks[moment].finished_at if moment in ranks else None,
            price_usd=prices[moment].price_usd if moment in prices else None,
            priced_at=prices[moment].finished_at if moment in prices else None,
        )
        for moment in sorted(ranks.keys() | prices.keys())
    ]
    symbol, name = (assets[0].symbol, assets[0].name) if assets else (None, None)
    meta = {
        "cmc_id": window.cmc_id,
        "symbol": symbol,
        "name": name,
        "interval": window.interval,
        "from": iso(start),
        "to": iso(end),
        "count": len(series),
        "retained": {
            "from": None if retained_from is None else iso(retained_from),
            "to": None if retained_to is None else iso(retained_to),
        },
    }
    return _render(window, series, meta, max(retained_to or end, start))


def _render(
    window: Window, series: Sequence[Point], meta: dict[str, object], modified: datetime
) -> Answer:
    if window.fmt == "csv":
        rows = [
            (iso(p.time), "" if p.rank is None else str(p.rank), decimal_text(p.price_usd) or "")
            for p in series
        ]
        body = b"".join(csv_line(row) for row in (CSV_HEADER, *rows))
    else:
        items = b",".join(_item(point) for point in series)
        body = b'{"data":[' + items + b'],"meta":' + json_bytes(meta) + b"}"
    shape = hashlib.blake2s(repr(window).encode(), digest_size=8).hexdigest()
    headers = (
        ("Content-Type", MEDIA_TYPES[window.fmt]),
        ("ETag", quote_etag(f"h{window.cmc_id}-{shape}-{int(modified.timestamp())}")),
        ("Last-Modified", http_date(modified)),
        ("Cache-Control", "no-cache"),
        ("Vary", "Accept"),
    )
    return Answer(body, headers)


def _item(point: Point) -> bytes:
    price = decimal_text(point.price_usd)
    return (
        b'{"time":'
        + json_bytes(iso(point.time))
        + b',"rank":'
        + json_bytes(point.rank)
        + b',"price_usd":'
        + (b"null" if price is None else price.encode())
        + b',"ranked_at":'
        + json_bytes(None if point.ranked_at is None else iso(point.ranked_at))
        + b',"priced_at":'
        + json_bytes(None if point.priced_at is None else iso(point.priced_at))
        + b"}"
    )
