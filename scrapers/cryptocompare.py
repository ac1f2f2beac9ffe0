"""CryptoCompare's legacy min-api client: the ranking of assets by 24 h total volume.

Upstream moved to CoinDesk Data (``scrapers.coindesk``); this endpoint is still served,
but only with a key since 2026-05-21.  Errors arrive in two forms: the legacy HTTP 200
``"Response": "Error"`` body, and the newer HTTP 401 ``{"Data": {}, "Err": {...}}``.
"""

from __future__ import annotations

from typing import Any

from topcoins.models import Source
from topcoins.settings import CryptoCompareSettings, HttpSettings

from .coindesk import raise_err
from .errors import InvalidPayload, ProviderRejected, ProviderUnavailable
from .http_session import ProviderSession
from .payload import (
    asset_label,
    id_or_none,
    one_line,
    text_or_none,
    unix_time_or_none,
    usd_or_none,
)
from .ranking import Page, RankedCoin, Ranking, collect_pages

PROVIDER = "CryptoCompare"
TOP_PATH = "/data/top/totalvolfull"
MEASURE = "TOTALVOLUME24HTO"
MAX_PAGES = 100
# The legacy error ``Type`` of a rejected or missing key.
KEY_ERROR_TYPE = 1


class CryptoCompareClient:
    source = Source.CRYPTOCOMPARE
    measure = MEASURE

    def __init__(
        self, settings: CryptoCompareSettings, http: HttpSettings, *, deadline: float | None = None
    ) -> None:
        headers = {"Authorization": f"Apikey {settings.api_key}"}
        self._http = ProviderSession(PROVIDER, settings.base_url, http, headers, deadline=deadline)

    def close(self) -> None:
        self._http.close()

    def credits_for(self, count: int) -> int:
        return 0

    def top_by_volume(self, count: int) -> Ranking:
        """The top ``count`` assets, paging from page 0; advertising is not part of it."""
        pages = range(MAX_PAGES)
        return Ranking(collect_pages(PROVIDER, count, pages, self._get_page, _parse_entry))

    def _get_page(self, page: int, limit: int) -> Page:
        status, payload = self._http.get_json(
            TOP_PATH, {"tsym": "USD", "limit": limit, "page": page}
        )
        if not isinstance(payload, dict):
            if status >= 500 or status == 429:
                raise ProviderUnavailable(PROVIDER, f"HTTP {status} from {TOP_PATH} page {page}")
            raise InvalidPayload(PROVIDER, f"{TOP_PATH} page {page} is not a JSON object")
        if payload.get("Err"):
            raise_err(PROVIDER, status, payload["Err"], f"{TOP_PATH} page {page}")
        if payload.get("Response") == "Error":
            message = one_line(payload.get("Message")) or "unspecified error"
            if _is_rate_limit(payload):
                raise ProviderUnavailable(PROVIDER, f"rate limited: {message}")
            if _is_key_error(payload):
                raise ProviderRejected(PROVIDER, f"key rejected: {message}")
            raise ProviderRejected(PROVIDER, f"error on {TOP_PATH} page {page}: {message}")
        if status >= 500 or status == 429:
            raise ProviderUnavailable(PROVIDER, f"HTTP {status} from {TOP_PATH} page {page}")
        if status != 200:
            raise ProviderRejected(PROVIDER, f"HTTP {status} from {TOP_PATH} page {page}")
        if not isinstance(payload.get("Data"), list):
            raise InvalidPayload(PROVIDER, f"{TOP_PATH} page {page} has no Data list")
        return Page(payload["Data"], _metadata_count(payload))


def _metadata_count(payload: dict[str, Any]) -> int | None:
    """Older answers have no ``MetaData``: then only a short page says where the ranking ends."""
    metadata = payload.get("MetaData")
    if isinstance(metadata, dict) and isinstance(metadata.get("Count"), int):
        return int(metadata["Count"])
    return None


def _parse_entry(entry: Any, rank: int) -> RankedCoin | None:
    """An entry without a ticker cannot be shown; ``RAW`` is missing without market data."""
    info = entry.get("CoinInfo") if isinstance(entry, dict) else None
    symbol = text_or_none(info.get("Name")) if isinstance(info, dict) else None
    if info is None or symbol is None:
        return None
    raw = entry.get("RAW")
    usd = raw.get("USD") if isinstance(raw, dict) else None
    usd = usd if isinstance(usd, dict) else {}
    asset_id = id_or_none(info.get("Id"))
    asset = asset_label(asset_id, symbol)
    price = usd_or_none(usd.get("PRICE"), PROVIDER, asset, "price_usd")
    volume = usd_or_none(usd.get(MEASURE), PROVIDER, asset, "volume_24h_usd")
    usd_or_none(usd.get("MKTCAP"), PROVIDER, asset, "market_cap_usd")
    return RankedCoin(
        rank=rank,
        # "HOT*": CryptoCompare stars a ticker that another of its assets also uses.
        symbol=symbol.rstrip("*") or symbol,
        name=text_or_none(info.get("FullName")) or symbol,
        provider_asset_id=asset_id,
        volume_24h_usd=volume,
        price_usd=price,
        price_updated_at=unix_time_or_none(usd.get("LASTUPDATE")),
    )


def _is_rate_limit(payload: dict[str, Any]) -> bool:
    if payload.get("Type") == 99:
        return True
    return "rate limit" in str(payload.get("Message", "")).lower()


def _is_key_error(payload: dict[str, Any]) -> bool:
    message = str(payload.get("Message", "")).lower()
    return payload.get("Type") == KEY_ERROR_TYPE or "api key" in message
