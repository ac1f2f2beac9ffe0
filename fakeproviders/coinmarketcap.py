"""Fake CoinMarketCap Pro API: listings, v2 quotes, the id map and key info, with the real
payload and error shapes, and an account ledger that bills credits and enforces the plan.

Only ``id``, ``name``, ``symbol``, ``slug``, ``cmc_rank``, ``quote.USD.price`` and (when the
market sets it) ``quote.USD.volume_24h`` come from the market; the other fields are derived
deterministically from the asset id so payloads carry the full field set of the recorded
listings page.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
MAP_PATH = "/v1/cryptocurrency/map"
KEY_INFO_PATH = "/v1/key/info"
BILLED_PATHS = frozenset({LISTINGS_PATH, QUOTES_PATH, MAP_PATH})
MAX_LIMIT, DEFAULT_LIMIT = 5000, 100
LISTING_ASSETS_PER_CREDIT, QUOTE_ASSETS_PER_CREDIT, MAP_CREDITS = 200, 100, 1
LISTING_SORTS = (
    "market_cap",
    "volume_24h",
    "price",
    "percent_change_24h",
    "name",
    "symbol",
    "date_added",
)
SORT_DIRECTIONS = ("desc", "asc")
CRYPTOCURRENCY_TYPES = ("all", "coins", "tokens")
LISTING_STATUSES = ("active", "inactive", "untracked")
MAP_SORTS = ("id", "cmc_rank")
SHORT_LENGTH = 3

ERRORS: dict[int, tuple[int, str]] = {
    1001: (401, "This API Key is invalid."),
    1002: (401, "API key missing."),
    1008: (
        429,
        "You've exceeded your API Key's HTTP request rate limit. Rate limits reset every minute.",
    ),
    1009: (
        429,
        "You've exceeded your API Key's daily credit limit. Daily credits reset at 12am UTC.",
    ),
    1010: (
        429,
        "You've exceeded your API Key's monthly credit limit. Upgrade your plan or wait for "
        "the monthly reset.",
    ),
    1011: (429, "You've hit an IP rate limit. Please slow down your requests."),
}

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
_RANK_JITTER = 0.5


def _next_month(moment: datetime) -> datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def _next_day(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC) + timedelta(days=1)


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class CoinMarketCapAccount:
    """The key's plan and usage, so a scraper's spending and its reaction to limits can be tested.

    Shared with the request threads, which go through the locked methods. Per-minute refusals
    (1008) only happen with ``enforce_rate_limit_minute``: the test-suite makes far more than
    ``rate_limit_minute`` calls a minute.
    """

    credit_limit_monthly: int = 10_000
    credit_limit_daily: int | None = None
    rate_limit_minute: int = 30
    credits_used_month: int = 0
    credits_used_day: int = 0
    month_reset_at: datetime = field(default_factory=lambda: _next_month(_now()))
    day_reset_at: datetime = field(default_factory=lambda: _next_day(_now()))
    requests_this_minute: int = 0
    minute_started_at: datetime = field(default_factory=lambda: _minute(_now()))
    enforce_rate_limit_minute: bool = False
    lock: threading.RLock = field(
        default_factory=threading.RLock, repr=False, compare=False, init=False
    )

    def __deepcopy__(self, memo: dict[int, Any]) -> CoinMarketCapAccount:
        with self.lock:
            return dataclasses.replace(self)

    def restore(self, other: CoinMarketCapAccount) -> None:
        """Copies ``other`` into this object so references held by tests stay valid."""
        with self.lock:
            for item in dataclasses.fields(self):
                if item.init:
                    setattr(self, item.name, getattr(other, item.name))

    def admit(self, now: datetime, *, billed: bool) -> int | None:
        """Counts the request; for a billed one, the error code refusing it, if any."""
        with self.lock:
            self._roll(now)
            refusal = self._refusal() if billed else None
            self.requests_this_minute += 1
            return refusal

    def bill(self, credits: int, now: datetime) -> None:
        with self.lock:
            self._roll(now)
            self.credits_used_month += credits
            self.credits_used_day += credits

    def key_info(self, now: datetime) -> dict[str, Any]:
        with self.lock:
            self._roll(now)
            daily, monthly = self.credit_limit_daily, self.credit_limit_monthly
            return {
                "plan": {
                    "credit_limit_daily": daily,
                    "credit_limit_daily_reset": _reset_in(self.day_reset_at - now, days=False),
                    "credit_limit_daily_reset_timestamp": timestamp(self.day_reset_at),
                    "credit_limit_monthly": monthly,
                    "credit_limit_monthly_reset": _reset_in(self.month_reset_at - now, days=True),
                    "credit_limit_monthly_reset_timestamp": timestamp(self.month_reset_at),
                    "rate_limit_minute": self.rate_limit_minute,
                },
                "usage": {
                    "current_minute": {
                        "requests_made": self.requests_this_minute,
                        "requests_left": max(0, self.rate_limit_minute - self.requests_this_minute),
                    },
                    "current_day": {
                        "credits_used": self.credits_used_day,
                        "credits_left": (
                            None if daily is None else max(0, daily - self.credits_used_day)
                        ),
                    },
                    "current_month": {
                        "credits_used": self.credits_used_month,
                        "credits_left": max(0, monthly - self.credits_used_month),
                    },
                },
            }

    def _refusal(self) -> int | None:
        if self.credits_used_month >= self.credit_limit_monthly:
            return 1010
        if self.credit_limit_daily is not None and self.credits_used_day >= self.credit_limit_daily:
            return 1009
        if self.enforce_rate_limit_minute and self.requests_this_minute >= self.rate_limit_minute:
            return 1008
        return None

    def _roll(self, now: datetime) -> None:
        if now >= self.month_reset_at:
            self.credits_used_month = 0
            self.month_reset_at = _next_month(now)
        if now >= self.day_reset_at:
            self.credits_used_day = 0
            self.day_reset_at = _next_day(now)
        if _minute(now) != self.minute_started_at:
            self.requests_this_minute = 0
            self.minute_started_at = _minute(now)


def _reset_in(delta: timedelta, *, days: bool) -> str:
    hours, minutes = divmod(max(0, int(delta.total_seconds())) // 60, 60)
    parts = [_count(hours, "hour"), _count(minutes, "minute")]
    if days:
        whole_days, hours = divmod(hours, 24)
        parts = [_count(whole_days, "day"), _count(hours, "hour"), _count(minutes, "minute")]
    return "In " + ", ".join(parts)


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}" if number == 1 else f"{number} {unit}s"


def create_app(
    market: Market,
    *,
    api_key: str,
    drift_rng: random.Random | None = None,
    account: CoinMarketCapAccount | None = None,
) -> Flask:
    """``drift_rng`` makes every quotes/listings request move prices a little first."""
    app = Flask(__name__)
    ledger = account if account is not None else CoinMarketCapAccount()

    @app.before_request
    def authenticate() -> Response | None:
        supplied = _supplied_key()
        if not supplied:
            return coded_error_response(1002)
        if supplied != api_key:
            return coded_error_response(1001)
        refusal = ledger.admit(_now(), billed=request.path in BILLED_PATHS)
        return None if refusal is None else coded_error_response(refusal)

    @app.get(LISTINGS_PATH)
    def listings() -> Response:
        started = time.monotonic()
        start, start_problem = _positive_int("start", 1, None)
        limit, limit_problem = _positive_int("limit", DEFAULT_LIMIT, MAX_LIMIT)
        sort, sort_problem = _one_of("sort", LISTING_SORTS)
        sort_dir, sort_dir_problem = _one_of("sort_dir", SORT_DIRECTIONS)
        kind, kind_problem = _one_of("cryptocurrency_type", CRYPTOCURRENCY_TYPES)
        problem = (
            start_problem
            or limit_problem
            or sort_problem
            or sort_dir_problem
            or kind_problem
            or _convert_problem()
        )
        if problem is not None:
            return error_response(400, 400, problem)
        if drift_rng is not None:
            market.drift_prices(drift_rng)
        now = _now()
        with market.lock:
            listed = [
                asset_payload(asset, now)
                for asset in market.assets
                if asset.status == "active" and asset.cmc_rank is not None
            ]
        chosen = [payload for payload in listed if _is_type(payload, kind)]
        ordered = _sorted_listing(chosen, sort, descending=sort_dir == "desc")
        data = ordered[start - 1 : start - 1 + limit]
        credits = _credits(len(data), LISTING_ASSETS_PER_CREDIT)
        ledger.bill(credits, _now())
        return json_response(
            {"status": status(started, credits, total_count=len(chosen)), "data": data}
        )

    @app.get(MAP_PATH)
    def id_map() -> Response:
        started = time.monotonic()
        statuses, statuses_problem = _listing_statuses()
        start, start_problem = _positive_int("start", 1, None)
        limit: int | None = None
        limit_problem: str | None = None
        if request.args.get("limit", "").strip():
            limit, limit_problem = _positive_int("limit", MAX_LIMIT, MAX_LIMIT)
        sort, sort_problem = _one_of("sort", MAP_SORTS)
        problem = statuses_problem or start_problem or limit_problem or sort_problem
        if problem is not None:
            return error_response(400, 400, problem)
        symbols = {value.upper() for value in _split_list(request.args.get("symbol", ""))}
        now = _now()
        with market.lock:
            chosen = [
                asset
                for asset in market.assets
                if asset.status in statuses and (not symbols or asset.symbol.upper() in symbols)
            ]
            chosen.sort(key=_by_id if sort == "id" else _by_rank)
            data = [map_payload(asset, now) for asset in chosen[start - 1 :][:limit]]
        ledger.bill(MAP_CREDITS, _now())
        return json_response({"status": status(started, MAP_CREDITS), "data": data})

    @app.get(KEY_INFO_PATH)
    def key_info() -> Response:
        """Free, and answered even when the budget is spent: it is how a client finds out."""
        started = time.monotonic()
        return json_response({"status": status(started, 0), "data": ledger.key_info(_now())})

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
        now = _now()
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
        ledger.bill(credits, _now())
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


def _one_of(name: str, allowed: tuple[str, ...]) -> tuple[str, str | None]:
    """The first of ``allowed`` is the default."""
    raw = request.args.get(name, "").strip().lower()
    if not raw:
        return allowed[0], None
    if raw not in allowed:
        return allowed[0], f'"{name}" must be one of [{", ".join(allowed)}]'
    return raw, None


def _listing_statuses() -> tuple[set[str], str | None]:
    wanted = _split_list(request.args.get("listing_status", "").lower()) or ["active"]
    unknown = [value for value in wanted if value not in LISTING_STATUSES]
    if unknown:
        return set(), f'Invalid value for "listing_status": "{",".join(unknown)}"'
    return set(wanted), None


def _by_id(asset: CmcAsset) -> int:
    return asset.id


def _by_rank(asset: CmcAsset) -> tuple[bool, int, int]:
    return (asset.cmc_rank is None, asset.cmc_rank or 0, asset.id)


def _is_type(payload: dict[str, Any], kind: str) -> bool:
    if kind == "coins":
        return payload["platform"] is None
    if kind == "tokens":
        return payload["platform"] is not None
    return True


_LISTING_SORT_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "market_cap": lambda payload: -payload["cmc_rank"],
    "volume_24h": lambda payload: payload["quote"]["USD"]["volume_24h"],
    "price": lambda payload: payload["quote"]["USD"]["price"],
    "percent_change_24h": lambda payload: payload["quote"]["USD"]["percent_change_24h"],
    "name": lambda payload: payload["name"].casefold(),
    "symbol": lambda payload: payload["symbol"].casefold(),
    "date_added": lambda payload: payload["date_added"],
}


def _sorted_listing(
    payloads: list[dict[str, Any]], sort: str, *, descending: bool
) -> list[dict[str, Any]]:
    """Sorted on the very values served; nulls last either way, ties in the market's order.

    ``market_cap`` is ``cmc_rank`` order: that is how CoinMarketCap ranks, and the derived
    market caps follow the ranks.
    """
    key = _LISTING_SORT_KEYS[sort]
    known = [payload for payload in payloads if key(payload) is not None]
    unknown = [payload for payload in payloads if key(payload) is None]
    known.sort(key=key, reverse=descending)
    return known + unknown


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


def coded_error_response(error_code: int, *, headers: dict[str, str] | None = None) -> Response:
    status_code, message = ERRORS[error_code]
    return error_response(status_code, error_code, message, headers=headers)


def _limit_response(error_code: int, retry_after: str | None) -> Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return coded_error_response(error_code, headers=headers)


def rate_limited_response(retry_after: str | None) -> Response:
    return _limit_response(1008, retry_after)


def daily_limit_response(retry_after: str | None) -> Response:
    return _limit_response(1009, retry_after)


def monthly_limit_response(retry_after: str | None) -> Response:
    return _limit_response(1010, retry_after)


def ip_rate_limited_response(retry_after: str | None) -> Response:
    return _limit_response(1011, retry_after)


def error_payload_response() -> Response:
    return coded_error_response(1001)


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
        "quote": {"USD": _usd_quote(asset, circulating, total, rng, updated)},
    }


def map_payload(asset: CmcAsset, now: datetime) -> dict[str, Any]:
    """One ``/v1/cryptocurrency/map`` entry; ``platform`` agrees with the listing's."""
    listing = asset_payload(asset, now)
    active = asset.status == "active"
    if active:
        last = listing["last_updated"]
    else:
        added = datetime.fromisoformat(listing["date_added"])
        last = timestamp(min(now, added + timedelta(days=180 + asset.id % 1500)))
    return {
        "id": asset.id,
        "rank": asset.cmc_rank,
        "name": asset.name,
        "symbol": asset.symbol,
        "slug": asset.slug,
        "is_active": 1 if active else 0,
        "first_historical_data": listing["date_added"],
        "last_historical_data": last,
        "platform": listing["platform"],
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
            result["is_active"] = 1 if asset.status == "active" else 0
        elif key == "cmc_rank":
            result["is_fiat"] = 0
    return result


def _market_cap_target(asset: CmcAsset, rng: random.Random) -> float:
    """Roughly the real market's shape: about 2e12 at rank 1, about 1e9 at rank 100.

    The jitter stays below one rank, so market caps decrease with the rank as upstream.
    """
    if asset.cmc_rank is None:
        return rng.uniform(1e4, 1e6)
    jittered = asset.cmc_rank + rng.uniform(0, _RANK_JITTER)
    return float(_TOTAL_MARKET_CAP * 0.6 / jittered**1.6)


def _date_added(rng: random.Random) -> str:
    added = datetime(2013, 4, 28, tzinfo=UTC) + timedelta(days=rng.randint(0, 4000))
    return timestamp(added)


def _platform(rng: random.Random) -> dict[str, Any]:
    return {**_ETHEREUM, "token_address": "0x" + "".join(rng.choices("0123456789abcdef", k=40))}


def _usd_quote(
    asset: CmcAsset, circulating: float, total: float, rng: random.Random, updated: str
) -> dict[str, Any]:
    price = asset.price
    market_cap = float(price) * circulating if price is not None else None
    derived = market_cap * rng.uniform(0.005, 0.2) if market_cap is not None else None
    volume: Decimal | float | None = asset.volume_24h if asset.volume_24h is not None else derived
    return {
        "price": price,
        "volume_24h": volume,
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
