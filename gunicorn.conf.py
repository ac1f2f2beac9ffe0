"""gunicorn settings for the API: the image's command is ``gunicorn -c gunicorn.conf.py``.

Every value can be overridden from the environment, so the same file serves
``bin/local``, the benchmarks and the container.  Nothing here writes to the root
filesystem: heartbeat files go to /dev/shm, metrics to a directory under /tmp (an
emptyDir in Kubernetes), and the control socket is off.
"""

import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

from topcoins.jsonlogs import context_filter_path, json_formatter_path
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
logger_class = "topcoins.access_log.AccessLogger"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": json_formatter_path()}},
    "filters": {"context": {"()": context_filter_path()}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["context"],
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
    """Fail fast in the master, once, with one line; start metrics from a clean directory.

    Runs in the master before any worker forks (and before anything imports
    prometheus_client, which reads its directory once, at import): the directories the
    workers share are chosen here, into the environment the workers inherit.
    """
    # Workers count requests in files here, summed at /metrics.
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="top-coins-metrics-")
    # The list the workers serve, saved for a worker that starts while the database is away:
    # one directory per server, so two servers on one machine never serve each other's lists.
    if not os.environ.get("API_STATE_DIR"):
        os.environ["API_STATE_DIR"] = tempfile.mkdtemp(prefix="top-coins-api-")
    try:
        ApiSettings.from_env(os.environ)
    except ConfigError as exc:
        print(f"api: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)


def post_fork(server: object, worker: object) -> None:
    """Tracing after the fork: the span exporter's thread must belong to the worker."""
    from topcoins.settings import exports_traces
    from topcoins.tracing import configure_tracing

    if exports_traces(os.environ):
        configure_tracing("top-coins-api", os.environ)


def child_exit(server: object, worker: object) -> None:
    """A dead worker's gauges must not linger in the multiprocess metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
