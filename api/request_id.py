"""``X-Request-ID``: kept from the caller (or made up), returned, and put in every log line."""

from __future__ import annotations

import os
import re

from flask import Flask, Response, g, request

from topcoins.logging import request_id

HEADER = "X-Request-ID"
# Anything else (too long, spaces, control characters) is replaced, never logged as given.
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def init_app(app: Flask) -> None:
    @app.before_request
    def _take_request_id() -> None:
        given = request.environ.get("HTTP_X_REQUEST_ID")
        value = given if given and _ACCEPTABLE.fullmatch(given) else os.urandom(16).hex()
        g.request_id = value
        g.request_id_token = request_id.set(value)

    @app.after_request
    def _return_request_id(response: Response) -> Response:
        value = g.get("request_id")
        if value is not None:
            response.headers[HEADER] = value
        return response

    @app.teardown_request
    def _forget_request_id(_: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            request_id.reset(token)
