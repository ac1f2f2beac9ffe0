"""Fake CoinDesk Data API (CryptoCompare's current API): ``/asset/v1/top/list`` and its errors.

It serves the same ranking as the legacy CryptoCompare fake. ``ID``, ``SYMBOL``, ``NAME``,
``PRICE_USD``, the volume and the CoinMarketCap id come from the market; the other fields are
derived deterministically from the coin id, like the legacy fake's.
"""

from __future__ import annotations

import enum
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from fakeproviders.market import Market, RankedCoin, render_json

CONTENT_TYPE = "application/json; charset=UTF-8"
TOP_LIST_PATH = "/asset/v1/top/list"
MIN_PAGE, MAX_PAGE, DEFAULT_PAGE = 1, 1000, 1
MIN_PAGE_SIZE, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE = 10, 100, 100
VOLUME = "SPOT_MOVING_24_HOUR_QUOTE_VOLUME_USD"
MARKET_CAP = "CIRCULATING_MKT_CAP_USD"
SORT_FIELDS = (MARKET_CAP, VOLUME, "CREATED_ON", "LAUNCH_DATE")
SORT_DIRECTIONS = ("DESC", "ASC")
QUOTE_ASSET = "USD"
SHORT_LENGTH = 3
PARAMETER_ERROR, AUTH_ERROR, SERVER_ERROR, RATE_LIMIT_ERROR = 1, 2, 5, 99

_TOKEN_SHARE = 0.4
_NO_LAUNCH_DATE_SHARE = 0.15
_CREATED_FROM = int(datetime(2017, 1, 1, tzinfo=UTC).timestamp())
_CREATED_UNTIL = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp())
_LAUNCHED_FROM = int(datetime(2009, 1, 3, tzinfo=UTC).timestamp())
_DAY = 86_400
_MAX_CALLS = {"second": 20, "minute": 300, "hour": 3000, "day": 7500, "month": 25000}


class KeyCheck(enum.Enum):
    ACCEPTED = "accepted"
    MISSING = "missing"
    INVALID = "invalid"


def check_key(api_key: str | None) -> KeyCheck:
    """Shared with the legacy fake: both hosts take the same ``Authorization: Apikey`` header."""
    if api_key is None:
        return KeyCheck.ACCEPTED
    header = request.headers.get("Authorization", "").strip()
    if not header:
        return KeyCheck.MISSING
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "apikey" and credentials.strip() == api_key:
        return KeyCheck.ACCEPTED
    return KeyCheck.INVALID


