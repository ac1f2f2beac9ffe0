"""The read-only HTTP API: ``gunicorn "api:create_app()"``."""

from __future__ import annotations

import os
import sys

from flask import Flask
from opentelemetry.instrumentation.flask import FlaskInstrumentor

from topcoins.build import git_commit, schema_head
from topcoins.db import make_engine
from topcoins.logging import configure_logging
from topcoins.settings import ApiSettings, ConfigError

from . import health, metrics, problems, request_id, top
from .toplist import TopListCache


def create_app(settings: ApiSettings | None = None) -> Flask:
    if settings is None:
        configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
        try:
            settings = ApiSettings.from_env(os.environ)
        except ConfigError as exc:
            print(f"api: configuration error: {exc}", file=sys.stderr)  # noqa: T201
            sys.exit(2)
    app = Flask(__name__)
    engine = make_engine(settings.database_url, application_name="top-coins-api")
    app.config.update(
        MAX_LIMIT=settings.max_limit,
        SCHEMA_HEAD=schema_head(),
        GIT_COMMIT=git_commit(os.environ),
    )
    app.extensions["engine"] = engine
    app.extensions["toplist"] = TopListCache(
        engine,
        stale_after_seconds=settings.stale_after_seconds,
        refresh_interval_seconds=settings.refresh_interval_seconds,
    )
    problems.init_app(app)
    request_id.init_app(app)
    app.register_blueprint(top.bp)
    app.register_blueprint(health.bp)
    metrics.init_app(
        app,
        engine,
        multiprocess=settings.metrics_multiprocess,
        commit=app.config["GIT_COMMIT"],
    )
    if settings.tracing:
        # Only when spans are exported: a server span costs more than the rest of a request.
        # Probes and scrapes every few seconds would drown the traces that matter.
        FlaskInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
    return app
