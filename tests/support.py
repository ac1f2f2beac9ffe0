"""Test helpers that build real state: migrated databases and stored snapshots."""

from __future__ import annotations

import contextlib
import os
import runpy
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import requests
from alembic.config import Config
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.orm import Session

from scrapers import coindesk, coinmarketcap, cryptocompare
from scrapers.coinmarketcap import Quote
from scrapers.history import ensure_partitions
from scrapers.prices import latest_ranking, ticker_matches, write_prices
from scrapers.ranking import RankedCoin
from scrapers.ranks import write_ranking
from scrapers.snapshots import RunRecord, Snapshot, write_snapshot
from topcoins.models import RunKind, ScrapeRun, Source, SymbolAlias
from topcoins.settings import database_url

ROOT = Path(__file__).resolve().parent.parent
CMC_KEY = "test-cmc-key-5f1d"
COINDESK_KEY = "test-coindesk-key-8a2c"
CRYPTOCOMPARE_KEY = "test-cc-key-3e9b"
MEASURES = {
    Source.COINDESK: coindesk.MEASURE,
    Source.CRYPTOCOMPARE: cryptocompare.MEASURE,
    Source.COINMARKETCAP: coinmarketcap.VOLUME_MEASURE,
}
T = TypeVar("T")


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url({"DATABASE_URL": url})
    config.attributes["configure_logger"] = False
    return config


class Store:
    """Writes snapshots through the scrapers' own writer, for tests of what readers see."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ranking(
        self,
        coins: Sequence[tuple[str, str] | tuple[str, str, int | None, str | None] | RankedCoin],
        source: Source = Source.COINDESK,
        at: datetime | None = None,
    ) -> int:
        """Coins as (symbol, name), or (symbol, name, cmc_id, resolved_by) once resolved, or
        as a ranking client returns them (resolved by the provider's id where it names one).

        ``at`` is when the run happened, for a history; now by default.
        """
        resolved = [
            (coin, coin.cmc_id, "provider" if coin.cmc_id else None)
            if isinstance(coin, RankedCoin)
            else (
                RankedCoin(rank=rank, symbol=coin[0], name=coin[1]),
                coin[2] if len(coin) > 2 else None,
                coin[3] if len(coin) > 3 else None,
            )
            for rank, coin in enumerate(coins, start=1)
        ]
        record = RunRecord(
            RunKind.RANKING, source, at or datetime.now(UTC), measure=MEASURES[source]
        )
        return self._write(
            record,
            Snapshot(len(resolved), partial(write_ranking, resolved=resolved)),
            finished_at=at,
        )

    def prices(
        self,
        quotes: Sequence[tuple[int, str, str, int | None, str | None] | Quote],
        at: datetime | None = None,
    ) -> int:
        """Quotes as (cmc_id, symbol, name, cmc_rank, price), as a lookup by id or ticker gives,
        or as the client parsed them.

        Coins of the latest ranking without an id are matched to them by ticker, as a prices
        run does while the id map is not trusted.
        """
        found = [
            quote
            if isinstance(quote, Quote)
            else Quote(
                cmc_id=quote[0],
                symbol=quote[1],
                name=quote[2],
                slug=None,
                cmc_rank=quote[3],
                price_usd=None if quote[4] is None else Decimal(quote[4]),
                last_updated=None,
            )
            for quote in quotes
        ]
        with Session(self.engine) as session, session.begin():
            ranking = latest_ranking(session)
        unresolved = [e for e in ranking.entries if e.cmc_id is None] if ranking else []
        write = partial(
            write_prices,
            ranking=ranking,
            quotes=found,
            matches=ticker_matches(unresolved, found),
        )
        record = RunRecord(RunKind.PRICES, Source.COINMARKETCAP, at or datetime.now(UTC))
        return self._write(record, Snapshot(len(found), write, credit_count=1), finished_at=at)

    def alias(self, symbol: str, cmc_id: int) -> None:
        with Session(self.engine) as session, session.begin():
            session.add(SymbolAlias(symbol=symbol, cmc_id=cmc_id, note="test"))

    def age(self, days: int) -> None:
        """Every stored run, with its rows, moved ``days`` back, as if it had run then."""
        with Session(self.engine) as session, session.begin():
            for day in session.scalars(select(func.distinct(ScrapeRun.day))).all():
                ensure_partitions(session, day - days)
            for statement in (
                "UPDATE scrape_runs SET day = day - :d, started_at = started_at - make_interval("
                "days => :d), finished_at = finished_at - make_interval(days => :d)",
                "UPDATE ranking_entries SET day = day - :d",
                "UPDATE price_quotes SET day = day - :d",
            ):
                session.execute(text(statement), {"d": days})

    def top_coins(self) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(text("SELECT * FROM top_coins ORDER BY rank"))
            return [dict(row._mapping) for row in rows]

    def _write(
        self, record: RunRecord, snapshot: Snapshot, finished_at: datetime | None = None
    ) -> int:
        with Session(self.engine) as session:
            with session.begin():
                ensure_partitions(session, record.day)
            with session.begin():
                run = write_snapshot(session, record, snapshot)
                if finished_at is not None:
                    run.finished_at = finished_at
                return run.id


def wait_for(predicate: Callable[[], T], timeout: float = 2.0) -> T:
    """Poll until ``predicate`` is truthy or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.02)


