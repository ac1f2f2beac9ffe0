"""Fake CoinMarketCap Pro API: listings and v2 quotes with the real payload and error shapes.

Only ``id``, ``name``, ``symbol``, ``slug``, ``cmc_rank`` and ``quote.USD.price`` come from the
market; the other fields are derived deterministically from the asset id so payloads carry the
full field set of the recorded listings page.
"""

from __future__ import annotations

import math
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from fakeproviders.market import CmcAsset, Market, render_json

CONTENT_TYPE = "application/json; charset=utf-8"
API_KEY_HEADER = "X-CMC_PRO_API_KEY"
RAW_HEADERS_ENVIRON_KEY = "fakeproviders.raw_headers"
LISTINGS_PATH = "/v1/cryptocurrency/listings/latest"
QUOTES_PATH = "/v2/cryptocurrency/quotes/latest"
MAX_LIMIT, DEFAULT_LIMIT = 5000, 100
LISTING_ASSETS_PER_CREDIT, QUOTE_ASSETS_PER_CREDIT = 200, 100
SHORT_LENGTH = 3

_TAGS = [
    ("mineable", "Mineable", "OTHERS"),
    ("pow", "PoW", "ALGORITHM"),
    ("defi", "DeFi", "CATEGORY"),
    ("layer-1", "Layer 1", "CATEGORY"),
    ("smart-contracts", "Smart Contracts", "CATEGORY"),
    ("payments", "Payments", "CATEGORY"),
    ("ethereum-ecosystem", "Ethereum Ecosystem", "PLATFORM"),
    ("binance-labs-portfolio", "Binance Labs Portfolio", "CATEGORY"),
    ("governance", "Governance", "CATEGORY"),
    ("memes", "Memes", "CATEGORY"),
]
_ETHEREUM = {"id": 1027, "name": "Ethereum", "symbol": "ETH", "slug": "ethereum"}
_TOTAL_MARKET_CAP = 3.2e12


def create_app(market: Market, *, api_key: str, drift_rng: random.Random | None = None) -> Flask:
    """``drift_rng`` makes every quotes/listings request move prices a little first."""
    app = Flask(__name__)

    @app.before_request
    def authenticate() -> Response | None:
        supplied = _supplied_key()
        if not supplied:
            return error_response(401, 1002, "API key missing.")
        if supplied != api_key:
            return error_response(401, 1001, "This API Key is invalid.")
        return None

    @app.get(LISTINGS_PATH)
    def listings() -> Response:
        started = time.monotonic()
        start, start_problem = _positive_int("start", 1, None)
        limit, limit_problem = _positive_int("limit", DEFAULT_LIMIT, MAX_LIMIT)
        problem = start_problem or limit_problem or _convert_problem()
        if problem is not None:
            return error_response(400, 400, problem)
        if drift_rng is not None:
            market.drift_prices(drift_rng)
        now = datetime.now(UTC)
        with market.lock:
            ranked = [asset for asset in market.assets if asset.cmc_rank is not None]
            page = ranked[start - 1 : start - 1 + limit]
            data = [asset_payload(asset, now) for asset in page]
            total = len(ranked)
        credits = _credits(len(data), LISTING_ASSETS_PER_CREDIT)
        return json_response({"status": status(started, credits, total_count=total), "data": data})

    @app.get(QUOTES_PATH)
    def quotes() -> Response:
        started = time.monotonic()
        given = [name for name in ("id", "slug", "symbol") if request.args.get(name)]
        if not given:
            return error_response(
                400, 400, '"value" must contain at least one of [id, symbol, slug]'
            )
        if len(given) > 1:
            return error_response(
                400, 400, '"value" contains a conflict between exclusive peers [id, symbol, slug]'
            )
        problem = _convert_problem()
        if problem is not None:
            return error_response(400, 400, problem)
        kind = given[0]
        wanted = _split_list(request.args[kind])
        skip_invalid = request.args.get("skip_invalid", "true").strip().lower() != "false"
        if drift_rng is not None:
            market.drift_prices(drift_rng)
        now = datetime.now(UTC)
        with market.lock:
            found, missing = _lookup(market.assets, kind, wanted)
            if missing and not skip_invalid:
                plural = "s" if len(missing) > 1 else ""
                return error_response(
                    400, 400, f'Invalid value{plural} for "{kind}": "{",".join(missing)}"'
                )
            data: dict[str, Any] = {}
            returned = 0
            for key, assets in found.items():
                if kind == "symbol":
                    data[key] = [quote_payload(asset, now) for asset in assets]
                else:
                    data[key] = quote_payload(assets[0], now)
                returned += len(assets)
        credits = _credits(returned, QUOTE_ASSETS_PER_CREDIT)
        return json_response({"status": status(started, credits), "data": data})

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status_code = error.code or 500
        return error_response(status_code, status_code, str(error.description))

    return app


