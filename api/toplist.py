"""The served top list: one snapshot pair, rendered for any limit in time linear to it.

Every response for one (ranking run, price run) pair is the same but for the limit, the
format and whether the data is stale by now, so each coin is rendered once when the list
is loaded, a body is those pieces joined, and only a few recent bodies are kept: memory
stays linear in the ranking's length however many limits clients ask for.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import accumulate

from werkzeug.http import http_date, quote_etag, unquote_etag

from topcoins.models import Source

CSV_HEADER = ("Rank", "Symbol", "Price USD")
MEDIA_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8"}
# Bodies kept per list: enough for the few shapes (and encodings) clients really ask for.
RENDERED_KEPT = 32
# A cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Coin:
    rank: int
    symbol: str
    name: str
    price_usd: Decimal | None


@dataclass(frozen=True)
class Rendered:
    """A complete response for one (limit, format, staleness): body and headers."""

    body: bytes
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Snapshot:
    """Which runs a list was merged from: the same for every body of the list."""

    ranking_run_id: int
    ranking_source: str
    ranking_measure: str | None
    ranked_at: datetime
    price_run_id: int
    priced_at: datetime

    @property
    def identity(self) -> tuple[tuple[int, datetime], tuple[int, datetime]]:
        """Run ids with their times: another database's run 1 is not this one's."""
        return (self.ranking_run_id, self.ranked_at), (self.price_run_id, self.priced_at)


class TopList:
    """One snapshot pair as served."""

    def __init__(self, coins: tuple[Coin, ...], snapshot: Snapshot, stale_after: float) -> None:
        self.coins = coins
        self.snapshot = snapshot
        self.stale_after = stale_after
        self._json_items = [_json(_item(coin)) for coin in coins]
        self._csv_rows = [_csv_row(coin) for coin in coins]
        self._unpriced = [0, *accumulate(_servable(coin.price_usd) is None for coin in coins)]
        self._rendered: OrderedDict[tuple[int, str, bool, bool, bool], Rendered] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def last_modified(self) -> datetime:
        return max(self.snapshot.ranked_at, self.snapshot.priced_at)

    def staleness(self, now: float) -> tuple[bool, bool]:
        """Judged when serving: data grows old while the database is away, too."""
        return (
            now - self.snapshot.ranked_at.timestamp() > self.stale_after,
            now - self.snapshot.priced_at.timestamp() > self.stale_after,
        )

    def render(self, limit: int, fmt: str, now: float, gzipped: bool = False) -> Rendered:
        limit = min(limit, len(self.coins))
        ranking_stale, prices_stale = self.staleness(now)
        key = (limit, fmt, ranking_stale, prices_stale, gzipped)
        with self._lock:
            cached = self._rendered.get(key)
            if cached is not None:
                self._rendered.move_to_end(key)
                return cached
        if gzipped:
            rendered = _gzipped(self.render(limit, fmt, now))
        else:
            rendered = self._render(limit, fmt, ranking_stale, prices_stale)
        with self._lock:
            self._rendered[key] = rendered
            while len(self._rendered) > RENDERED_KEPT:
                self._rendered.popitem(last=False)
        return rendered

    def _render(self, limit: int, fmt: str, ranking_stale: bool, prices_stale: bool) -> Rendered:
        if fmt == "csv":
            body = _csv_line(CSV_HEADER) + b"".join(self._csv_rows[:limit])
        else:
            meta = _json(self._meta(limit, ranking_stale, prices_stale))
            body = b'{"data":[' + b",".join(self._json_items[:limit]) + b'],"meta":' + meta + b"}"
        snapshot = self.snapshot
        tag = f"r{snapshot.ranking_run_id}-p{snapshot.price_run_id}-{limit}-{fmt}"
        if ranking_stale or prices_stale:
            tag += "-stale"
        headers = (
            ("Content-Type", MEDIA_TYPES[fmt]),
            ("ETag", quote_etag(tag)),
            ("Last-Modified", http_date(self.last_modified)),
            ("Cache-Control", "no-cache"),
            ("Vary", "Accept, Accept-Encoding"),
        )
        return Rendered(body, headers)

    def _meta(self, limit: int, ranking_stale: bool, prices_stale: bool) -> dict[str, object]:
        snapshot = self.snapshot
        return {
            "count": limit,
            "unpriced": self._unpriced[limit],
            "stale": ranking_stale or prices_stale,
            "ranking": {
                "source": snapshot.ranking_source,
                "measure": snapshot.ranking_measure,
                "run_id": snapshot.ranking_run_id,
                "scraped_at": _iso(snapshot.ranked_at),
                "stale": ranking_stale,
            },
            "prices": {
                "source": Source.COINMARKETCAP.value,
                "run_id": snapshot.price_run_id,
                "scraped_at": _iso(snapshot.priced_at),
                "stale": prices_stale,
            },
        }


def _gzipped(plain: Rendered) -> Rendered:
    """Compressed once, beside the plain body: a representation of its own, with its own tag."""
    headers = tuple(
        (name, quote_etag(unquote_etag(value)[0] + "-gzip") if name == "ETag" else value)
        for name, value in plain.headers
    )
    body = gzip.compress(plain.body, compresslevel=6, mtime=0)
    return Rendered(body, (*headers, ("Content-Encoding", "gzip")))


def _item(coin: Coin) -> dict[str, object]:
    price = _servable(coin.price_usd)
    return {
        "rank": coin.rank,
        "symbol": coin.symbol,
        "name": coin.name,
        "price_usd": None if price is None else float(price),
    }


def _servable(price: Decimal | None) -> Decimal | None:
    """A price JSON can carry: one stored before absurd values were refused is unpriced."""
    if price is None or not price.is_finite() or not math.isfinite(float(price)):
        return None
    return price


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _csv_row(coin: Coin) -> bytes:
    price = _servable(coin.price_usd)
    price_cell = "" if price is None else f"{price:f}"
    return _csv_line((str(coin.rank), spreadsheet_safe(coin.symbol), price_cell))


def _csv_line(cells: tuple[str, ...]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue().encode()


def spreadsheet_safe(cell: str) -> str:
    """A leading quote makes a spreadsheet show the text instead of evaluating it."""
    return f"'{cell}" if cell.startswith(_FORMULA_STARTS) else cell


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
