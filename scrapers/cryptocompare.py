"""CryptoCompare client: the ranking of assets by 24h total volume."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from topcoins.settings import CryptoCompareSettings, HttpSettings

from .errors import InvalidPayload, ProviderRejected, ProviderUnavailable
from .http import ProviderSession
from .payload import decimal_or_none, int_or_none, one_line

PROVIDER = "CryptoCompare"
TOP_PATH = "/data/top/totalvolfull"
PAGE_SIZE = 100
MIN_PAGE_SIZE = 10


@dataclass(frozen=True)
class RankedCoin:
    rank: int
    symbol: str
    name: str
    cryptocompare_id: int | None
    volume_24h_usd: Decimal | None
    price_usd: Decimal | None


class CryptoCompareClient:
    def __init__(self, settings: CryptoCompareSettings, http: HttpSettings) -> None:
        headers = {"Authorization": f"Apikey {settings.api_key}"} if settings.api_key else {}
        self._http = ProviderSession(PROVIDER, settings.base_url, http, headers)

    def close(self) -> None:
        self._http.close()

    def top_by_volume(self, count: int) -> list[RankedCoin]:
        """The top ``count`` assets, paging from page 0; advertising is not part of it."""
        coins: list[RankedCoin] = []
        page = 0
        page_size = max(MIN_PAGE_SIZE, min(PAGE_SIZE, count))
        available: int | None = None
        while len(coins) < count:
            payload = self._get_page(page, page_size)
            available = _metadata_count(payload, available)
            entries = payload["Data"]
            for entry in entries:
                coins.append(_parse_entry(entry, rank=len(coins) + 1))
            if len(entries) < page_size:
                break
            page += 1
        coins = coins[:count]
        expected = count if available is None else min(count, available)
        if not coins or len(coins) < expected:
            raise InvalidPayload(PROVIDER, f"ranking holds {len(coins)} coins, expected {expected}")
        return coins

    def _get_page(self, page: int, limit: int) -> dict[str, Any]:
        status, payload = self._http.get_json(
            TOP_PATH, {"tsym": "USD", "limit": limit, "page": page}
        )
        if not isinstance(payload, dict):
            raise InvalidPayload(PROVIDER, f"{TOP_PATH} page {page} is not a JSON object")
        if payload.get("Response") == "Error":
            message = one_line(payload.get("Message")) or "unspecified error"
            if _is_rate_limit(payload):
                raise ProviderUnavailable(PROVIDER, f"rate limited: {message}")
            raise ProviderRejected(PROVIDER, f"error on {TOP_PATH} page {page}: {message}")
        if status >= 500 or status == 429:
            raise ProviderUnavailable(PROVIDER, f"HTTP {status} from {TOP_PATH} page {page}")
        if status != 200:
            raise ProviderRejected(PROVIDER, f"HTTP {status} from {TOP_PATH} page {page}")
        if not isinstance(payload.get("Data"), list):
            raise InvalidPayload(PROVIDER, f"{TOP_PATH} page {page} has no Data list")
        return payload


def _metadata_count(payload: dict[str, Any], previous: int | None) -> int | None:
    metadata = payload.get("MetaData")
    if isinstance(metadata, dict) and isinstance(metadata.get("Count"), int):
        return metadata["Count"]
    return previous


def _parse_entry(entry: Any, *, rank: int) -> RankedCoin:
    info = entry.get("CoinInfo") if isinstance(entry, dict) else None
    if not isinstance(info, dict):
        raise InvalidPayload(PROVIDER, f"entry at rank {rank} has no CoinInfo")
    symbol, name = info.get("Name"), info.get("FullName")
    if not isinstance(symbol, str) or not symbol.strip():
        raise InvalidPayload(PROVIDER, f"entry at rank {rank} has no CoinInfo.Name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidPayload(PROVIDER, f"entry at rank {rank} ({symbol}) has no CoinInfo.FullName")
    raw = entry.get("RAW")
    usd = raw.get("USD") if isinstance(raw, dict) else None
    usd = usd if isinstance(usd, dict) else {}
    return RankedCoin(
        rank=rank,
        symbol=symbol.strip(),
        name=name.strip(),
        cryptocompare_id=int_or_none(info.get("Id")),
        volume_24h_usd=decimal_or_none(usd.get("TOTALVOLUME24HTO")),
        price_usd=decimal_or_none(usd.get("PRICE")),
    )


def _is_rate_limit(payload: dict[str, Any]) -> bool:
    if payload.get("Type") == 99:
        return True
    return "rate limit" in str(payload.get("Message", "")).lower()
