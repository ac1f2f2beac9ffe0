"""``GET /openapi.json``: the API's OpenAPI 3.1 description, as kept beside this module.

The document is written by hand (``api/openapi.json``) and read once, at import: every request
answers the same bytes with the same strong ``ETag``, so a client revalidates for nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Blueprint, Response, request
from werkzeug.http import quote_etag

bp = Blueprint("openapi", __name__)

DOCUMENT_PATH = Path(__file__).resolve().with_name("openapi.json")
DOCUMENT = DOCUMENT_PATH.read_bytes()
ETAG = quote_etag(hashlib.blake2s(DOCUMENT, digest_size=16).hexdigest())


@bp.get("/openapi.json")
def openapi_document() -> Response:
    response = Response(
        DOCUMENT,
        content_type="application/json",
        headers={"ETag": ETAG, "Cache-Control": "no-cache"},
    )
    response.make_conditional(request)
    return response