def _supplied_key() -> str | None:
    """Werkzeug's server drops header names containing "_", so the server passes them raw."""
    raw: list[tuple[str, str]] | None = request.environ.get(RAW_HEADERS_ENVIRON_KEY)
    if raw is None:
        return request.headers.get(API_KEY_HEADER)
    wanted = API_KEY_HEADER.lower()
    return next((value for name, value in raw if name.lower() == wanted), None)


def _split_list(raw: str) -> list[str]:
    wanted: list[str] = []
    for item in raw.split(","):
        value = item.strip()
        if value and value not in wanted:
            wanted.append(value)
    return wanted


def _lookup(
    assets: list[CmcAsset], kind: str, wanted: list[str]
) -> tuple[dict[str, list[CmcAsset]], list[str]]:
    """Symbol matches are ordered by id, newest first, which is NOT rank order, as upstream."""
    index: dict[str, list[CmcAsset]] = {}
    for asset in assets:
        index.setdefault(_identifier(asset, kind), []).append(asset)
    found: dict[str, list[CmcAsset]] = {}
    missing: list[str] = []
    for value in wanted:
        matches = sorted(index.get(_normalise(value, kind), []), key=lambda a: a.id, reverse=True)
        if not matches:
            missing.append(value)
        elif kind == "symbol":
            found[value] = matches
        else:
            found.setdefault(str(matches[0].id), matches[:1])
    return found, missing


def _identifier(asset: CmcAsset, kind: str) -> str:
    if kind == "id":
        return str(asset.id)
    if kind == "slug":
        return asset.slug.lower()
    return asset.symbol.upper()


def _normalise(value: str, kind: str) -> str:
    return value if kind == "id" else value.lower() if kind == "slug" else value.upper()


def _positive_int(name: str, default: int, high: int | None) -> tuple[int, str | None]:
    raw = request.args.get(name)
    if raw is None or raw.strip() == "":
        return default, None
    try:
        value = int(raw)
    except ValueError:
        return default, f'"{name}" must be a positive integer'
    if value < 1:
        return default, f'"{name}" must be a positive integer'
    if high is not None and value > high:
        return default, f'"{name}" must be less than or equal to {high}'
    return value, None


def _convert_problem() -> str | None:
    convert = request.args.get("convert", "USD").strip()
    if convert.upper() != "USD":
        return f'Invalid value for "convert": "{convert}"'
    return None


def _credits(returned: int, per_credit: int) -> int:
    return max(1, math.ceil(returned / per_credit))


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def status(started: float, credits: int, *, total_count: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "timestamp": timestamp(datetime.now(UTC)),
        "error_code": 0,
        "error_message": None,
        "elapsed": int((time.monotonic() - started) * 1000),
        "credit_count": credits,
        "notice": None,
    }
    if total_count is not None:
        body["total_count"] = total_count
    return body


def json_response(
    payload: Any, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        render_json(payload), status=status_code, content_type=CONTENT_TYPE, headers=headers
    )


def error_response(
    status_code: int, error_code: int, message: str, *, headers: dict[str, str] | None = None
) -> Response:
    """Upstream error bodies carry only ``status`` (no ``notice``, no ``data``)."""
    body = {
        "status": {
            "timestamp": timestamp(datetime.now(UTC)),
            "error_code": error_code,
            "error_message": message,
            "elapsed": 0,
            "credit_count": 0,
        }
    }
    return json_response(body, status_code=status_code, headers=headers)


def rate_limited_response(retry_after: str | None) -> Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return error_response(
        429,
        1008,
        "You've exceeded your API Key's HTTP request rate limit. Rate limits reset every minute.",
        headers=headers,
    )


def error_payload_response() -> Response:
    return error_response(401, 1001, "This API Key is invalid.")


def server_error_response() -> Response:
    return error_response(500, 500, "An internal server error occurred")


def _is_success(payload: Any) -> bool:
    return (
        isinstance(payload, dict)
        and "data" in payload
        and payload.get("status", {}).get("error_code") == 0
    )


def empty_payload(payload: Any) -> Any:
    if _is_success(payload):
        payload["data"] = [] if isinstance(payload["data"], list) else {}
    return payload


