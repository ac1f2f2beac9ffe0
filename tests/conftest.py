"""Shared fixtures: a fresh PostgreSQL database migrated by Alembic, fake providers on loopback."""

from __future__ import annotations

import gzip
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
import requests
from alembic import command
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.deserializing.media_types.util import json_loads, plain_loads
from sqlalchemy import Engine, text
from werkzeug.datastructures import Headers, ImmutableMultiDict

from api import create_app
from devtools.postgres import PostgresUnavailable, drop_database, ensure_database, find_server
from fakeproviders import FakeProviders
from scrapers.cli import main as scrapers_main
from tests.support import (
    CMC_KEY,
    COINDESK_KEY,
    CRYPTOCOMPARE_KEY,
    Gunicorn,
    Store,
    alembic_config,
)
from topcoins.db import make_engine
from topcoins.settings import ApiSettings, database_url

ROOT = Path(__file__).resolve().parent.parent
TABLES = (
    "scrape_runs, ranking_entries, price_quotes, ticker_matches, assets, symbol_aliases, cmc_assets"
)


@pytest.fixture(scope="session")
def admin_url() -> str:
    """A server to create throwaway databases on: DATABASE_URL, local, or a private cluster."""
    try:
        return find_server(ROOT)
    except PostgresUnavailable as exc:
        pytest.exit(f"no PostgreSQL for the tests: {exc}", returncode=2)


@pytest.fixture(scope="session")
def fresh_database(admin_url: str) -> Iterator[Callable[[], str]]:
    """Factory of empty databases, dropped at the end of the session."""
    created: list[str] = []

    def make() -> str:
        name = f"topcoins_test_{uuid.uuid4().hex[:12]}"
        created.append(name)
        return ensure_database(admin_url, name)

    yield make
    for name in created:
        drop_database(admin_url, name)


@pytest.fixture(scope="session")
def db_url(fresh_database: Callable[[], str]) -> str:
    """The suite's database, schema applied by the real migrations."""
    url = fresh_database()
    command.upgrade(alembic_config(url), "head")
    return url


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url({"DATABASE_URL": db_url}), application_name="tests")
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine: Engine) -> Engine:
    """The suite's database, emptied before the test."""
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    return engine


@pytest.fixture(scope="session")
def provider_server() -> Iterator[FakeProviders]:
    with FakeProviders(
        coindesk_key=COINDESK_KEY, cryptocompare_key=CRYPTOCOMPARE_KEY, coinmarketcap_key=CMC_KEY
    ) as server:
        yield server


@pytest.fixture
def providers(provider_server: FakeProviders) -> FakeProviders:
    """Both fake providers with the bundled market, no faults and no recorded requests."""
    provider_server.reset()
    return provider_server


@pytest.fixture
def env(db: Engine, db_url: str, providers: FakeProviders) -> dict[str, str]:
    """The environment a scraper gets in production, pointed at the fakes and the test DB."""
    return environment(db_url, providers)


