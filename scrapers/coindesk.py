"""CoinDesk Data client (CryptoCompare's current API): the top assets by 24 h spot volume."""

from __future__ import annotations

from typing import Any

from topcoins.models import Source
from topcoins.settings import CoinDeskSettings, HttpSettings

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

PROVIDER = "CoinDesk"
TOP_PATH = "/asset/v1/top/list"
MEASURE = "SPOT_MOVING_24_HOUR_QUOTE_VOLUME_USD"
MARKET_CAP = "CIRCULATING_MKT_CAP_USD"
MAX_PAGE = 1000
GROUPS = "ID,BASIC,PRICE,MKT_CAP,VOLUME,CHANGE"
RATE_LIMIT_TYPE = 99


class CoinDeskClient:
    source = Source.COINDESK
    measure = MEASURE

    def __init__(
        self, settings: CoinDeskSettings, http: HttpSettings, *, deadline: float | None = None
    ) -> None:
        headers = {"Authorization": f"Apikey {settings.api_key}"}
        self._http = ProviderSession(PROVIDER, settings.base_url, http, headers, deadline=deadline)

    def close(self) -> None:
        self._http.close()

    def credits_for(self, count: int) -> int:
        return 0

    def top_by_volume(self, count: int) -> Ranking:
        """The top ``count`` assets by spot quote volume, from page 1 (pages are 1-based)."""
        pages = range(1, MAX_PAGE + 1)
        return Ranking(collect_pages(PROVIDER, count, pages, self._get_page, _parse_item))

    def _get_page(self, page: int, page_size: int) -> Page:
        params: dict[str, str | int] = {
            "page": page,
            "page_size": page_size,
            "sort_by": MEASURE,
            "sort_direction": "DESC",
            "groups": GROUPS,
            "toplist_quote_asset": "USD",
        }
        where = f"{TOP_PATH} page {page}"
        status, payload = self._http.get_json(TOP_PATH, params)
        if not isinstance(payload, dict):
            if status >= 500 or status == 429:
                raise ProviderUnavailable(PROVIDER, f"HTTP {status} from {where}")
            raise InvalidPayload(PROVIDER, f"{where} is not a JSON object")
        if payload.get("Err"):
            raise_err(PROVIDER, status, payload["Err"], where)
        if status >= 500 or status == 429:
            raise ProviderUnavailable(PROVIDER, f"HTTP {status} from {where}")
        if status != 200:
            raise ProviderRejected(PROVIDER, f"HTTP {status} from {where}")
        data = payload.get("Data")
        if not isinstance(data, dict) or not isinstance(data.get("LIST"), list):
            raise InvalidPayload(PROVIDER, f"{where} has no Data.LIST")
        stats = data.get("STATS")
        total = stats.get("TOTAL_ASSETS") if isinstance(stats, dict) else None
        return Page(data["LIST"], total if isinstance(total, int) else None)


def raise_err(provider: str, status: int, error: Any, where: str) -> None:
    """CoinDesk Data's error envelope, which the legacy min-api now uses for a missing key.

    A non-empty ``Err`` is a failure whatever the HTTP status, 200 included.
    """
    details = error if isinstance(error, dict) else {}
    message = one_line(details.get("message")) or one_line(error) or "unspecified error"
    if status in (401, 403):
        raise ProviderRejected(provider, f"key rejected: {message} (HTTP {status})")
    if status == 429 or details.get("type") == RATE_LIMIT_TYPE:
        raise ProviderUnavailable(provider, f"rate limited: {message} (HTTP {status})")
    if status >= 500:
        raise ProviderUnavailable(provider, f"HTTP {status} from {where}: {message}")
    raise ProviderRejected(provider, f"error on {where}: {message} (HTTP {status})")


def _parse_item(item: Any, rank: int) -> RankedCoin | None:
    """Any field may be null or missing for an asset; without a ticker it cannot be shown."""
    if not isinstance(item, dict):
        return None
    symbol = text_or_none(item.get("SYMBOL"))
    name, uri = text_or_none(item.get("NAME")), text_or_none(item.get("URI"))
    if symbol is None:
        return None
    asset_id = id_or_none(item.get("ID"))
    asset = asset_label(asset_id, symbol)
    price = usd_or_none(item.get("PRICE_USD"), PROVIDER, asset, "price_usd")
    volume = usd_or_none(item.get(MEASURE), PROVIDER, asset, "volume_24h_usd")
    usd_or_none(item.get(MARKET_CAP), PROVIDER, asset, "market_cap_usd")
    return RankedCoin(
        rank=rank,
        symbol=symbol,
        name=name or symbol,
        provider_asset_id=asset_id,
        slug=uri,
        cmc_id=_cmc_id(item.get("ASSET_ALTERNATIVE_IDS")),
        volume_24h_usd=volume,
        price_usd=price,
        price_updated_at=unix_time_or_none(item.get("PRICE_USD_LAST_UPDATE_TS")),
    )


def _cmc_id(alternatives: Any) -> int | None:
    """CoinMarketCap's id among the asset's other ids: ``{"NAME": "CMC", "ID": "1"}``."""
    if not isinstance(alternatives, list):
        return None
    for entry in alternatives:
        if isinstance(entry, dict) and str(entry.get("NAME", "")).upper() == "CMC":
            value = id_or_none(entry.get("ID"))
            if value is not None:
                return value
    return None
