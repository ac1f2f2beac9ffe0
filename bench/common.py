"""Shared set-up for the benchmarks: a filled database, and the gunicorn and nginx processes
to measure with wrk."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
from alembic import command
from alembic.config import Config

from devtools.postgres import drop_database, ensure_database, find_server
from fakeproviders import FakeProviders
from scrapers.cli import main as scrapers_main
from tests import frontend
from tests.support import free_port
from topcoins.settings import database_url

ROOT = Path(__file__).resolve().parent.parent


def migrated_database(admin: str, name: str) -> str:
    """A fresh database ``name`` at the schema's head; its URL."""
    drop_database(admin, name)
    url = ensure_database(admin, name)
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url({"DATABASE_URL": url})
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
    return url


@contextlib.contextmanager
def filled_database(name: str = "topcoins_bench") -> Iterator[str]:
    """A migrated database holding one ranking and one price snapshot of the fake market."""
    admin = find_server(ROOT)
    url = migrated_database(admin, name)
    with FakeProviders(coindesk_key="bench", coinmarketcap_key="bench") as fake:
        env = {
            "DATABASE_URL": url,
            "COINDESK_API_KEY": "bench",
            "COINDESK_BASE_URL": fake.coindesk_url,
            "COINMARKETCAP_API_KEY": "bench",
            "COINMARKETCAP_BASE_URL": fake.coinmarketcap_url,
            "LOG_LEVEL": "WARNING",
        }
        for job in ("ranks", "prices"):
            if scrapers_main([job], env) != 0:
                raise RuntimeError(f"{job} scrape failed")
    try:
        yield url
    finally:
        drop_database(admin, name)


@contextlib.contextmanager
def gunicorn(
    app: str, env: dict[str, str], workers: int = 2, access_log: bool = False
) -> Iterator[str]:
    """gunicorn with the repository's config file; only the app differs between runs."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app],
        cwd=ROOT,
        env={
            **os.environ,
            **env,
            "BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": str(workers),
            "GUNICORN_ACCESS_LOG": "-" if access_log else "",
            "LOG_LEVEL": "WARNING",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(base + "/healthz", timeout=1).status_code < 500:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"gunicorn {app} did not start")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def nginx_in_front(upstream: str) -> Iterator[frontend.Nginx]:
    """nginx with the project's template in front of ``upstream`` (host:port), rendered and run
    exactly as the tests run it (tests/frontend.py), which is how the API pod runs it."""
    if frontend.MISSING is not None:
        sys.exit(f"bench: {frontend.MISSING}")
    with frontend.Nginx(upstream) as nginx:
        yield nginx


# What the template sets for connections: the static server below copies them, so that the two
# nginx servers differ only in what they do per request.
CONNECTION_DIRECTIVES = (
    "worker_processes",
    "worker_rlimit_nofile",
    "worker_connections",
    "keepalive_timeout",
    "server_tokens",
)


def template_directive(name: str) -> str:
    """The value of a directive as the template first sets it: keepalive_timeout is set again,
    for gunicorn's connections, inside the upstream block that follows the clients' one."""
    value = re.search(rf"^\s*{name}\s+([^;]+);", frontend.TEMPLATE.read_text(), re.MULTILINE)
    assert value is not None, name
    return value.group(1)


@contextlib.contextmanager
def nginx_static(body: bytes, content_type: str) -> Iterator[str]:
    """nginx answering ``GET /`` with ``body`` read from a file, as its cache answers are: the
    least an answer of these bytes can cost nginx. The template's connection settings, no log."""
    binary = frontend.nginx_binary()
    if binary is None or frontend.MISSING is not None:
        sys.exit(f"bench: {frontend.MISSING}")
    settings = {name: template_directive(name) for name in CONNECTION_DIRECTIVES}
    port = free_port()
    directory = frontend.scratch_directory()
    temp_paths = "\n".join(
        f'    {kind}_temp_path "{directory}/{kind}";'
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = f"""worker_processes {settings["worker_processes"]};
worker_rlimit_nofile {settings["worker_rlimit_nofile"]};
pid "{directory}/nginx.pid";
error_log stderr warn;
events {{
    worker_connections {settings["worker_connections"]};
}}
http {{
    server_tokens {settings["server_tokens"]};
    keepalive_timeout {settings["keepalive_timeout"]};
    access_log off;
{temp_paths}
    server {{
        listen 127.0.0.1:{port};
        root "{directory}";
        location = / {{
            default_type "{content_type}";
            try_files /body =404;
        }}
    }}
}}
"""
    process = None
    try:
        (directory / "body").write_bytes(body)
        (directory / "nginx.conf").write_text(config)
        log = directory / "nginx.log"
        with log.open("ab") as output:
            process = subprocess.Popen(
                [binary, "-c", str(directory / "nginx.conf"), *frontend.RUN_FLAGS],
                stdout=output,
                stderr=output,
            )
        deadline = time.monotonic() + 10
        while not frontend.listening(port):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"static nginx did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        if process is not None and process.poll() is None:
            # SIGQUIT: nginx's graceful shutdown.
            process.send_signal(signal.SIGQUIT)
            process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class Measurement:
    """One wrk run: requests per second, and latency percentiles in seconds."""

    rate: float
    p50: float
    p99: float


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _seconds(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def measure(url: str, seconds: int, connections: int = 16) -> Measurement:
    """wrk with one thread, keep-alive, and its latency distribution."""
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is needed (apt-get install wrk)")
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    )
    if "Non-2xx" in result.stdout or "Socket errors" in result.stdout:
        raise RuntimeError(f"wrk saw errors:\n{result.stdout}")
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", result.stdout)
    p50 = re.search(r"^\s+50%\s+([0-9.]+)(us|ms|s)$", result.stdout, re.M)
    p99 = re.search(r"^\s+99%\s+([0-9.]+)(us|ms|s)$", result.stdout, re.M)
    if rate is None or p50 is None or p99 is None:
        raise RuntimeError(result.stdout)
    return Measurement(float(rate.group(1)), _seconds(*p50.groups()), _seconds(*p99.groups()))


def wrk(url: str, seconds: int, connections: int = 16) -> float:
    """Requests per second as wrk measures them (one thread, keep-alive)."""
    return measure(url, seconds, connections).rate
