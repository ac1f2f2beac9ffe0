"""Probes and build information: ``/healthz``, ``/readyz``, ``/version``."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError, SQLAlchemyError

from topcoins import __version__

from .problems import Problem

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers; deliberately independent of the database."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: the database answers and its schema is the one this code expects."""
    engine: Engine = current_app.extensions["engine"]
    expected: str = current_app.config["SCHEMA_HEAD"]
    try:
        with engine.connect() as connection:
            connection.execute(text("SET LOCAL statement_timeout = '2s'"))
            found = connection.scalar(text("SELECT version_num FROM alembic_version"))
    except ProgrammingError:
        found = None
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        raise Problem(503, "Not ready", f"database unavailable ({type(cause).__name__})") from None
    if found != expected:
        raise Problem(
            503,
            "Not ready",
            f"database schema is at {found or 'nothing'}, expected {expected}: run migrations",
        )
    return jsonify(status="ready", schema=found)


@bp.get("/version")
def version() -> Response:
    return jsonify(version=__version__, commit=current_app.config["GIT_COMMIT"])