def environment(url: str, providers: FakeProviders) -> dict[str, str]:
    """What the scrapers and the API get, for a database and the running fake providers."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": url,
        "COINDESK_API_KEY": COINDESK_KEY,
        "COINDESK_BASE_URL": providers.coindesk_url,
        "CRYPTOCOMPARE_API_KEY": CRYPTOCOMPARE_KEY,
        "CRYPTOCOMPARE_BASE_URL": providers.cryptocompare_url,
        "COINMARKETCAP_API_KEY": CMC_KEY,
        "COINMARKETCAP_BASE_URL": providers.coinmarketcap_url,
        "HTTP_TIMEOUT_SECONDS": "2",
        "HTTP_RETRIES": "2",
        "HTTP_BACKOFF_SECONDS": "0.05",
        "SCRAPE_DEADLINE_SECONDS": "8",
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture
def scrape(env: dict[str, str]) -> Callable[..., int]:
    """Run a scraper command in-process, exactly as ``python -m scrapers`` would."""

    def run(*argv: str, **overrides: str) -> int:
        return scrapers_main(list(argv), {**env, **overrides})

    return run


@pytest.fixture
def scraped(scrape: Callable[..., int]) -> None:
    """One successful ranking and price snapshot of the bundled market."""
    assert scrape("ranks") == 0
    assert scrape("prices") == 0


OPENAPI_DOCUMENT = ROOT / "api" / "openapi.json"
# How a client writes an integer in a query or a path. openapi-core casts with int(), which
# also takes "+5", " 5" and non-ASCII digits: the API refuses those, and so does the document.
_INTEGER_TEXT = re.compile(r"-?[0-9]+")
# A history window is checked beyond what a schema can say (the date exists, the moment is in
# range in UTC, from < to, not too many points): such a 400 names ``from`` or ``to``.
_WINDOW_PARAMETERS = {"from", "to"}
HISTORY_PATH = "/coins/{cmc_id}/history"


@dataclass(frozen=True)
class Exchange:
    """One request and its answer, as sent and received, whatever the client."""

    method: str
    path: str  # percent-decoded, as the app routes it
    query: tuple[tuple[str, str], ...]
    request_headers: tuple[tuple[str, str], ...]
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes  # decoded when it came gzipped

    @classmethod
    def from_flask(cls, response: Any) -> Exchange:
        request = response.request
        body = response.get_data()
        if response.headers.get("Content-Encoding") == "gzip" and body:
            body = gzip.decompress(body)
        return cls(
            method=request.method,
            path=request.path,
            query=tuple(request.args.items(multi=True)),
            request_headers=tuple(request.headers.items()),
            status=response.status_code,
            headers=tuple(response.headers.items()),
            body=body,
        )

    @classmethod
    def from_http(cls, response: Any) -> Exchange:
        """A ``requests`` answer, or schemathesis' wrapper of one (header values in lists);
        ``requests`` has decoded a gzipped body already."""
        sent: requests.PreparedRequest = response.request
        url = urlsplit(sent.url or "")
        headers = [
            (name, value)
            for name, values in response.headers.items()
            for value in (values if isinstance(values, list) else [values])
        ]
        return cls(
            method=sent.method or "GET",
            path=unquote(url.path, errors="replace"),
            query=tuple(parse_qsl(url.query, keep_blank_values=True, errors="replace")),
            request_headers=tuple((k, str(v)) for k, v in sent.headers.items()),
            status=response.status_code,
            headers=tuple(headers),
            body=response.content,
        )

    def describe(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.query)
        return f"{self.method} {self.path}{'?' + query if query else ''} -> {self.status}"

    def problem(self) -> dict[str, Any] | None:
        try:
            document = json.loads(self.body)
        except ValueError:
            return None
        return document if isinstance(document, dict) else None


class _Request:
    """An ``Exchange``'s request as openapi-core reads one (``openapi_core.protocols``)."""

    def __init__(self, exchange: Exchange) -> None:
        self.host_url = "http://localhost"
        self.path = exchange.path
        self.method = exchange.method.lower()
        self.body: bytes | None = None
        self.content_type = ""
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(exchange.query)),
            header=Headers(list(exchange.request_headers)),
        )


class _Response:
    """An ``Exchange``'s answer as openapi-core reads one."""

    def __init__(self, exchange: Exchange) -> None:
        self.data = exchange.body
        self.status_code = exchange.status
        self.headers = Headers(list(exchange.headers))
        self.content_type = self.headers.get("Content-Type", "")


class ContractViolation(AssertionError):
    """An answer, or the way a request was answered, that api/openapi.json does not describe."""


