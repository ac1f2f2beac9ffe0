"""gunicorn settings for the API: the image's command is ``gunicorn -c gunicorn.conf.py``.

Every value can be overridden from the environment, so the same file serves
``bin/local``, the benchmarks and the container.  Nothing here writes to the root
filesystem: heartbeat files go to /dev/shm and the control socket is off.
"""

import math
import os
import sys
from pathlib import Path

from topcoins.logging import json_formatter_path
from topcoins.settings import ApiSettings, ConfigError


def cpu_limit() -> int:
    """CPUs this container may use: the cgroup v2 quota when set, else the machine's count."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return os.cpu_count() or 1


wsgi_app = "api:create_app()"
bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8080')}")
# Responses are served from memory, so workers are CPU-bound: two per CPU is plenty.
workers = int(os.environ.get("WEB_CONCURRENCY", str(max(2, 2 * cpu_limit()))))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# Kubernetes waits terminationGracePeriodSeconds (30 s in k8s/) before SIGKILL: finish first.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
control_socket_disable = True
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": json_formatter_path()}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "loggers": {
        "gunicorn.error": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
    },
    "root": {"handlers": ["stdout"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}


def on_starting(server: object) -> None:
    """Fail fast in the master, once, with one line, instead of in every worker."""
    try:
        ApiSettings.from_env(os.environ)
    except ConfigError as exc:
        print(f"api: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
