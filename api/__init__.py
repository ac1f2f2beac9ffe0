"""The read-only HTTP API: ``gunicorn "api:create_app()"``."""

from __future__ import annotations

import os
import sys

from flask import Flask, Response
from flask.globals import request_ctx
from flask.typing import ResponseReturnValue
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from prometheus_client import Counter

from topcoins import __version__
from topcoins.db import Timeouts, make_engine
from topcoins.jsonlogs import configure_logging
from topcoins.settings import ApiSettings, ConfigError

from . import health, history, list_endpoint, metrics, openapi, problems, request_id
from .cache import TopListCache
from .freshness import FreshnessCollector

# The API's own queries are small: anything slower is a database in trouble, and the
# refresher thread, not a request, is what waits on it.
API_TIMEOUTS = Timeouts(connect=3.0, statement=5.0, lock=2.0, idle_in_transaction=10.0)


class TopCoinsFlask(Flask):
    def dispatch_request(self) -> ResponseReturnValue:
        """Records the view that answers, for the request metrics (``api.metrics``)."""
        handled = request_ctx.request
        if handled.url_rule is not None:
            handled.environ[metrics.ENDPOINT_KEY] = handled.url_rule.endpoint
        return super().dispatch_request()

    def make_default_options_response(self) -> Response:
        """``OPTIONS`` names the allowed methods and has no body, so no content type."""
        response = super().make_default_options_response()
        response.status_code = 204
        del response.headers["Content-Type"]
        return response


def create_app(settings: ApiSettings | None = None) -> Flask:
    """gunicorn's factory (``api:create_app()``) reads the environment, once, here."""
    if settings is None:
        try:
            settings = ApiSettings.from_env(os.environ)
        except ConfigError as exc:
            print(f"api: configuration error: {exc}", file=sys.stderr)  # noqa: T201
            sys.exit(2)
        configure_logging(settings.log_level)
    app = TopCoinsFlask(__name__)
    engine = make_engine(
        settings.database_url, application_name="top-coins-api", timeouts=API_TIMEOUTS
    )
    app.config.update(
        MAX_LIMIT=settings.max_limit,
        GIT_COMMIT=settings.commit,
        HISTORY_MAX_POINTS=settings.history_max_points,
        HISTORY_BUDGET_SECONDS=settings.history_budget_seconds,
    )
    registry = metrics.registry(settings.metrics_multiprocess)
    failures = Counter(
        "top_coins_refresh_failures",
        "Polls of the database by a worker's refresher that failed, whatever the error",
        registry=registry,
    )
    cache = TopListCache(
        engine,
        stale_after_seconds=settings.stale_after_seconds,
        refresh_interval_seconds=settings.refresh_interval_seconds,
        state_dir=settings.state_dir,
        failures=failures,
    )
    app.extensions["engine"] = engine
    app.extensions["toplist"] = cache
    app.extensions["history"] = history.HistoryMemo()
    problems.init_app(app)
    app.register_blueprint(list_endpoint.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(history.bp)
    app.register_blueprint(openapi.bp)
    if settings.tracing:
        # Only when spans are exported: a server span costs more than the rest of a request.
        # Probes and scrapes every few seconds would drown the traces that matter.
        FlaskInstrumentor.instrument_app(  # type: ignore[no-untyped-call]  # untyped upstream
            app, excluded_urls="healthz,readyz,metrics"
        )
    else:
        app.wsgi_app = list_endpoint.TopListShortcut(app.wsgi_app, cache, app.config)  # type: ignore[method-assign]
    freshness = FreshnessCollector(cache, __version__, app.config["GIT_COMMIT"])
    metrics.init_app(app, registry, (freshness,))
    request_id.init_app(app)
    cache.start()
    return app
