"""CoinMarketCap Pro API client: quotes by id, the id map, listings, and the key's usage.

Every answer carries ``status``; its ``error_code`` is checked even on HTTP 200, and its
``credit_count`` is what the call cost, trusted over any documented constant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from topcoins.models import Source
from topcoins.settings import CoinMarketCapSettings, HttpSettings

from .errors import InvalidPayload, ProviderRejected, ProviderUnavailable
from .http_session import ProviderSession
from .payload import (
    asset_label,
    datetime_or_none,
    id_or_none,
    int_or_none,
    one_line,
    percent_change_or_none,
    usd_or_none,
)
from .ranking import RankedCoin, Ranking, check_length

PROVIDER = "CoinMarketCap"
QUOTES_PATH = "/v2/cryptocurrency/quotes/latest"
LISTINGS_PATH = "/v1/cryptocurrency/listings/latest"
MAP_PATH = "/v1/cryptocurrency/map"
KEY_INFO_PATH = "/v1/key/info"
MAX_LISTINGS_LIMIT = MAP_PAGE_SIZE = 5000
MAP_MAX_PAGES = 20
# Identifiers per quotes call: keeps URLs short; credits are charged per asset anyway.
QUOTES_BATCH = 200
# Documented prices, used only to estimate a spend before making it.
QUOTE_ASSETS_PER_CREDIT, LISTING_ASSETS_PER_CREDIT = 100, 200
VOLUME_MEASURE = "volume_24h"
_LIMIT_REASONS = {
    1008: "per-minute rate limit reached",
    1009: "daily credit limit reached",
    1010: "monthly credit limit reached",
    1011: "IP rate limit reached",
}


@dataclass(frozen=True)
class Quote:
    cmc_id: int
    symbol: str
    name: str
    slug: str | None
    cmc_rank: int | None
    price_usd: Decimal | None
    last_updated: datetime | None
    volume_24h: Decimal | None = None
    market_cap: Decimal | None = None
    percent_change_24h: float | None = None


@dataclass
class Quotes:
    """Quotes from one or more calls, with what they cost."""

    items: list[Quote] = field(default_factory=list)
    credit_count: int = 0

    def extend(self, other: Quotes) -> None:
        self.items.extend(other.items)
        self.credit_count += other.credit_count


@dataclass(frozen=True)
class MapAsset:
    """One row of CoinMarketCap's id map."""

    cmc_id: int
    symbol: str
    name: str
    slug: str
    rank: int | None


@dataclass
class IdMap:
    assets: list[MapAsset] = field(default_factory=list)
    credit_count: int = 0


@dataclass(frozen=True)
class CreditUsage:
    """The key's plan and usage from ``/v1/key/info``; ``None`` where the plan sets no limit."""

    credit_limit_monthly: int | None
    credits_left_monthly: int | None
    credits_left_daily: int | None
    reset_at: datetime | None


