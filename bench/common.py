"""Shared set-up for the benchmarks: a filled database and gunicorn processes to measure."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from alembic import command
from alembic.config import Config

from devtools.postgres import drop_database, ensure_database, find_server
from fakeproviders import FakeProviders
from scrapers.cli import main as scrapers_main
from topcoins.settings import database_url

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def filled_database(name: str = "topcoins_bench") -> Iterator[str]:
    """A migrated database holding one ranking and one price snapshot of the fake market."""
    admin = find_server(ROOT)
    drop_database(admin, name)
    url = ensure_database(admin, name)
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url({"DATABASE_URL": url})
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
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


def wrk(url: str, seconds: int, connections: int = 16) -> float:
    """Requests per second as wrk measures them (one thread, keep-alive)."""
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is needed (apt-get install wrk)")
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url],
        capture_output=True,
        text=True,
        check=True,
    )
    if "Non-2xx" in result.stdout or "Socket errors" in result.stdout:
        raise RuntimeError(f"wrk saw errors:\n{result.stdout}")
    match = re.search(r"Requests/sec:\s+([0-9.]+)", result.stdout)
    if match is None:
        raise RuntimeError(result.stdout)
    return float(match.group(1))
