"""``GET /``: the merged top list as JSON or CSV."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request
from werkzeug.datastructures import MultiDict

from .problems import Problem, invalid_parameter
from .toplist import DatabaseUnavailable, NoDataYet, TopListCache

bp = Blueprint("top", __name__)

DEFAULT_LIMIT = 200
MEDIA_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8"}
_OFFERED = ["application/json", "text/csv"]
_MAX_DIGITS = 9


@bp.get("/")
def top_list() -> Response:
    limit = _limit(request.args, current_app.config["MAX_LIMIT"])
    fmt = _format(request.args)
    cache: TopListCache = current_app.extensions["toplist"]
    try:
        top = cache.current()
    except NoDataYet as exc:
        raise Problem(503, "No data yet", f"{exc}; the API serves once both scrapers ran") from None
    except DatabaseUnavailable as exc:
        raise Problem(503, "Database unavailable", str(exc)) from None
    rendered = top.render(limit, fmt)
    response = Response(rendered.body, content_type=MEDIA_TYPES[fmt])
    response.set_etag(rendered.etag)
    response.last_modified = top.last_modified
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Vary"] = "Accept"
    return response.make_conditional(request)


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


def _format(args: MultiDict[str, str]) -> str:
    raw = _single(args, "format")
    if raw is not None:
        if raw not in MEDIA_TYPES:
            raise invalid_parameter("format", f"must be one of json, csv; got {raw[:20]!r}")
        return raw
    if "Accept" not in request.headers:
        return "json"
    best = request.accept_mimetypes.best_match(_OFFERED)
    if best is None:
        raise Problem(
            406,
            "Not Acceptable",
            "this resource is available as application/json or text/csv",
        )
    return "csv" if best == "text/csv" else "json"
