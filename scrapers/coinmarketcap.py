"""CoinMarketCap Pro API client: USD quotes, by symbol, slug or id, and the listings."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from topcoins.settings import CoinMarketCapSettings, HttpSettings

from .errors import InvalidPayload, ProviderRejected, ProviderUnavailable
from .http import ProviderSession
from .payload import datetime_or_none, decimal_or_none, int_or_none, one_line

PROVIDER = "CoinMarketCap"
QUOTES_PATH = "/v2/cryptocurrency/quotes/latest"
LISTINGS_PATH = "/v1/cryptocurrency/listings/latest"
MAX_LISTINGS_LIMIT = 5000
# Identifiers per quotes call: keeps URLs short; credits are charged per asset anyway.
QUOTES_BATCH = 200


@dataclass(frozen=True)
class Quote:
    cmc_id: int
    symbol: str
    name: str
    slug: str | None
    cmc_rank: int | None
    price_usd: Decimal | None
    last_updated: datetime | None


@dataclass
class Quotes:
    """Quotes from one or more calls, with what they cost."""

    items: list[Quote] = field(default_factory=list)
    credit_count: int = 0

    def extend(self, other: Quotes) -> None:
        self.items.extend(other.items)
        self.credit_count += other.credit_count


class CoinMarketCapClient:
    def __init__(self, settings: CoinMarketCapSettings, http: HttpSettings) -> None:
        headers = {"X-CMC_PRO_API_KEY": settings.api_key}
        self._http = ProviderSession(PROVIDER, settings.base_url, http, headers)

    def close(self) -> None:
        self._http.close()

    def listings(self, *, start: int = 1, limit: int = 100) -> Quotes:
        """One page of CoinMarketCap's own market-cap ranking."""
        if not 1 <= limit <= MAX_LISTINGS_LIMIT or start < 1:
            raise ValueError(f"limit must be 1..{MAX_LISTINGS_LIMIT} and start >= 1")
        status, data = self._call(LISTINGS_PATH, {"start": start, "limit": limit, "convert": "USD"})
        if not isinstance(data, list):
            raise InvalidPayload(PROVIDER, f"{LISTINGS_PATH} data is not a list")
        return Quotes([_parse_asset(asset) for asset in data], _credits(status))

    def quotes_by_symbol(self, symbols: Iterable[str]) -> Quotes:
        """Every asset carrying each symbol: v2 answers a list per symbol, in no useful order."""
        return self._quotes("symbol", sorted(set(symbols)))

    def quotes_by_slug(self, slugs: Iterable[str]) -> Quotes:
        return self._quotes("slug", sorted(set(slugs)))

    def quotes_by_id(self, ids: Iterable[int]) -> Quotes:
        return self._quotes("id", [str(i) for i in sorted(set(ids))])

    def _quotes(self, key: str, values: Sequence[str]) -> Quotes:
        result = Quotes()
        for batch in _batches(values, QUOTES_BATCH):
            params = {key: ",".join(batch), "convert": "USD", "skip_invalid": "true"}
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
        error_code = status.get("error_code")
        if http_status != 200 or error_code not in (0, "0", None):
            reason = one_line(status.get("error_message")) or "no message"
            described = f"HTTP {http_status}, error {error_code} on {path}: {reason}"
            if http_status >= 500 or http_status == 429:
                raise ProviderUnavailable(PROVIDER, described)
            raise ProviderRejected(PROVIDER, described)
        if "data" not in payload:
            raise InvalidPayload(PROVIDER, f"{path} answered without data")
        return status, payload["data"]


def _flatten(data: dict[str, Any]) -> Iterator[Any]:
    """v2 quotes map each requested key to an asset (id, slug) or to a list (symbol)."""
    for value in data.values():
        if isinstance(value, list):
            yield from value
        else:
            yield value


def _parse_asset(asset: Any) -> Quote:
    if not isinstance(asset, dict):
        raise InvalidPayload(PROVIDER, "an asset is not a JSON object")
    cmc_id, symbol, name = int_or_none(asset.get("id")), asset.get("symbol"), asset.get("name")
    if cmc_id is None or not isinstance(symbol, str) or not isinstance(name, str):
        shown = one_line(asset.get("id"), 20)
        raise InvalidPayload(PROVIDER, f"asset {shown} lacks one of id, symbol, name")
    quote = asset.get("quote")
    usd = quote.get("USD") if isinstance(quote, dict) else None
    if not isinstance(usd, dict) or "price" not in usd:
        raise InvalidPayload(PROVIDER, f"asset {cmc_id} ({symbol}) has no quote.USD.price")
    slug = asset.get("slug")
    return Quote(
        cmc_id=cmc_id,
        symbol=symbol,
        name=name,
        slug=slug if isinstance(slug, str) else None,
        cmc_rank=int_or_none(asset.get("cmc_rank")),
        price_usd=decimal_or_none(usd.get("price")),
        last_updated=datetime_or_none(usd.get("last_updated")),
    )


def _credits(status: dict[str, Any]) -> int:
    return int_or_none(status.get("credit_count")) or 0


def _batches(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for i in range(math.ceil(len(values) / size)):
        yield values[i * size : (i + 1) * size]