class ApiContract:
    """``api/openapi.json`` and what it says of one request and its answer.

    Beyond validating both with openapi-core, it holds the API to the document's parameters:
    a request the document rejects must get a 400 (or a 406), and a request it accepts must
    not get a 400. Requests to paths or methods the document does not name cannot be
    validated (no operation exists for them); their answers still must be the document's
    ``NotFound`` and ``MethodNotAllowed`` responses, or its ``InternalServerError`` (a test
    may add a failing route).
    """

    def __init__(self, path: Path) -> None:
        self.document = json.loads(path.read_text())
        self.openapi = OpenAPI.from_dict(
            self.document,
            config=Config(
                # openapi-core reads only the media types it knows; these are JSON and text.
                extra_media_type_deserializers={
                    "application/problem+json": json_loads,
                    "text/csv": plain_loads,
                    "application/openmetrics-text": plain_loads,
                }
            ),
        )
        self.templates = [
            (
                template,
                re.compile(
                    "^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
                ),
                item,
            )
            for template, item in self.document["paths"].items()
        ]
        self._validators: dict[str, Draft202012Validator] = {}

    def check(self, exchange: Exchange) -> None:
        errors = self.violations(exchange)
        if errors:
            raise ContractViolation(
                f"{exchange.describe()} breaks api/openapi.json:\n  - "
                + "\n  - ".join(errors)
                + f"\n  body: {exchange.body[:500]!r}"
            )

    def violations(self, exchange: Exchange) -> list[str]:
        found = self._operation(exchange.path, exchange.method)
        if found is None:
            return self._unnamed(exchange, "NotFound", 404, "no path of the document matches")
        template, operation, path_values = found
        if operation is None:
            return self._unnamed(
                exchange, "MethodNotAllowed", 405, f"{template} names no {exchange.method}"
            )
        request = _Request(exchange)
        response = _Response(exchange)
        errors = [_explain(e) for e in self.openapi.iter_response_errors(request, response)]
        refused = [_explain(e) for e in self.openapi.iter_request_errors(request)]
        refused += self._strictly_read(exchange, operation, path_values)
        if refused and exchange.status not in (400, 406):
            errors.append(
                f"the document rejects this request ({'; '.join(refused)}), "
                f"but the API answered {exchange.status}"
            )
        if not refused and exchange.status == 400 and not self._window_problem(template, exchange):
            problem = exchange.problem() or {}
            errors.append(
                "the document accepts this request, but the API answered 400: "
                f"{problem.get('detail', exchange.body[:200])}"
            )
        return errors

    def _operation(
        self, path: str, method: str
    ) -> tuple[str, dict[str, Any] | None, dict[str, str]] | None:
        for template, pattern, item in self.templates:
            match = pattern.match(path)
            if match:
                return template, item.get(method.lower()), match.groupdict()
        return None

    def _strictly_read(
        self, exchange: Exchange, operation: dict[str, Any], path_values: dict[str, str]
    ) -> list[str]:
        """What openapi-core lets through but the document does not: repeats, loose integers."""
        refused = []
        names = [name for name, _ in exchange.query]
        for parameter in map(self._resolve, operation.get("parameters", [])):
            name, where, schema = parameter["name"], parameter["in"], parameter["schema"]
            if where == "query":
                values = [value for key, value in exchange.query if key == name]
                if len(values) > 1:
                    refused.append(f"query parameter {name} given {names.count(name)} times")
            elif where == "path":
                values = [path_values[name]]
            else:
                continue
            integer = schema.get("type") == "integer" or schema.get("items", {}).get("type") == (
                "integer"
            )
            for value in values if integer else ():
                entries = value.split(",") if schema.get("type") == "array" else [value]
                if not all(_INTEGER_TEXT.fullmatch(entry) for entry in entries):
                    refused.append(f"{where} parameter {name}: {value[:40]!r} is not an integer")
        return refused

    def _window_problem(self, template: str, exchange: Exchange) -> bool:
        """A 400 for a history window the pattern lets through; HEAD shows no body to tell."""
        if template != HISTORY_PATH:
            return False
        if exchange.method == "HEAD":
            return True
        problem = exchange.problem() or {}
        named = {p.get("name") for p in problem.get("invalid_params", [])}
        return bool(named) and named <= _WINDOW_PARAMETERS

    def _unnamed(self, exchange: Exchange, expected: str, status: int, why: str) -> list[str]:
        """An answer to a request no operation describes: one of the document's own answers."""
        if exchange.status == 500:
            expected = "InternalServerError"
        elif exchange.status != status:
            return [f"{why}, so the answer must be a {status} problem, not {exchange.status}"]
        response = self.document["components"]["responses"][expected]
        errors = []
        headers = Headers(list(exchange.headers))
        for name, reference in response.get("headers", {}).items():
            header = self._resolve(reference)
            value = headers.get(name)
            if value is None:
                if header.get("required"):
                    errors.append(f"header {name} is missing")
                continue
            errors += [f"header {name}: {e}" for e in self._schema_errors(header["schema"], value)]
        if exchange.method == "HEAD":
            return errors
        media_type = headers.get("Content-Type", "").split(";")[0].strip()
        content = response.get("content", {})
        if media_type not in content:
            return [*errors, f"content type {media_type!r} is not one of {sorted(content)}"]
        problem = exchange.problem()
        if problem is None:
            return [*errors, "the body is not a JSON object"]
        return errors + self._schema_errors(content[media_type]["schema"], problem)

    def _schema_errors(self, schema: dict[str, Any], value: Any) -> list[str]:
        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            # The whole document as the root resource, so that "#/components/..." resolves.
            validator = Draft202012Validator(
                {**self.document, **schema}, format_checker=Draft202012Validator.FORMAT_CHECKER
            )
            self._validators[key] = validator
        return [
            f"{'/'.join(map(str, e.absolute_path)) or 'value'}: {e.message}"
            for e in validator.iter_errors(value)
        ]

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node


