"""Runs the three fake providers on loopback ports, with fault injection and request recording.

Faults are applied by a WSGI wrapper in front of each Flask app, so the apps themselves only know
how to answer correctly; each provider module supplies its own error formats and payload
mutations, because the providers fail in very different ways.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import json
import logging
import math
import random
import socket
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Response

from fakeproviders import coindesk, coinmarketcap, cryptocompare
from fakeproviders.coinmarketcap import CoinMarketCapAccount
from fakeproviders.market import Market, render_json

COINDESK = "coindesk"
CRYPTOCOMPARE = "cryptocompare"
COINMARKETCAP = "coinmarketcap"
PROVIDERS = (COINDESK, CRYPTOCOMPARE, COINMARKETCAP)
DEFAULT_HANG_SECONDS = 30.0
DEFAULT_RETRY_AFTER_SECONDS = 1.0

_log = logging.getLogger("fakeproviders")
_RAW_HEADERS = coinmarketcap.RAW_HEADERS_ENVIRON_KEY
_FAULT = "fakeproviders.fault"


class Fault(enum.StrEnum):
    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    RATE_LIMITED = "rate_limited"
    ERROR_PAYLOAD = "error_payload"
    MALFORMED_JSON = "malformed_json"
    EMPTY = "empty"
    SHORT = "short"
    MISSING_FIELDS = "missing_fields"
    HANG = "hang"
    CONNECTION_RESET = "connection_reset"
    DAILY_LIMIT = "daily_limit"
    MONTHLY_LIMIT = "monthly_limit"
    IP_RATE_LIMITED = "ip_rate_limited"


class HeaderDict(dict[str, str]):
    """Keeps header names as the client sent them, but looks them up case-insensitively."""

    def _name(self, key: object) -> str | None:
        if not isinstance(key, str):
            return None
        wanted = key.lower()
        return next((name for name in self if name.lower() == wanted), None)

    def __getitem__(self, key: str) -> str:
        name = self._name(key)
        if name is None:
            raise KeyError(key)
        return super().__getitem__(name)

    def __contains__(self, key: object) -> bool:
        return self._name(key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        name = self._name(key)
        return default if name is None else super().__getitem__(name)


@dataclass(frozen=True)
class RecordedRequest:
    provider: str
    method: str
    path: str
    query: dict[str, str]
    headers: HeaderDict
    raw_url: str
    fault: Fault | None = None


@dataclass
class _PendingFault:
    fault: Fault
    remaining: int
    argument: float | None


@dataclass(frozen=True)
class _ProviderFaults:
    """How one provider looks when it fails; supplied by the provider modules."""

    server_error: Callable[[], Response]
    rate_limited: Callable[[str | None], Response]
    daily_limit: Callable[[str | None], Response]
    monthly_limit: Callable[[str | None], Response]
    ip_rate_limited: Callable[[str | None], Response]
    error_payload: Callable[[], Response]
    empty: Callable[[Any], Any]
    short: Callable[[Any], Any]
    missing_fields: Callable[[Any], Any]


def _cryptocompare_limit(_retry_after: str | None) -> Response:
    """The legacy API has one rate-limit answer, HTTP 200, whichever limit was hit."""
    return cryptocompare.rate_limited_response()


_PROVIDER_FAULTS = {
    COINDESK: _ProviderFaults(
        server_error=coindesk.server_error_response,
        rate_limited=coindesk.rate_limited_response,
        daily_limit=coindesk.daily_limit_response,
        monthly_limit=coindesk.monthly_limit_response,
        ip_rate_limited=coindesk.ip_rate_limited_response,
        error_payload=coindesk.error_payload_response,
        empty=coindesk.empty_payload,
        short=coindesk.short_payload,
        missing_fields=coindesk.missing_fields_payload,
    ),
    CRYPTOCOMPARE: _ProviderFaults(
        server_error=cryptocompare.server_error_response,
        rate_limited=_cryptocompare_limit,
        daily_limit=_cryptocompare_limit,
        monthly_limit=_cryptocompare_limit,
        ip_rate_limited=_cryptocompare_limit,
        error_payload=cryptocompare.error_payload_response,
        empty=cryptocompare.empty_payload,
        short=cryptocompare.short_payload,
        missing_fields=cryptocompare.missing_fields_payload,
    ),
    COINMARKETCAP: _ProviderFaults(
        server_error=coinmarketcap.server_error_response,
        rate_limited=coinmarketcap.rate_limited_response,
        daily_limit=coinmarketcap.daily_limit_response,
        monthly_limit=coinmarketcap.monthly_limit_response,
        ip_rate_limited=coinmarketcap.ip_rate_limited_response,
        error_payload=coinmarketcap.error_payload_response,
        empty=coinmarketcap.empty_payload,
        short=coinmarketcap.short_payload,
        missing_fields=coinmarketcap.missing_fields_payload,
    ),
}


class _DropConnection(BaseException):
    """A BaseException so werkzeug's handler does not turn it into a 500 response."""