class CoinMarketCapClient:
    def __init__(
        self, settings: CoinMarketCapSettings, http: HttpSettings, *, deadline: float | None = None
    ) -> None:
        headers = {"X-CMC_PRO_API_KEY": settings.api_key}
        self._http = ProviderSession(PROVIDER, settings.base_url, http, headers, deadline=deadline)

    def close(self) -> None:
        self._http.close()

    def listings(self, *, start: int = 1, limit: int = 100, sort: str = "market_cap") -> Quotes:
        """One page of CoinMarketCap's own ranking, by market cap unless ``sort`` says other."""
        if not 1 <= limit <= MAX_LISTINGS_LIMIT or start < 1:
            raise ValueError(f"limit must be 1..{MAX_LISTINGS_LIMIT} and start >= 1")
        params: dict[str, str | int] = {"start": start, "limit": limit, "convert": "USD"}
        if sort != "market_cap":
            params.update(sort=sort, sort_dir="desc")
        status, data = self._call(LISTINGS_PATH, params)
        if not isinstance(data, list):
            raise InvalidPayload(PROVIDER, f"{LISTINGS_PATH} data is not a list")
        return Quotes([_parse_asset(asset) for asset in data], _credits(status))

    def quotes_by_symbol(self, symbols: Iterable[str]) -> Quotes:
        """Every asset carrying each symbol: v2 answers a list per symbol, in no useful order."""
        return self._quotes("symbol", sorted(set(symbols)))

    def quotes_by_id(self, ids: Iterable[int]) -> Quotes:
        """Exactly the assets asked for, billed per asset returned."""
        return self._quotes("id", [str(i) for i in sorted(set(ids))])

    def id_map(self) -> IdMap:
        """Every active asset's id, symbol, name and slug, a page of 5000 at a time."""
        result = IdMap()
        for page in range(MAP_MAX_PAGES):
            params: dict[str, str | int] = {
                "listing_status": "active",
                "start": page * MAP_PAGE_SIZE + 1,
                "limit": MAP_PAGE_SIZE,
            }
            status, data = self._call(MAP_PATH, params)
            if not isinstance(data, list):
                raise InvalidPayload(PROVIDER, f"{MAP_PATH} data is not a list")
            result.assets.extend(_parse_map_asset(item) for item in data)
            result.credit_count += _credits(status)
            if len(data) < MAP_PAGE_SIZE:
                break
        if not result.assets:
            raise InvalidPayload(PROVIDER, f"{MAP_PATH} lists no assets")
        return result

    def key_info(self) -> CreditUsage:
        """The plan's limits and what is left of them; the call itself costs no credit.

        A figure the answer lacks is ``None``, as for a plan without that limit: a changed
        format must not stop the prices, only the checks that need the figure.
        """
        _, data = self._call(KEY_INFO_PATH, {})
        plan, usage = _object(data, "plan"), _object(data, "usage")
        return CreditUsage(
            credit_limit_monthly=int_or_none(plan.get("credit_limit_monthly")),
            credits_left_monthly=int_or_none(_object(usage, "current_month").get("credits_left")),
            credits_left_daily=int_or_none(_object(usage, "current_day").get("credits_left")),
            reset_at=datetime_or_none(plan.get("credit_limit_monthly_reset_timestamp")),
        )

    def _quotes(self, key: str, values: Sequence[str]) -> Quotes:
        result = Quotes()
        for batch in _batches(values, QUOTES_BATCH):
            params: dict[str, str | int] = {
                key: ",".join(batch),
                "convert": "USD",
                "skip_invalid": "true",
            }
            status, data = self._call(QUOTES_PATH, params)
            if not isinstance(data, dict):
                raise InvalidPayload(PROVIDER, f"{QUOTES_PATH} data is not an object")
            items = [_parse_asset(asset) for asset in _flatten(data)]
            result.extend(Quotes(items, _credits(status)))
        return result

    def _call(self, path: str, params: dict[str, str | int]) -> tuple[dict[str, Any], Any]:
        http_status, payload = self._http.get_json(path, params)
        status = payload.get("status") if isinstance(payload, dict) else None
        if not isinstance(status, dict):
            if http_status >= 500 or http_status == 429:
                raise ProviderUnavailable(PROVIDER, f"HTTP {http_status} from {path}")
            raise InvalidPayload(PROVIDER, f"{path} answered without a status object")
        error_code = int_or_none(status.get("error_code"))
        if http_status != 200 or error_code not in (0, None):
            _raise_error(http_status, error_code, status, path)
        if "data" not in payload:
            raise InvalidPayload(PROVIDER, f"{path} answered without data")
        return status, payload["data"]


class CoinMarketCapRanking:
    """CoinMarketCap as the ranking provider: the top N by volume, with ids and prices."""

    source = Source.COINMARKETCAP
    measure = VOLUME_MEASURE

    def __init__(self, client: CoinMarketCapClient) -> None:
        self.client = client

    def close(self) -> None:
        self.client.close()

    def credits_for(self, count: int) -> int:
        return math.ceil(count / LISTING_ASSETS_PER_CREDIT)

    def top_by_volume(self, count: int) -> Ranking:
        quotes = self.client.listings(limit=count, sort=VOLUME_MEASURE)
        coins = [
            RankedCoin(
                rank=rank,
                symbol=quote.symbol,
                name=quote.name,
                provider_asset_id=quote.cmc_id,
                slug=quote.slug,
                cmc_id=quote.cmc_id,
                volume_24h_usd=quote.volume_24h,
                price_usd=quote.price_usd,
                price_updated_at=quote.last_updated,
                market_cap_usd=quote.market_cap,
                percent_change_24h=quote.percent_change_24h,
            )
            for rank, quote in enumerate(quotes.items[:count], start=1)
        ]
        check_length(PROVIDER, coins, count, None)
        return Ranking(coins, quotes.credit_count)