def short_payload(payload: Any) -> Any:
    if _is_success(payload):
        data = payload["data"]
        if isinstance(data, list):
            payload["data"] = data[:SHORT_LENGTH]
        else:
            payload["data"] = dict(list(data.items())[:SHORT_LENGTH])
    return payload


def missing_fields_payload(payload: Any) -> Any:
    if _is_success(payload):
        data = payload["data"]
        values = data if isinstance(data, list) else list(data.values())
        for item in values:
            for asset in item if isinstance(item, list) else [item]:
                asset.pop("quote", None)
    return payload


def asset_payload(asset: CmcAsset, now: datetime) -> dict[str, Any]:
    """One asset as ``listings/latest`` renders it."""
    rng = random.Random(asset.id)
    amount = _market_cap_target(asset, rng) / float(asset.price or 1)
    circulating: int | float = round(amount) if rng.random() < 0.5 else round(amount, 2)
    total = round(circulating * rng.uniform(1, 1.5), 2)
    max_supply = rng.choice([None, None, math.ceil(total * rng.uniform(1, 2))])
    token = rng.random() < 0.5
    updated = timestamp(now.replace(second=0, microsecond=0))
    return {
        "id": asset.id,
        "name": asset.name,
        "symbol": asset.symbol,
        "slug": asset.slug,
        "num_market_pairs": rng.randint(1, 1200),
        "date_added": _date_added(rng),
        "tags": [tag[0] for tag in rng.sample(_TAGS, rng.randint(0, 4))],
        "max_supply": max_supply,
        "circulating_supply": circulating,
        "total_supply": total,
        "infinite_supply": max_supply is None and rng.random() < 0.3,
        "platform": _platform(rng) if token else None,
        "cmc_rank": asset.cmc_rank,
        "self_reported_circulating_supply": None,
        "self_reported_market_cap": None,
        "tvl_ratio": None,
        "last_updated": updated,
        "quote": {"USD": _usd_quote(asset.price, circulating, total, rng, updated)},
    }


def quote_payload(asset: CmcAsset, now: datetime) -> dict[str, Any]:
    """``quotes/latest`` adds ``is_active``/``is_fiat`` and gives tags as objects."""
    listing = asset_payload(asset, now)
    rng = random.Random(asset.id)
    tags = [
        {"slug": slug, "name": name, "category": category}
        for slug, name, category in _TAGS
        if slug in listing["tags"]
    ]
    rng.shuffle(tags)
    result: dict[str, Any] = {}
    for key, value in listing.items():
        result[key] = tags if key == "tags" else value
        if key == "total_supply":
            result["is_active"] = 0 if asset.cmc_rank is None else 1
        elif key == "cmc_rank":
            result["is_fiat"] = 0
    return result


def _market_cap_target(asset: CmcAsset, rng: random.Random) -> float:
    """Roughly the real market's shape: about 2e12 at rank 1, about 1e9 at rank 100."""
    if asset.cmc_rank is None:
        return rng.uniform(1e4, 1e6)
    return _TOTAL_MARKET_CAP * 0.6 / asset.cmc_rank**1.6 * rng.uniform(0.8, 1.2)


def _date_added(rng: random.Random) -> str:
    added = datetime(2013, 4, 28, tzinfo=UTC) + timedelta(days=rng.randint(0, 4000))
    return timestamp(added)


def _platform(rng: random.Random) -> dict[str, Any]:
    return {**_ETHEREUM, "token_address": "0x" + "".join(rng.choices("0123456789abcdef", k=40))}


def _usd_quote(
    price: Decimal | None, circulating: float, total: float, rng: random.Random, updated: str
) -> dict[str, Any]:
    market_cap = float(price) * circulating if price is not None else None
    return {
        "price": price,
        "volume_24h": market_cap * rng.uniform(0.005, 0.2) if market_cap is not None else None,
        "volume_change_24h": round(rng.uniform(-60, 60), 4),
        "percent_change_1h": round(rng.uniform(-2, 2), 8),
        "percent_change_24h": round(rng.uniform(-10, 10), 8),
        "percent_change_7d": round(rng.uniform(-20, 20), 8),
        "percent_change_30d": round(rng.uniform(-40, 40), 8),
        "percent_change_60d": round(rng.uniform(-60, 60), 8),
        "percent_change_90d": round(rng.uniform(-80, 80), 8),
        "market_cap": market_cap,
        "market_cap_dominance": (
            round(market_cap / _TOTAL_MARKET_CAP * 100, 4) if market_cap is not None else None
        ),
        "fully_diluted_market_cap": (round(float(price) * total, 2) if price is not None else None),
        "tvl": None,
        "last_updated": updated,
    }