class _RequestHandler(WSGIRequestHandler):
    provider = ""

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        environ[_RAW_HEADERS] = list(self.headers.items())
        return environ

    def run_wsgi(self) -> None:
        try:
            super().run_wsgi()
        except _DropConnection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                linger = struct.pack("ii", 1, 0)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            _log.info("%s %s %s -> connection dropped", self.provider, self.command, self.path)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        environ = getattr(self, "environ", {})
        fault = environ.get(_FAULT)
        suffix = f" [fault={fault}]" if fault else ""
        _log.info("%s %s %s -> %s%s", self.provider, self.command, self.path, code, suffix)

    def log(self, type: str, message: str, *args: Any) -> None:
        text = message % args if args else message
        level = logging.ERROR if type == "error" else logging.INFO
        _log.log(level, "%s: %s", self.provider, text.rstrip())


class _FaultingApp:
    def __init__(self, owner: FakeProviders, provider: str, app: Flask) -> None:
        self._owner = owner
        self._provider = provider
        self._app = app
        self._faults = _PROVIDER_FAULTS[provider]

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        pending = self._owner._arrive(self._provider, environ)
        if pending is None:
            return self._app(environ, start_response)
        environ[_FAULT] = str(pending.fault)
        response = self._faulty_response(pending, environ)
        return response(environ, start_response)

    def _faulty_response(self, pending: _PendingFault, environ: dict[str, Any]) -> Response:
        fault, argument = pending.fault, pending.argument
        if fault is Fault.HANG:
            seconds = DEFAULT_HANG_SECONDS if argument is None else argument
            if self._owner._stopping.wait(seconds):
                raise _DropConnection
            return Response.from_app(self._app, environ, buffered=True)
        if fault is Fault.CONNECTION_RESET:
            raise _DropConnection
        if fault is Fault.HTTP_500:
            return self._faults.server_error()
        if fault is Fault.HTTP_503:
            return _unavailable(DEFAULT_RETRY_AFTER_SECONDS if argument is None else argument)
        limit = {
            Fault.RATE_LIMITED: self._faults.rate_limited,
            Fault.DAILY_LIMIT: self._faults.daily_limit,
            Fault.MONTHLY_LIMIT: self._faults.monthly_limit,
            Fault.IP_RATE_LIMITED: self._faults.ip_rate_limited,
        }.get(fault)
        if limit is not None:
            return limit(None if argument is None else _seconds(argument))
        if fault is Fault.ERROR_PAYLOAD:
            return self._faults.error_payload()
        normal = Response.from_app(self._app, environ, buffered=True)
        body = normal.get_data()
        if fault is Fault.MALFORMED_JSON:
            return Response(body[: len(body) // 2], status=200, content_type=normal.content_type)
        if normal.status_code != 200 or not normal.is_json:
            return normal
        mutate = {
            Fault.EMPTY: self._faults.empty,
            Fault.SHORT: self._faults.short,
            Fault.MISSING_FIELDS: self._faults.missing_fields,
        }[fault]
        payload = mutate(json.loads(body, parse_float=Decimal))
        normal.set_data(render_json(payload).encode())
        return normal


def _seconds(argument: float) -> str:
    return str(max(0, math.ceil(argument)))


def _unavailable(retry_after: float) -> Response:
    body = (
        "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
        "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n</body>\r\n</html>\r\n"
    )
    return Response(
        body, status=503, content_type="text/html", headers={"Retry-After": _seconds(retry_after)}
    )


@dataclass
class _Running:
    server: BaseWSGIServer
    thread: threading.Thread


@dataclass
class _Settings:
    host: str
    ports: dict[str, int]
    keys: dict[str, str | None]
    drift: bool
    seed: int


class FakeProviders:
    """The three fake providers, started on loopback in background threads.

    ``market`` and ``coinmarketcap_account`` are shared with the request threads and read on
    every request, so tests can change them between (or during) requests; ``reset`` puts both
    back as they were at construction. A key of None means that provider needs no key.
    """

    def __init__(
        self,
        market: Market | None = None,
        *,
        coindesk_key: str | None = "test-coindesk-key",
        cryptocompare_key: str | None = "test-cryptocompare-key",
        coinmarketcap_key: str = "test-cmc-key",
        host: str = "127.0.0.1",
        coindesk_port: int = 0,
        cryptocompare_port: int = 0,
        coinmarketcap_port: int = 0,
        drift: bool = False,
        seed: int = 0,
        coinmarketcap_account: CoinMarketCapAccount | None = None,
    ) -> None:
        self.market = market if market is not None else Market.bundled()
        self.coinmarketcap_account = (
            coinmarketcap_account if coinmarketcap_account is not None else CoinMarketCapAccount()
        )
        self.requests: list[RecordedRequest] = []
        self._pristine = copy.deepcopy(self.market)
        self._pristine_account = copy.deepcopy(self.coinmarketcap_account)
        self._settings = _Settings(
            host=host,
            ports={
                COINDESK: coindesk_port,
                CRYPTOCOMPARE: cryptocompare_port,
                COINMARKETCAP: coinmarketcap_port,
            },
            keys={
                COINDESK: coindesk_key,
                CRYPTOCOMPARE: cryptocompare_key,
                COINMARKETCAP: coinmarketcap_key,
            },
            drift=drift,
            seed=seed,
        )
        self._faults: dict[str, list[_PendingFault]] = {name: [] for name in PROVIDERS}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._running: dict[str, _Running] = {}

    def start(self) -> FakeProviders:
        if self._running:
            return self
        self._stopping.clear()
        drift_rng = random.Random(self._settings.seed) if self._settings.drift else None
        apps = {
            COINDESK: coindesk.create_app(
                self.market, api_key=self._settings.keys[COINDESK], drift_rng=drift_rng
            ),
            CRYPTOCOMPARE: cryptocompare.create_app(
                self.market, api_key=self._settings.keys[CRYPTOCOMPARE], drift_rng=drift_rng
            ),
            COINMARKETCAP: coinmarketcap.create_app(
                self.market,
                api_key=self._settings.keys[COINMARKETCAP] or "",
                drift_rng=drift_rng,
                account=self.coinmarketcap_account,
            ),
        }
        try:
            for name, app in apps.items():
                self._running[name] = self._serve(name, app)
        except BaseException:
            self.stop()
            raise
        return self

    def _serve(self, name: str, app: Flask) -> _Running:
        handler = type(f"{name.title()}RequestHandler", (_RequestHandler,), {"provider": name})
        host, port = self._settings.host, self._settings.ports[name]
        try:
            server = make_server(
                host, port, _FaultingApp(self, name, app), threaded=True, request_handler=handler
            )
        except SystemExit as exc:
            raise OSError(f"{name}: cannot listen on {host}:{port}") from exc
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fakeproviders-{name}",
            daemon=True,
        )
        thread.start()
        return _Running(server=server, thread=thread)

    def stop(self) -> None:
        """Fast even with hanging requests: they wake up on the stop event and drop."""
        self._stopping.set()
        running, self._running = self._running, {}
        for item in running.values():
            item.server.shutdown()
            item.thread.join(timeout=5)
            item.server.server_close()

    def __enter__(self) -> FakeProviders:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def coindesk_url(self) -> str:
        return self._url(COINDESK)

    @property
    def cryptocompare_url(self) -> str:
        return self._url(CRYPTOCOMPARE)

    @property
    def coinmarketcap_url(self) -> str:
        return self._url(COINMARKETCAP)

    def _url(self, name: str) -> str:
        if name not in self._running:
            raise RuntimeError("FakeProviders is not running; call start() first")
        host = self._settings.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self._running[name].server.port}"

    def inject(
        self, provider: str, fault: Fault | str, *, times: int = 1, argument: float | None = None
    ) -> None:
        """Queues a fault for the next ``times`` requests to ``provider`` (-1: until cleared)."""
        if provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")
        if times == 0 or times < -1:
            raise ValueError(f"times must be positive or -1, got {times}")
        with self._lock:
            self._faults[provider].append(_PendingFault(Fault(fault), times, argument))

    def clear_faults(self) -> None:
        with self._lock:
            for queue in self._faults.values():
                queue.clear()

    def reset(self) -> None:
        """Restored in place, so references to the market, account and lists stay valid."""
        with self._lock:
            for queue in self._faults.values():
                queue.clear()
            self.requests.clear()
        self.market.restore(self._pristine)
        self.coinmarketcap_account.restore(self._pristine_account)

    def _arrive(self, provider: str, environ: dict[str, Any]) -> _PendingFault | None:
        with self._lock:
            pending = self._take_fault(provider)
            self.requests.append(
                RecordedRequest(
                    provider=provider,
                    method=environ["REQUEST_METHOD"],
                    path=environ.get("PATH_INFO", ""),
                    query=dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)),
                    headers=HeaderDict(environ.get(_RAW_HEADERS, [])),
                    raw_url=environ.get("RAW_URI") or environ.get("REQUEST_URI", ""),
                    fault=pending.fault if pending else None,
                )
            )
        return pending

    def _take_fault(self, provider: str) -> _PendingFault | None:
        queue = self._faults[provider]
        if not queue:
            return None
        head = queue[0]
        if head.remaining > 0:
            head.remaining -= 1
            if head.remaining == 0:
                queue.pop(0)
        return _PendingFault(head.fault, 1, head.argument)