def _raise_error(http_status: int, code: int | None, status: dict[str, Any], path: str) -> None:
    reason = one_line(status.get("error_message")) or "no message"
    where = f"HTTP {http_status}, error {code} on {path}"
    if http_status == 401 or code in (1001, 1002):
        raise ProviderRejected(PROVIDER, f"key rejected: {reason} ({where})")
    if http_status in (402, 403) or code in range(1003, 1008):
        raise ProviderRejected(PROVIDER, f"plan refused the call: {reason} ({where})")
    if http_status == 429 or code in _LIMIT_REASONS:
        summary = _LIMIT_REASONS.get(code or 0, "rate limited")
        raise ProviderUnavailable(PROVIDER, f"{summary}: {reason} ({where})")
    if http_status >= 500:
        raise ProviderUnavailable(PROVIDER, f"{where}: {reason}")
    raise ProviderRejected(PROVIDER, f"{where}: {reason}")


def _object(data: Any, key: str) -> dict[str, Any]:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def _flatten(data: dict[str, Any]) -> Iterator[Any]:
    """v2 quotes map each requested key to an asset (id) or to a list of them (symbol)."""
    for value in data.values():
        if isinstance(value, list):
            yield from value
        else:
            yield value


def _parse_asset(asset: Any) -> Quote:
    if not isinstance(asset, dict):
        raise InvalidPayload(PROVIDER, "an asset is not a JSON object")
    cmc_id, symbol, name = id_or_none(asset.get("id")), asset.get("symbol"), asset.get("name")
    if cmc_id is None or not isinstance(symbol, str) or not isinstance(name, str):
        shown = one_line(asset.get("id"), 20)
        raise InvalidPayload(PROVIDER, f"asset {shown} lacks one of id, symbol, name")
    quote = asset.get("quote")
    usd = quote.get("USD") if isinstance(quote, dict) else None
    if not isinstance(usd, dict) or "price" not in usd:
        raise InvalidPayload(PROVIDER, f"asset {cmc_id} ({symbol}) has no quote.USD.price")
    slug = asset.get("slug")
    label = asset_label(cmc_id, symbol)
    price = usd_or_none(usd.get("price"), PROVIDER, label, "price_usd")
    volume = usd_or_none(usd.get("volume_24h"), PROVIDER, label, "volume_24h_usd")
    market_cap = usd_or_none(usd.get("market_cap"), PROVIDER, label, "market_cap_usd")
    return Quote(
        cmc_id=cmc_id,
        symbol=symbol,
        name=name,
        slug=slug if isinstance(slug, str) else None,
        cmc_rank=int_or_none(asset.get("cmc_rank")),
        price_usd=price,
        last_updated=datetime_or_none(usd.get("last_updated")),
        volume_24h=volume,
        market_cap=market_cap,
        percent_change_24h=percent_change_or_none(usd.get("percent_change_24h")),
    )


def _parse_map_asset(item: Any) -> MapAsset:
    if not isinstance(item, dict):
        raise InvalidPayload(PROVIDER, f"{MAP_PATH}: an asset is not a JSON object")
    cmc_id = id_or_none(item.get("id"))
    symbol, name, slug = item.get("symbol"), item.get("name"), item.get("slug")
    if cmc_id is None or not all(isinstance(v, str) and v for v in (symbol, name, slug)):
        shown = one_line(item.get("id"), 20)
        raise InvalidPayload(PROVIDER, f"{MAP_PATH}: asset {shown} lacks id, symbol, name or slug")
    return MapAsset(cmc_id, str(symbol), str(name), str(slug), int_or_none(item.get("rank")))


def _credits(status: dict[str, Any]) -> int:
    return int_or_none(status.get("credit_count")) or 0


def _batches(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for i in range(math.ceil(len(values) / size)):
        yield values[i * size : (i + 1) * size]
