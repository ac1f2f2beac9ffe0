"""Errors as RFC 9457 problem details (``application/problem+json``), for every path.

Clients of a JSON API should never have to parse an HTML error page, so Flask's
HTTP errors and unexpected exceptions are all turned into problem documents here.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, got_request_exception, request
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger("api")

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raised by a view to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers
        self.extensions = extensions


def invalid_parameter(name: str, reason: str, where: str = "query") -> Problem:
    return Problem(
        400,
        f"Invalid {where} parameter",
        f"{name}: {reason}",
        invalid_params=[{"name": name, "reason": reason}],
    )


def problem_response(
    status: int,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.path,
        **extensions,
    }
    response = Response(json.dumps(body), status=status, content_type=PROBLEM_JSON)
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(Problem)
    def _problem(problem: Problem) -> Response:
        return problem_response(
            problem.status, problem.title, problem.detail, problem.headers, **problem.extensions
        )

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        return problem_response(
            error.code or 500, error.name, error.description or error.name, headers
        )

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        # A handler for Exception keeps Flask from sending this itself; /metrics counts it.
        got_request_exception.send(app, _async_wrapper=app.ensure_sync, exception=error)
        server_error = InternalServerError()
        return problem_response(500, server_error.name, "the server failed to answer")
