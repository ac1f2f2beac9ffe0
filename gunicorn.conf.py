"""gunicorn settings for the API: ``gunicorn -c gunicorn.conf.py``.

Every value can be overridden from the environment, so the same file serves
``bin/local``, the benchmarks and the container image.
"""

import os
import sys

from topcoins.settings import ApiSettings, ConfigError

wsgi_app = "api:create_app()"
bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8080')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None


def on_starting(server: object) -> None:
    """Fail fast in the master, once, with one line, instead of in every worker."""
    try:
        ApiSettings.from_env(os.environ)
    except ConfigError as exc:
        print(f"api: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
