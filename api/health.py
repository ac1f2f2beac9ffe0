"""Probes and build information: ``/healthz``, ``/readyz``, ``/version``.

None of them touches the database: a probe must answer while it is slow or away.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from topcoins import __version__

from .cache import TopListCache
from .problems import Problem

bp = Blueprint("health", __name__)

# The version of the HTTP interface (api/openapi.json's info.version), apart from the
# release's: a breaking change goes under a /v2 prefix, and / stays what it is.
API_VERSION = "1.1.0"


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers; deliberately independent of the database."""
    return _uncached(jsonify(status="ok"))


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness means "I can serve": a list is loaded, under a schema not behind this code.

    Whether the database answers right now is for ``/metrics`` and the alerts: during an
    outage every pod still serves its last list, so none should leave the Service.  A pod
    whose image expects a newer schema than the database has stays out: the rollout gate.
    """
    cache: TopListCache = current_app.extensions["toplist"]
    ready, reason = cache.readiness()
    if not ready:
        raise Problem(503, "Not ready", reason)
    snapshot = cache.current().snapshot
    return _uncached(
        jsonify(
            status="ready",
            ranking_run_id=snapshot.ranking_run_id,
            price_run_id=snapshot.price_run_id,
        )
    )


@bp.get("/version")
def version() -> Response:
    return _uncached(
        jsonify(
            version=__version__,
            api_version=API_VERSION,
            commit=current_app.config["GIT_COMMIT"],
        )
    )


def _uncached(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response