def create_app(
    market: Market, *, api_key: str | None = None, drift_rng: random.Random | None = None
) -> Flask:
    """``drift_rng`` makes page 1 occasionally swap two neighbours, like a live ranking does."""
    app = Flask(__name__)

    @app.get(TOP_LIST_PATH)
    def top_list() -> Response:
        key = check_key(api_key)
        if key is KeyCheck.MISSING:
            return key_required_response()
        if key is KeyCheck.INVALID:
            return error_response(401, AUTH_ERROR, "The API key you supplied is invalid.")
        page = _int_param("page", DEFAULT_PAGE, MIN_PAGE, MAX_PAGE)
        if page is None:
            return parameter_error("page", f"must be an integer from {MIN_PAGE} to {MAX_PAGE}")
        page_size = _int_param("page_size", DEFAULT_PAGE_SIZE, MIN_PAGE_SIZE, MAX_PAGE_SIZE)
        if page_size is None:
            return parameter_error(
                "page_size", f"must be an integer from {MIN_PAGE_SIZE} to {MAX_PAGE_SIZE}"
            )
        sort_by = _choice("sort_by", MARKET_CAP, SORT_FIELDS)
        if sort_by is None:
            return parameter_error("sort_by", f"must be one of {', '.join(SORT_FIELDS)}")
        direction = _choice("sort_direction", "DESC", SORT_DIRECTIONS)
        if direction is None:
            return parameter_error("sort_direction", "must be DESC or ASC")
        if _choice("toplist_quote_asset", QUOTE_ASSET, (QUOTE_ASSET,)) is None:
            return parameter_error("toplist_quote_asset", f"only {QUOTE_ASSET} is available")
        if page == 1 and drift_rng is not None:
            market.maybe_swap_neighbours(drift_rng)
        now = int(time.time())
        with market.lock:
            items = top_items(market.ranking, now)
        ordered = sorted(items, key=lambda item: item["TOPLIST_BASE_RANK"][sort_by])
        if direction == "ASC":
            ordered.reverse()
        start = (page - 1) * page_size
        stats = {"PAGE": page, "PAGE_SIZE": page_size, "TOTAL_ASSETS": len(items)}
        return json_response(
            {"Data": {"STATS": stats, "LIST": ordered[start : start + page_size]}, "Err": {}}
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 404:
            return error_response(404, PARAMETER_ERROR, "Path does not exist.")
        return error_response(status, PARAMETER_ERROR, str(error.description))

    return app


def _int_param(name: str, default: int, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if low <= value <= high else None


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return default
    value = raw.upper()
    return value if value in allowed else None


def json_response(
    payload: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(render_json(payload), status=status, content_type=CONTENT_TYPE, headers=headers)


def error_body(
    status: int, error_type: int, message: str, other_info: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "Data": {},
        "Err": {
            "type": error_type,
            "message": message,
            "http_status_code": status,
            "other_info": other_info or {},
        },
    }


def error_response(
    status: int,
    error_type: int,
    message: str,
    *,
    other_info: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return json_response(
        error_body(status, error_type, message, other_info), status=status, headers=headers
    )


def key_required_response() -> Response:
    """Also what the legacy host answers without a key since the free tier ended (2026-05-21)."""
    return error_response(
        401,
        AUTH_ERROR,
        "API key required. Requests without a valid API key are no longer served; create a key "
        "in your CoinDesk Data account and send it as 'Authorization: Apikey <key>'.",
    )


def parameter_error(name: str, problem: str) -> Response:
    return error_response(
        400,
        PARAMETER_ERROR,
        f"Invalid parameter {name}: {problem}.",
        other_info={"param": name, "values": request.args.getlist(name)},
    )


def _limit_response(window: str, message: str, retry_after: str | None) -> Response:
    calls_made = dict.fromkeys(_MAX_CALLS, 1)
    calls_made.update({"hour": 12, "day": 140, "month": 2100})
    calls_made[window] = _MAX_CALLS[window] + 1
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return error_response(
        429,
        RATE_LIMIT_ERROR,
        message,
        other_info={"calls_made": calls_made, "max_calls": dict(_MAX_CALLS)},
        headers=headers,
    )


def rate_limited_response(retry_after: str | None) -> Response:
    return _limit_response(
        "minute", "You are over your rate limit please upgrade your account!", retry_after
    )


def daily_limit_response(retry_after: str | None) -> Response:
    return _limit_response(
        "day", "You are over your daily rate limit please upgrade your account!", retry_after
    )


def monthly_limit_response(retry_after: str | None) -> Response:
    return _limit_response(
        "month", "You are over your monthly rate limit please upgrade your account!", retry_after
    )


def ip_rate_limited_response(retry_after: str | None) -> Response:
    return _limit_response(
        "second", "Too many requests from your IP address, please slow down.", retry_after
    )


def error_payload_response() -> Response:
    """HTTP 200 whose ``Err`` says it failed: a client must not trust the status line alone."""
    return json_response(
        error_body(
            500, SERVER_ERROR, "We could not compute the top list right now, please try again."
        )
    )


def server_error_response() -> Response:
    return error_response(500, SERVER_ERROR, "Internal server error, please try again later.")


def _is_success(payload: Any) -> bool:
    return (
        isinstance(payload, dict)
        and not payload.get("Err")
        and isinstance(payload.get("Data"), dict)
        and isinstance(payload["Data"].get("LIST"), list)
    )


def empty_payload(payload: Any) -> Any:
    if _is_success(payload):
        payload["Data"]["LIST"] = []
    return payload


def short_payload(payload: Any) -> Any:
    if _is_success(payload):
        payload["Data"]["LIST"] = payload["Data"]["LIST"][:SHORT_LENGTH]
    return payload


def missing_fields_payload(payload: Any) -> Any:
    if _is_success(payload):
        for item in payload["Data"]["LIST"]:
            item.pop("SYMBOL", None)
    return payload


def uri(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def top_items(ranking: list[RankedCoin], now: int) -> list[dict[str, Any]]:
    """Every ranked coin, in ranking order; ranks per metric need the whole list."""
    items = [item(coin, now) for coin in ranking]
    positions = range(len(items))
    ranks = {
        field: sorted(positions, key=_descending(items, field))
        for field in ("CREATED_ON", "LAUNCH_DATE", MARKET_CAP)
    }
    ranks[VOLUME] = list(positions)
    for field, order in ranks.items():
        for rank, position in enumerate(order, start=1):
            items[position]["TOPLIST_BASE_RANK"][field] = rank
    return items


def _descending(items: list[dict[str, Any]], field: str) -> Callable[[int], tuple[bool, float]]:
    """Largest first, nulls last, ties in ranking order (``sorted`` is stable)."""

    def key(position: int) -> tuple[bool, float]:
        value = items[position][field]
        return (value is None, -float(value or 0))

    return key


def item(coin: RankedCoin, now: int) -> dict[str, Any]:
    """One asset before its ``TOPLIST_BASE_RANK`` is filled in by ``top_items``."""
    rng = random.Random(coin.cc_id)
    token = rng.random() < _TOKEN_SHARE
    change_pct = rng.uniform(-8, 8)
    market_cap = round(float(coin.volume_24h) * rng.uniform(5, 60), 2)
    updated = now - rng.randint(0, 30)
    created = rng.randint(_CREATED_FROM, _CREATED_UNTIL)
    launched = rng.randint(_LAUNCHED_FROM, created) // _DAY * _DAY
    launch_known = rng.random() >= _NO_LAUNCH_DATE_SHARE
    alternative_form = rng.randrange(4)
    cmc_first = rng.random() < 0.5
    priced = coin.price is not None
    slug = uri(coin.full_name)
    result: dict[str, Any] = {
        "TYPE": "162",
        "ID": coin.cc_id,
        "SYMBOL": coin.symbol.rstrip("*"),
        "URI": slug,
        "ASSET_TYPE": "TOKEN" if token else "BLOCKCHAIN",
        "NAME": coin.full_name,
        "CREATED_ON": created,
        "LAUNCH_DATE": launched if launch_known else None,
        "PRICE_USD": coin.price,
        "PRICE_USD_SOURCE": "cadli",
        "PRICE_USD_LAST_UPDATE_TS": updated if priced else None,
        VOLUME: coin.volume_24h,
        MARKET_CAP: market_cap if priced else 0,
        "SPOT_MOVING_24_HOUR_CHANGE_PERCENTAGE_USD": change_pct if priced else None,
        "TOPLIST_BASE_RANK": {},
    }
    coingecko = {"NAME": "CG", "ID": slug}
    if coin.coindesk_cmc_id is not None:
        coinmarketcap = {"NAME": "CMC", "ID": str(coin.coindesk_cmc_id)}
        pair = [coinmarketcap, coingecko] if cmc_first else [coingecko, coinmarketcap]
        result["ASSET_ALTERNATIVE_IDS"] = pair
    elif alternative_form == 1:
        result["ASSET_ALTERNATIVE_IDS"] = None
    elif alternative_form == 2:
        result["ASSET_ALTERNATIVE_IDS"] = []
    elif alternative_form == 3:
        result["ASSET_ALTERNATIVE_IDS"] = [coingecko]
    return result