def run_python(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` from the repository root, as an operator or a container would run it."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_scrapers(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_python(env, "-m", "scrapers", *args)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gunicorn:
    """The API started exactly as its image starts it (``gunicorn -c gunicorn.conf.py``)."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 2) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
            cwd=ROOT,
            env={**env, "BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": str(workers)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_until_up(self) -> None:
        def up() -> bool:
            try:
                return requests.get(self.base + "/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                # Refused before the bind, or a read timeout while a worker boots.
                return False

        assert wait_for(up, timeout=20), self.output()

    def wait_until_ready(self, answers: int = 8) -> None:
        """Ready answers in a row, which gunicorn spreads over its workers: each has a list."""

        def ready() -> bool:
            try:
                return all(
                    requests.get(self.base + "/readyz", timeout=2).status_code == 200
                    for _ in range(answers)
                )
            except requests.RequestException:
                return False

        assert wait_for(ready, timeout=20), self.output()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self._log.close()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()


def gunicorn_setting(name: str) -> object:
    """A value from gunicorn.conf.py, whose loading sets process environment: restore it."""
    saved = dict(os.environ)
    try:
        return runpy.run_path(str(ROOT / "gunicorn.conf.py"))[name]
    finally:
        os.environ.clear()
        os.environ.update(saved)


class RecordingServer:
    """A loopback HTTP receiver (Pushgateway, OTLP collector) that records what is sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append((self.command, self.path, self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = _record

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


Body = bytes | Callable[[dict[str, str]], bytes]


class PayloadServer:
    """Loopback HTTP serving fixed bodies by path: recorded provider payloads, byte for byte.

    A body may also be a function of the query, for a provider's pages.
    """

    def __init__(self, bodies: dict[str, Body]) -> None:
        self.requests: list[str] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                path, _, query = self.path.partition("?")
                found = bodies.get(path)
                body = found(dict(parse_qsl(query))) if callable(found) else found
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> PayloadServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def recorded_statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the block runs."""
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


class TcpProxy:
    """A loopback TCP relay that can go silent: bytes stop flowing, but no connection closes.

    That is what a network partition looks like from both ends, unlike a refused connection.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.silent = threading.Event()
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._relay, args=(source, sink), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if self.silent.is_set():
                continue
            try:
                sink.sendall(data)
            except OSError:
                return

    def stop(self) -> None:
        self._stopping.set()
        for sock in [self.listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()
