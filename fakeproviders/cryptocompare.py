"""Fake CryptoCompare min-api: ``/data/top/totalvolfull`` with the real payload and error shapes.

Only ``Id``, ``Name``, ``FullName``, ``PRICE``, ``FROMSYMBOL`` and ``TOTALVOLUME24HTO`` come from
the market; every other field is derived deterministically from the coin id so that payloads look
like the recorded ones without the market model having to carry them. Symbols are served as
stored, trailing ``*`` included (CryptoCompare marks a ticker another of its assets uses that way).
"""

from __future__ import annotations

import math
import random
import time
from decimal import Decimal
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from fakeproviders.coindesk import KeyCheck, check_key, key_required_response
from fakeproviders.market import Market, RankedCoin, render_json

CONTENT_TYPE = "application/json; charset=UTF-8"
TOP_LIST_PATH = "/data/top/totalvolfull"
MIN_LIMIT, MAX_LIMIT, DEFAULT_LIMIT = 10, 100, 10
SHORT_LENGTH = 3

_SIGNS = {"BTC": "Ƀ", "ETH": "Ξ", "LTC": "Ł"}
_MARKETS = ["Binance", "Bitfinex", "Coinbase", "HuobiPro", "OKEX", "HitBTC", "Kraken", "Bitstamp"]
_ALGORITHMS = [
    ("N/A", "N/A"),
    ("SHA-256", "PoW"),
    ("Scrypt", "PoW"),
    ("Ethash", "PoW"),
    ("N/A", "PoS"),
    ("N/A", "DPoS"),
    ("X11", "PoW/PoS"),
]
_RATINGS = ["", "", "", "A-", "B+", "B", "B-", "C+", "C", "C-", "D", "E+"]
_CALLS_MADE = {"second": 1, "minute": 1, "hour": 76, "day": 20003, "month": 57172}
_MAX_CALLS = {"second": 20, "minute": 300, "hour": 3000, "day": 20000, "month": 180000}


