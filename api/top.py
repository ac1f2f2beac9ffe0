"""``GET /``: the merged top list as JSON or CSV."""

from __future__ import annotations

import time
from functools import lru_cache
from urllib.parse import parse_qsl

from flask import Blueprint, Response, current_app, request
from werkzeug.datastructures import MIMEAccept, MultiDict
from werkzeug.http import parse_accept_header

from .cache import NoDataYet, NotLoaded, TopListCache
from .problems import Problem, invalid_parameter
from .toplist import MEDIA_TYPES

bp = Blueprint("top", __name__)

DEFAULT_LIMIT = 200
_OFFERED = ["application/json", "text/csv"]
_MAX_DIGITS = 9


@bp.get("/")
def top_list() -> Response:
    environ = request.environ
    limit, fmt = request_shape(
        environ.get("QUERY_STRING", ""), environ.get("HTTP_ACCEPT"), current_app.config["MAX_LIMIT"]
    )
    cache: TopListCache = current_app.extensions["toplist"]
    try:
        top = cache.current()
    except NoDataYet as exc:
        raise Problem(503, "No data yet", f"{exc}; the API serves once both scrapers ran") from None
    except NotLoaded as exc:
        raise Problem(503, "Not loaded yet", str(exc), headers={"Retry-After": "1"}) from None
    rendered = top.render(limit, fmt, time.time())
    response = Response(rendered.body, headers=rendered.headers)
    if "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MODIFIED_SINCE" in environ:
        response.make_conditional(request)
    return response


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
