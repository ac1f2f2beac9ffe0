"""The served top list: one snapshot pair, rendered for any limit in time linear to it.

Every response for one (ranking run, price run) pair is the same but for the limit, the
format and whether the data is stale by now, so each coin is rendered once when the list
is loaded, a body is those pieces joined, and only a few recent bodies are kept: memory
stays linear in the ranking's length however many limits clients ask for.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlencode

from werkzeug.http import http_date, quote_etag, unquote_etag

from topcoins.models import Source

# The JSON fields of a coin, in the order served; ``fields=`` picks among them.
FIELDS = (
    "rank",
    "symbol",
    "name",
    "cmc_id",
    "provider_asset_id",
    "price_usd",
    "price_updated_at",
    "volume_24h_usd",
    "market_cap_usd",
    "percent_change_24h",
)
# CSV without ``fields=`` is what it always was.
CSV_FIELDS = ("rank", "symbol", "price_usd")
CSV_HEADER = ("Rank", "Symbol", "Price USD")
MEDIA_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8"}
# Bodies kept per list: enough for the few shapes (and encodings) clients really ask for.
RENDERED_KEPT = 32
# A cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Single-precision columns hold seven significant digits; more would be noise.
_REAL_DIGITS = 7


@dataclass(frozen=True)
class Coin:
    rank: int
    symbol: str
    name: str
    price_usd: Decimal | None
    cmc_id: int | None = None
    provider_asset_id: int | None = None
    volume_24h_usd: float | None = None
    market_cap_usd: float | None = None
    percent_change_24h: float | None = None
    price_updated_at: datetime | None = None


@dataclass(frozen=True)
class Query:
    """What a request asks of the list, checked (``api.list_endpoint``): one memoised body each."""

    limit: int
    offset: int = 0
    fmt: str = "json"
    symbols: tuple[str, ...] | None = None
    ids: tuple[int, ...] | None = None
    fields: tuple[str, ...] | None = None

    def with_offset(self, offset: int) -> Query:
        return replace(self, offset=offset)

    def query_string(self) -> str:
        """The query naming this page: what a ``Link`` points to."""
        params: list[tuple[str, object]] = [
            ("limit", self.limit),
            ("offset", self.offset),
            ("format", self.fmt),
        ]
        if self.symbols is not None:
            params.append(("symbols", ",".join(self.symbols)))
        if self.ids is not None:
            params.append(("ids", ",".join(map(str, self.ids))))
        if self.fields is not None:
            params.append(("fields", ",".join(self.fields)))
        return urlencode(params, safe=",*$@")


@dataclass(frozen=True)
class Rendered:
    """A complete response for one (query, staleness, encoding): body and headers."""

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


@dataclass(frozen=True)
class Selection:
    """The coins a query selects, by position in the list, and the names it did not find."""

    positions: Sequence[int]
    unknown_symbols: tuple[str, ...] | None
    unknown_ids: tuple[int, ...] | None


class TopList:
    """One snapshot pair as served."""

    def __init__(self, coins: tuple[Coin, ...], snapshot: Snapshot, stale_after: float) -> None:
        self.coins = coins
        self.snapshot = snapshot
        self.stale_after = stale_after
        self._json_items = [_item(coin, FIELDS) for coin in coins]
        self._csv_rows = [csv_line(_cells(coin, CSV_FIELDS)) for coin in coins]
        self._unpriced = [_servable(coin.price_usd) is None for coin in coins]
        self._by_symbol: dict[str, list[int]] = {}
        self._by_id: dict[int, list[int]] = {}
        for position, coin in enumerate(coins):
            self._by_symbol.setdefault(coin.symbol.upper(), []).append(position)
            if coin.cmc_id is not None:
                self._by_id.setdefault(coin.cmc_id, []).append(position)
        self._rendered: OrderedDict[tuple[Query, bool, bool, bool], Rendered] = OrderedDict()
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

    def render(self, query: Query, now: float, gzipped: bool = False) -> Rendered:
        ranking_stale, prices_stale = self.staleness(now)
        key = (query, ranking_stale, prices_stale, gzipped)
        with self._lock:
            cached = self._rendered.get(key)
            if cached is not None:
                self._rendered.move_to_end(key)
                return cached
        if gzipped:
            rendered = _gzipped(self.render(query, now))
        else:
            rendered = self._render(query, ranking_stale, prices_stale)
        with self._lock:
            self._rendered[key] = rendered
            while len(self._rendered) > RENDERED_KEPT:
                self._rendered.popitem(last=False)
        return rendered

    def select(self, query: Query) -> Selection:
        """Coins by ticker (any case) or CoinMarketCap id, in rank order; all without either."""
        if query.symbols is None and query.ids is None:
            return Selection(range(len(self.coins)), None, None)
        chosen: set[int] = set()
        unknown_symbols = unknown_ids = None
        if query.symbols is not None:
            found = [self._by_symbol.get(symbol.upper()) for symbol in query.symbols]
            unknown_symbols = tuple(s for s, f in zip(query.symbols, found, strict=True) if not f)
            chosen.update(p for positions in found if positions for p in positions)
        if query.ids is not None:
            found_ids = [self._by_id.get(cmc_id) for cmc_id in query.ids]
            unknown_ids = tuple(i for i, f in zip(query.ids, found_ids, strict=True) if not f)
            chosen.update(p for positions in found_ids if positions for p in positions)
        return Selection(sorted(chosen), unknown_symbols, unknown_ids)

    def _render(self, query: Query, ranking_stale: bool, prices_stale: bool) -> Rendered:
        selection = self.select(query)
        page = selection.positions[query.offset : query.offset + query.limit]
        if query.fmt == "csv":
            if query.fields is None:
                body = csv_line(CSV_HEADER) + b"".join(self._csv_rows[i] for i in page)
            else:
                rows = [_cells(self.coins[i], query.fields) for i in page]
                body = b"".join(csv_line(row) for row in (query.fields, *rows))
        else:
            if query.fields is None:
                items = b",".join(self._json_items[i] for i in page)
            else:
                items = b",".join(_item(self.coins[i], query.fields) for i in page)
            meta = self._meta(query, selection, page, ranking_stale, prices_stale)
            body = b'{"data":[' + items + b'],"meta":' + json_bytes(meta) + b"}"
        snapshot = self.snapshot
        shape = hashlib.blake2s(repr(query).encode(), digest_size=8).hexdigest()
        tag = f"r{snapshot.ranking_run_id}-p{snapshot.price_run_id}-{shape}"
        if ranking_stale or prices_stale:
            tag += "-stale"
        headers = [
            ("Content-Type", MEDIA_TYPES[query.fmt]),
            ("ETag", quote_etag(tag)),
            ("Last-Modified", http_date(self.last_modified)),
            ("Cache-Control", "no-cache"),
            ("Vary", "Accept, Accept-Encoding"),
        ]
        links = _links(query, len(selection.positions))
        if links:
            headers.append(("Link", links))
        return Rendered(body, tuple(headers))

    def _meta(
        self,
        query: Query,
        selection: Selection,
        page: Sequence[int],
        ranking_stale: bool,
        prices_stale: bool,
    ) -> dict[str, object]:
        snapshot = self.snapshot
        meta: dict[str, object] = {
            "count": len(page),
            "total": len(selection.positions),
            "offset": query.offset,
            "limit": query.limit,
            "unpriced": sum(self._unpriced[i] for i in page),
            "stale": ranking_stale or prices_stale,
        }
        if selection.unknown_symbols is not None:
            meta["unknown_symbols"] = list(selection.unknown_symbols)
        if selection.unknown_ids is not None:
            meta["unknown_ids"] = list(selection.unknown_ids)
        meta["ranking"] = {
            "source": snapshot.ranking_source,
            "measure": snapshot.ranking_measure,
            "run_id": snapshot.ranking_run_id,
            "scraped_at": iso(snapshot.ranked_at),
            "stale": ranking_stale,
        }
        meta["prices"] = {
            "source": Source.COINMARKETCAP.value,
            "run_id": snapshot.price_run_id,
            "scraped_at": iso(snapshot.priced_at),
            "stale": prices_stale,
        }
        return meta


def _links(query: Query, total: int) -> str:
    """RFC 8288 links to the neighbouring pages, relative to wherever the list is mounted."""
    links = []
    if query.offset + query.limit < total:
        following = query.with_offset(query.offset + query.limit)
        links.append(f'<?{following.query_string()}>; rel="next"')
    if query.offset > 0:
        previous = max(0, min(query.offset, total) - query.limit)
        links.append(f'<?{query.with_offset(previous).query_string()}>; rel="prev"')
    return ", ".join(links)


def _gzipped(plain: Rendered) -> Rendered:
    """Compressed once, beside the plain body: a representation of its own, with its own tag."""
    headers = tuple(
        (name, quote_etag(unquote_etag(value)[0] + "-gzip") if name == "ETag" else value)
        for name, value in plain.headers
    )
    body = gzip.compress(plain.body, compresslevel=6, mtime=0)
    return Rendered(body, (*headers, ("Content-Encoding", "gzip")))


def _item(coin: Coin, fields: Sequence[str]) -> bytes:
    """A coin as a JSON object; a price is written as the stored decimal's own digits.

    ``json`` would write a float's shortest repr, and a ``Decimal`` not at all: a JSON
    number has no precision limit, so 18 significant digits or 1e-12 are written as stored.
    """
    members = (json_bytes(name) + b":" + _json_value(name, coin) for name in fields)
    return b"{" + b",".join(members) + b"}"


def _json_value(name: str, coin: Coin) -> bytes:
    value = _VALUES[name](coin)
    if isinstance(value, Decimal):
        return f"{value:f}".encode()
    return json_bytes(value)


def _price(coin: Coin) -> Decimal | None:
    return _servable(coin.price_usd)


def decimal_text(price: Decimal | None) -> str | None:
    """A stored price as served, in plain notation; ``None`` if unservable."""
    servable = _servable(price)
    return None if servable is None else f"{servable:f}"


def _real(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.{_REAL_DIGITS}g}")


def _moment(value: datetime | None) -> str | None:
    return None if value is None else iso(value)


_VALUES: dict[str, Callable[[Coin], object]] = {
    "rank": lambda coin: coin.rank,
    "symbol": lambda coin: coin.symbol,
    "name": lambda coin: coin.name,
    "cmc_id": lambda coin: coin.cmc_id,
    "provider_asset_id": lambda coin: coin.provider_asset_id,
    "price_usd": _price,
    "price_updated_at": lambda coin: _moment(coin.price_updated_at),
    "volume_24h_usd": lambda coin: _real(coin.volume_24h_usd),
    "market_cap_usd": lambda coin: coin.market_cap_usd,
    "percent_change_24h": lambda coin: _real(coin.percent_change_24h),
}


def _servable(price: Decimal | None) -> Decimal | None:
    """A price JSON can carry: one stored before absurd values were refused is unpriced."""
    if price is None or not price.is_finite() or not math.isfinite(float(price)):
        return None
    return price


def json_bytes(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _cells(coin: Coin, fields: Sequence[str]) -> tuple[str, ...]:
    return tuple(_cell(_VALUES[name](coin)) for name in fields)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return spreadsheet_safe(value)
    if isinstance(value, Decimal):
        return f"{value:f}"
    return repr(value)


def csv_line(cells: tuple[str, ...]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue().encode()


def spreadsheet_safe(cell: str) -> str:
    """A leading quote makes a spreadsheet show the text instead of evaluating it."""
    return f"'{cell}" if cell.startswith(_FORMULA_STARTS) else cell


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
