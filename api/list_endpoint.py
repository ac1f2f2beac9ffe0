"""``GET /``: the merged top list as JSON or CSV, gzipped for clients that take it.

Every answer of a snapshot pair is memoised, so answering is a few dictionary lookups.
Flask's own request handling costs more than that, so ``TopListShortcut`` answers the
plain successful ``GET /`` before Flask; everything else (errors, conditional requests,
``HEAD``, traced requests) goes through the Flask view, which answers with the same
``answer()``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from flask import Blueprint, Response, current_app, request
from werkzeug.datastructures import MIMEAccept, MultiDict
from werkzeug.http import parse_accept_header

from .cache import NoDataYet, NotLoaded, TopListCache
from .metrics import ENDPOINT_KEY
from .problems import Problem, invalid_parameter
from .rendered_list import FIELDS, MEDIA_TYPES, Query, Rendered
from .request_id import StartResponse, WsgiApp

bp = Blueprint("top", __name__)

DEFAULT_LIMIT = 200
ENDPOINT = "top.top_list"
_OFFERED = ["application/json", "text/csv"]
_MAX_DIGITS = 9
# symbols= and ids= select at most this many coins in one request.
MAX_LIST = 500
# What tickers are made of: letters and digits of any script, and a few marks
# (CryptoCompare's "HOT*" and CoinMarketCap's "USD.E", say).
MAX_SYMBOL_LENGTH = 32
SYMBOL_PUNCTUATION = "*.-_$@&+"
# ASCII letters, digits and those marks, or any character beyond ASCII but a space: written
# without \w or \p{…}, which regex engines read differently (api/openapi.json states it too).
SYMBOL = re.compile(r"(?:[A-Za-z0-9_*.$@&+-]|[^\x00-\x7F\s]){1,32}")
MAX_ID = 2**31 - 1


@bp.get("/")
def top_list() -> Response:
    rendered = answer(request.environ, current_app.extensions["toplist"], current_app.config)
    response = Response(rendered.body, headers=rendered.headers)
    if "HTTP_IF_NONE_MATCH" in request.environ or "HTTP_IF_MODIFIED_SINCE" in request.environ:
        response.make_conditional(request)
    return response


def answer(environ: dict[str, Any], cache: TopListCache, config: dict[str, Any]) -> Rendered:
    """The response ``GET /`` gets, or a ``Problem`` saying why not."""
    query = request_shape(
        environ.get("QUERY_STRING", ""), environ.get("HTTP_ACCEPT"), config["MAX_LIMIT"]
    )
    try:
        top = cache.current()
    except NoDataYet as exc:
        raise Problem(503, "No data yet", f"{exc}; the API serves once both scrapers ran") from None
    except NotLoaded as exc:
        raise Problem(503, "Not loaded yet", str(exc), headers={"Retry-After": "1"}) from None
    return top.render(query, time.time(), accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING")))


class TopListShortcut:
    """A WSGI layer answering the plain successful ``GET /`` without Flask: the hot path."""

    def __init__(self, app: WsgiApp, cache: TopListCache, config: dict[str, Any]) -> None:
        self.app = app
        self.cache = cache
        self.config = config

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if (
            environ.get("PATH_INFO") != "/"
            or environ.get("REQUEST_METHOD") != "GET"
            or "HTTP_IF_NONE_MATCH" in environ
            or "HTTP_IF_MODIFIED_SINCE" in environ
        ):
            return self.app(environ, start_response)
        try:
            rendered = answer(environ, self.cache, self.config)
        except Problem:
            return self.app(environ, start_response)
        environ[ENDPOINT_KEY] = ENDPOINT
        start_response("200 OK", [*rendered.headers, ("Content-Length", str(len(rendered.body)))])
        return [rendered.body]


@lru_cache(maxsize=64)
def accepts_gzip(accept_encoding: str | None) -> bool:
    if not accept_encoding:
        return False
    return parse_accept_header(accept_encoding).quality("gzip") > 0


@lru_cache(maxsize=1024)
def request_shape(query_string: str, accept: str | None, maximum: int) -> Query:
    """What a request asks for; memoised because clients repeat the same few queries."""
    # WSGI gives the query's bytes as Latin-1; a client may send UTF-8 unescaped.
    query_string = query_string.encode("latin-1", "replace").decode("utf-8", "replace")
    args = MultiDict(parse_qsl(query_string, keep_blank_values=True, errors="replace"))
    return Query(
        limit=_limit(args, maximum),
        offset=_offset(args),
        fmt=negotiated_format(args, accept),
        symbols=_symbols(args),
        ids=_ids(args),
        fields=_fields(args),
    )


def single(args: MultiDict[str, str], name: str) -> str | None:
    values = args.getlist(name)
    if len(values) > 1:
        raise invalid_parameter(name, "must be given at most once")
    return values[0] if values else None


def _limit(args: MultiDict[str, str], maximum: int) -> int:
    raw = single(args, "limit")
    if raw is None:
        return DEFAULT_LIMIT
    reason = f"must be a whole number from 1 to {maximum}"
    if not raw.isascii() or not raw.isdigit() or len(raw) > _MAX_DIGITS:
        raise invalid_parameter("limit", f"{reason}, got {raw[:20]!r}")
    value = int(raw)
    if not 1 <= value <= maximum:
        raise invalid_parameter("limit", f"{reason}, got {value}")
    return value


def _offset(args: MultiDict[str, str]) -> int:
    raw = single(args, "offset")
    if raw is None:
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > _MAX_DIGITS:
        reason = f"must be a whole number from 0 to {10**_MAX_DIGITS - 1}"
        raise invalid_parameter("offset", f"{reason}, got {raw[:20]!r}")
    return int(raw)


def _list(args: MultiDict[str, str], name: str) -> list[str] | None:
    """A comma-separated list: at most ``MAX_LIST`` entries, none empty."""
    raw = single(args, name)
    if raw is None:
        return None
    entries = raw.split(",")
    if len(entries) > MAX_LIST:
        raise invalid_parameter(name, f"names at most {MAX_LIST} entries, got {len(entries)}")
    if not all(entries):
        raise invalid_parameter(name, "must be a comma-separated list without empty entries")
    return entries


def _symbols(args: MultiDict[str, str]) -> tuple[str, ...] | None:
    entries = _list(args, "symbols")
    if entries is None:
        return None
    for entry in entries:
        if not SYMBOL.fullmatch(entry):
            raise invalid_parameter(
                "symbols",
                f"{entry[:40]!r} is not a ticker: at most {MAX_SYMBOL_LENGTH} letters, digits "
                f"or {' '.join(SYMBOL_PUNCTUATION)}, or characters beyond ASCII but spaces",
            )
    return tuple(dict.fromkeys(entries))


def _ids(args: MultiDict[str, str]) -> tuple[int, ...] | None:
    entries = _list(args, "ids")
    if entries is None:
        return None
    ids = []
    for entry in entries:
        cmc_id = cmc_id_or_none(entry)
        if cmc_id is None:
            raise invalid_parameter(
                "ids", f"{entry[:20]!r} is not a CoinMarketCap id (1 to {MAX_ID})"
            )
        ids.append(cmc_id)
    return tuple(dict.fromkeys(ids))


def cmc_id_or_none(text: str) -> int | None:
    """A CoinMarketCap id as a request writes it: plain ASCII digits, 1 to ``MAX_ID``."""
    if not (text.isascii() and text.isdigit() and len(text) <= 10):
        return None
    value = int(text)
    return value if 0 < value <= MAX_ID else None


def _fields(args: MultiDict[str, str]) -> tuple[str, ...] | None:
    entries = _list(args, "fields")
    if entries is None:
        return None
    for entry in entries:
        if entry not in FIELDS:
            raise invalid_parameter(
                "fields", f"unknown field {entry[:40]!r}; known: {', '.join(FIELDS)}"
            )
    if len(set(entries)) != len(entries):
        raise invalid_parameter("fields", "names a field more than once")
    return tuple(entries)


def negotiated_format(args: MultiDict[str, str], accept: str | None) -> str:
    raw = single(args, "format")
    if raw is not None:
        if raw not in MEDIA_TYPES:
            raise invalid_parameter("format", f"must be one of json, csv; got {raw[:20]!r}")
        return raw
    if accept is None:
        return "json"
    best = parse_accept_header(accept, MIMEAccept).best_match(_OFFERED)
    if best is None:
        raise Problem(
            406,
            "Not Acceptable",
            "this resource is available as application/json or text/csv",
        )
    return "csv" if best == "text/csv" else "json"