def _explain(error: BaseException) -> str:
    """An openapi-core error with its causes: the schema's own messages, not the whole value
    (which a message of openapi-core repeats: a 5000-coin list, say)."""
    chain = [error]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    parts = []
    for link in chain:
        schema_errors: Sequence[Any] = list(getattr(link, "schema_errors", ()) or ())
        if schema_errors:
            parts += [
                f"{'/'.join(map(str, e.absolute_path)) or 'value'}: {e.message}"
                for e in schema_errors
            ]
            break
        if any(getattr(c, "schema_errors", None) for c in chain):
            name = getattr(link, "name", None)
            parts.append(type(link).__name__ + (f" {name}" if isinstance(name, str) else ""))
        else:
            parts.append(str(link) or type(link).__name__)
    return ": ".join(dict.fromkeys(parts))


@cache
def contract() -> ApiContract:
    """Read and checked once per test session."""
    return ApiContract(OPENAPI_DOCUMENT)


class CaughtUpClient(FlaskClient):
    """Asks once the worker's refresher has caught up with the database, as it does within
    ``API_REFRESH_SECONDS``: tests then read what they just stored, without sleeping.

    Every request and its answer are held to ``api/openapi.json`` (``ApiContract``): a test
    that gets an answer the document does not describe fails, whatever it asserts itself.
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        self.application.extensions["toplist"].refresh(freshness=True)
        response = super().open(*args, **kwargs)
        contract().check(Exchange.from_flask(response))
        return response


@pytest.fixture
def app(db: Engine, db_url: str) -> Iterator[Flask]:
    settings = ApiSettings(
        database_url=database_url({"DATABASE_URL": db_url}),
        refresh_interval_seconds=0.05,
        tracing=True,
    )
    app = create_app(settings)
    app.test_client_class = CaughtUpClient
    yield app
    app.extensions["toplist"].stop()
    app.extensions["engine"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def make_app(db_url: str) -> Iterator[Callable[..., Flask]]:
    """Apps of other settings (another database, timing, state directory), stopped after."""
    made: list[Flask] = []

    def make(url: str | None = None, **settings: Any) -> Flask:
        full = ApiSettings(
            database_url=database_url({"DATABASE_URL": url or db_url}),
            **{"refresh_interval_seconds": 0.05, **settings},
        )
        app = create_app(full)
        app.test_client_class = CaughtUpClient
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["toplist"].stop()
        app.extensions["engine"].dispose()


@pytest.fixture
def store(db: Engine) -> Store:
    return Store(db)


@pytest.fixture
def gunicorn(env: dict[str, str], tmp_path: Path) -> Iterator[Gunicorn]:
    """The API under gunicorn with the repo's config, 2 workers, output kept for reading."""
    server = Gunicorn(env, tmp_path / "gunicorn.log")
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()
