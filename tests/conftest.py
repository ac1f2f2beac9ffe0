"""Shared fixtures: a fresh PostgreSQL database migrated by Alembic, fake providers on loopback."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

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


class CaughtUpClient(FlaskClient):
    """Asks once the worker's refresher has caught up with the database, as it does within
    ``API_REFRESH_SECONDS``: tests then read what they just stored, without sleeping."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        self.application.extensions["toplist"].refresh(freshness=True)
        return super().open(*args, **kwargs)


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