def create_app(
    market: Market, *, api_key: str | None = None, drift_rng: random.Random | None = None
) -> Flask:
    """``drift_rng`` makes page 0 occasionally swap two neighbours, like a live ranking does.

    Without a key header the legacy host now answers like CoinDesk Data (HTTP 401, ``Err``); a
    wrong key still gets the old HTTP 200 error: upstream shows both.
    """
    app = Flask(__name__)

    @app.get(TOP_LIST_PATH)
    def top_list() -> Response:
        key = check_key(api_key)
        if key is KeyCheck.MISSING:
            return key_required_response()
        if key is KeyCheck.INVALID:
            return error_response("You are using an invalid api key!", error_type=1)
        tsym = request.args.get("tsym", "").strip()
        if not tsym:
            return error_response("tsym param seems to be missing.", param="tsym")
        if tsym.upper() != "USD":
            return error_response(f"There is no data for the toSymbol {tsym} .", param="tsym")
        limit = _int_param("limit", DEFAULT_LIMIT, MIN_LIMIT, MAX_LIMIT)
        if limit is None:
            return error_response(
                f"limit param is not an integer or is out of range (min {MIN_LIMIT}, "
                f"max {MAX_LIMIT}).",
                param="limit",
            )
        page = _int_param("page", 0, 0, None)
        if page is None:
            return error_response("page param is not an integer or is negative.", param="page")
        if page == 0 and drift_rng is not None:
            market.maybe_swap_neighbours(drift_rng)
        now = int(time.time())
        with market.lock:
            count = len(market.ranking)
            entries = [
                entry(coin, now) for coin in market.ranking[page * limit : (page + 1) * limit]
            ]
            sponsored = [entry(coin, now) for coin in market.sponsored]
        return json_response(
            {
                "Message": "Success",
                "Type": 100,
                "MetaData": {"Count": count},
                "SponsoredData": sponsored,
                "Data": entries,
                "RateLimit": {},
                "HasWarning": False,
            }
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        body = _error_body("Path does not exist" if status == 404 else str(error.description))
        return json_response(body, status=status)

    return app


def _int_param(name: str, default: int, low: int, high: int | None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    if value < low or (high is not None and value > high):
        return None
    return value


def json_response(
    payload: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(render_json(payload), status=status, content_type=CONTENT_TYPE, headers=headers)


def _error_body(
    message: str,
    *,
    error_type: int = 2,
    param: str | None = None,
    rate_limit: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Response": "Error",
        "Message": message,
        "HasWarning": False,
        "Type": error_type,
        "RateLimit": rate_limit or {},
        "Data": {},
    }
    if param is not None:
        body["ParamWithError"] = param
    return body


def error_response(message: str, *, error_type: int = 2, param: str | None = None) -> Response:
    """CryptoCompare reports errors with HTTP 200; only the body says something went wrong."""
    return json_response(_error_body(message, error_type=error_type, param=param))


def rate_limited_response() -> Response:
    return json_response(
        _error_body(
            "You are over your rate limit please upgrade your account!",
            error_type=99,
            rate_limit={
                "calls_made": {**_CALLS_MADE, "total_calls": _CALLS_MADE["month"]},
                "max_calls": dict(_MAX_CALLS),
            },
        )
    )


def error_payload_response() -> Response:
    return error_response("There is no data for the toSymbol USD .", param="tsym")


def server_error_response() -> Response:
    """An HTML page, as a proxy in front of the API would send: clients must not assume JSON."""
    body = (
        "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n"
        "<center><h1>500 Internal Server Error</h1></center>\r\n</body>\r\n</html>\r\n"
    )
    return Response(body, status=500, content_type="text/html")


def _is_success(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("Response") != "Error" and "Data" in payload


def empty_payload(payload: Any) -> Any:
    if _is_success(payload):
        payload["Data"] = []
    return payload


def short_payload(payload: Any) -> Any:
    if _is_success(payload) and isinstance(payload["Data"], list):
        payload["Data"] = payload["Data"][:SHORT_LENGTH]
    return payload


def missing_fields_payload(payload: Any) -> Any:
    if _is_success(payload) and isinstance(payload["Data"], list):
        for item in payload["Data"]:
            item.get("CoinInfo", {}).pop("Name", None)
    return payload


def entry(coin: RankedCoin, now: int) -> dict[str, Any]:
    rng = random.Random(coin.cc_id)
    result: dict[str, Any] = {"CoinInfo": _coin_info(coin, rng)}
    if coin.price is not None:
        raw = _raw(coin, coin.price, rng, now)
        result["RAW"] = {"USD": raw}
        result["DISPLAY"] = {"USD": _display(coin.symbol, raw)}
    return result


def _image_url(coin: RankedCoin) -> str:
    return f"/media/{coin.cc_id}/{coin.symbol.rstrip('*').lower()}.png"


def _coin_info(coin: RankedCoin, rng: random.Random) -> dict[str, Any]:
    algorithm, proof = rng.choice(_ALGORITHMS)
    mined = proof.startswith("PoW")
    max_supply: float | int = rng.choice([-1, 21_000_000, 100_000_000, 1_000_000_000])
    return {
        "Id": str(coin.cc_id),
        "Name": coin.symbol,
        "FullName": coin.full_name,
        "Internal": coin.symbol,
        "ImageUrl": _image_url(coin),
        "Url": f"/coins/{coin.symbol.lower().replace('*', 'star')}/overview",
        "Algorithm": algorithm,
        "ProofType": proof,
        "Rating": {
            "Weiss": {
                "Rating": rng.choice(_RATINGS),
                "TechnologyAdoptionRating": rng.choice(_RATINGS),
                "MarketPerformanceRating": rng.choice(_RATINGS),
            }
        },
        "NetHashesPerSecond": round(rng.uniform(1e6, 1e12), 4) if mined else 0,
        "BlockNumber": rng.randint(100_000, 20_000_000) if mined else 0,
        "BlockTime": rng.choice([0, 2, 4, 15, 60, 150, 600]),
        "BlockReward": round(rng.uniform(0.5, 50), 4) if mined else 0,
        "AssetLaunchDate": _launch_date(rng),
        "MaxSupply": max_supply,
        "Type": 1,
        "DocumentType": "Webpagecoinp",
    }


def _supply(amount: float, rng: random.Random) -> int | float:
    return round(amount) if rng.random() < 0.5 else round(amount, 4)


def _launch_date(rng: random.Random) -> str:
    return f"{rng.randint(2013, 2021)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _raw(coin: RankedCoin, exact_price: Decimal, rng: random.Random, now: int) -> dict[str, Any]:
    price = float(exact_price)
    total_to = float(coin.volume_24h)
    change_pct_24h = rng.uniform(-8, 8)
    change_pct_day = change_pct_24h * rng.uniform(0.1, 0.9)
    open_24h = price / (1 + change_pct_24h / 100)
    open_day = price / (1 + change_pct_day / 100)
    open_hour = price * (1 + rng.uniform(-0.004, 0.004))
    volume_24h_to = total_to * rng.uniform(0.05, 0.35)
    volume_day_to = volume_24h_to * rng.uniform(0.2, 0.9)
    volume_hour_to = volume_24h_to * rng.uniform(0.01, 0.08)
    top_tier_to = volume_24h_to * rng.uniform(0.5, 0.95)
    total_top_tier_to = total_to * rng.uniform(0.3, 0.8)
    last_volume = rng.uniform(0.01, 500)
    supply = _supply(total_to * rng.uniform(5, 60) / price, rng)
    return {
        "TYPE": "5",
        "MARKET": "CCCAGG",
        "FROMSYMBOL": coin.symbol,
        "TOSYMBOL": "USD",
        "FLAGS": rng.choice(["1", "2", "4"]),
        "PRICE": exact_price,
        "LASTUPDATE": now - rng.randint(0, 30),
        "LASTVOLUME": last_volume,
        "LASTVOLUMETO": last_volume * price,
        "LASTTRADEID": str(rng.randint(10**7, 10**9)),
        "VOLUMEDAY": volume_day_to / price,
        "VOLUMEDAYTO": volume_day_to,
        "VOLUME24HOUR": volume_24h_to / price,
        "VOLUME24HOURTO": volume_24h_to,
        "OPENDAY": open_day,
        "HIGHDAY": max(price, open_day) * (1 + rng.uniform(0, 0.02)),
        "LOWDAY": min(price, open_day) * (1 - rng.uniform(0, 0.02)),
        "OPEN24HOUR": open_24h,
        "HIGH24HOUR": max(price, open_24h) * (1 + rng.uniform(0, 0.03)),
        "LOW24HOUR": min(price, open_24h) * (1 - rng.uniform(0, 0.03)),
        "LASTMARKET": rng.choice(_MARKETS),
        "VOLUMEHOUR": volume_hour_to / price,
        "VOLUMEHOURTO": volume_hour_to,
        "OPENHOUR": open_hour,
        "HIGHHOUR": max(price, open_hour),
        "LOWHOUR": min(price, open_hour),
        "TOPTIERVOLUME24HOUR": top_tier_to / price,
        "TOPTIERVOLUME24HOURTO": top_tier_to,
        "CHANGE24HOUR": price - open_24h,
        "CHANGEPCT24HOUR": change_pct_24h,
        "CHANGEDAY": price - open_day,
        "CHANGEPCTDAY": change_pct_day,
        "SUPPLY": supply,
        "MKTCAP": supply * price,
        "TOTALVOLUME24H": total_to / price,
        "TOTALVOLUME24HTO": coin.volume_24h,
        "TOTALTOPTIERVOLUME24H": total_top_tier_to / price,
        "TOTALTOPTIERVOLUME24HTO": total_top_tier_to,
        "IMAGEURL": _image_url(coin),
    }


_USD_PREFIXES = ("PRICE", "OPEN", "HIGH", "LOW", "MKTCAP")
_VERBATIM = ("LASTTRADEID", "LASTMARKET", "IMAGEURL")


def _display(symbol: str, raw: dict[str, Any]) -> dict[str, str]:
    """Same keys as RAW from PRICE on, rendered the way CryptoCompare's site shows them."""
    sign = _SIGNS.get(symbol, symbol)
    fields = {"FROMSYMBOL": sign, "TOSYMBOL": "$", "MARKET": "CryptoCompare Index"}
    keys = list(raw)
    for key in keys[keys.index("PRICE") :]:
        fields[key] = _display_value(key, raw[key], sign)
    return fields


def _display_value(key: str, value: Any, sign: str) -> str:
    if key == "LASTUPDATE":
        return "Just now"
    if key in _VERBATIM:
        return str(value)
    if key.startswith("CHANGEPCT"):
        return f"{float(value):.2f}"
    if key.startswith("CHANGE"):
        return f"$ {format_change(value)}"
    unit = "$" if key.endswith("TO") or key.startswith(_USD_PREFIXES) else sign
    if key.startswith("TOTAL") or key == "MKTCAP":
        return f"{unit} {format_compact(value)}"
    return f"{unit} {format_amount(value)}"


def format_amount(value: float | Decimal) -> str:
    """CryptoCompare's style: 1 decimal from 10 000, 2 from 1, else 4 significant digits."""
    number = float(value)
    size = abs(number)
    if size == 0:
        return "0"
    if size >= 10_000:
        return f"{number:,.1f}"
    if size >= 1:
        return f"{number:,.2f}"
    return f"{number:.{_decimals_for(size, 4)}f}"


def format_change(value: float | Decimal) -> str:
    number = float(value)
    size = abs(number)
    if size == 0:
        return "0.0"
    if size >= 1:
        return f"{number:,.2f}"
    return f"{number:.{_decimals_for(size, 2)}f}"


def format_compact(value: float | Decimal) -> str:
    number = float(value)
    for threshold, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(number) >= threshold:
            return f"{number / threshold:,.2f} {unit}"
    return format_amount(number)


def _decimals_for(size: float, significant: int) -> int:
    return max(0, significant - 1 - math.floor(math.log10(size)))
