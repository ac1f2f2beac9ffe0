"""``GET /``: the merged top list as JSON or CSV, gzipped for clients that take it.

Every answer of a snapshot pair is memoised, so answering is a few dictionary lookups.
Flask's own request handling costs more than that, so ``TopListShortcut`` answers the
plain successful ``GET /`` before Flask; everything else (errors, conditional requests,
``HEAD``, traced requests) goes through the Flask view, which answers with the same
``answer()``.
"""

from __future__ import annotations

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
from .request_id import StartResponse, WsgiApp
from .toplist import MEDIA_TYPES, Rendered

bp = Blueprint("top", __name__)

DEFAULT_LIMIT = 200
ENDPOINT = "top.top_list"
_OFFERED = ["application/json", "text/csv"]
_MAX_DIGITS = 9


@bp.get("/")
def top_list() -> Response:
    rendered = answer(request.environ, current_app.extensions["toplist"], current_app.config)
    response = Response(rendered.body, headers=rendered.headers)
    if "HTTP_IF_NONE_MATCH" in request.environ or "HTTP_IF_MODIFIED_SINCE" in request.environ:
        response.make_conditional(request)
    return response


def answer(environ: dict[str, Any], cache: TopListCache, config: dict[str, Any]) -> Rendered:
    """The response ``GET /`` gets, or a ``Problem`` saying why not."""
    limit, fmt = request_shape(
        environ.get("QUERY_STRING", ""), environ.get("HTTP_ACCEPT"), config["MAX_LIMIT"]
    )
    try:
        top = cache.current()
    except NoDataYet as exc:
        raise Problem(503, "No data yet", f"{exc}; the API serves once both scrapers ran") from None
    except NotLoaded as exc:
        raise Problem(503, "Not loaded yet", str(exc), headers={"Retry-After": "1"}) from None
    return top.render(limit, fmt, time.time(), accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING")))


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
def request_shape(query_string: str, accept: str | None, maximum: int) -> tuple[int, str]:
    """(limit, format) of a request; memoised because clients repeat the same few queries."""
    args = MultiDict(parse_qsl(query_string, keep_blank_values=True, errors="replace"))
    return _limit(args, maximum), _format(args, accept)


def _single(args: MultiDict[str, str], name: str) -> str | None:
    values = args.getlist(name)
    if len(values) > 1:
        raise invalid_parameter(name, "must be given at most once")
    return values[0] if values else None


def _limit(args: MultiDict[str, str], maximum: int) -> int:
    raw = _single(args, "limit")
    if raw is None:
        return DEFAULT_LIMIT
    reason = f"must be a whole number from 1 to {maximum}"
    if not raw.isascii() or not raw.isdigit() or len(raw) > _MAX_DIGITS:
        raise invalid_parameter("limit", f"{reason}, got {raw[:20]!r}")
    value = int(raw)
    if not 1 <= value <= maximum:
        raise invalid_parameter("limit", f"{reason}, got {value}")
    return value


def _format(args: MultiDict[str, str], accept: str | None) -> str:
    raw = _single(args, "format")
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
