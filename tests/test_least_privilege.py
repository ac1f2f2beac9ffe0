"""The API's database role can read everything it serves and write nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import create_app
from tests.support import wait_for
from topcoins.models import ScrapeRun
from topcoins.settings import ApiSettings, database_url

WRITES = [
    "INSERT INTO scrape_runs (source, status, started_at)"
    " VALUES ('cryptocompare', 'succeeded', now())",
    "UPDATE price_quotes SET price_usd = 0",
    "DELETE FROM ranking_entries",
    "TRUNCATE scrape_runs CASCADE",
    "INSERT INTO symbol_aliases (symbol, cmc_id) VALUES ('X', 1)",
    "DROP VIEW top_coins",
    "CREATE TABLE intruder (id int)",
    "UPDATE alembic_version SET version_num = 'x'",
]


@pytest.fixture
def reader_url(db_url: str, db) -> Iterator[str]:
    """A LOGIN role in ``topcoins_reader``, as an operator would create it for the API."""
    name = f"topcoins_api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'api-test' IN ROLE topcoins_reader").format(
                sql.Identifier(name)
            )
        )
    host = db_url.split("@", 1)[1]
    yield f"postgresql://{name}:api-test@{host}"
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_reader_role_serves_the_api(reader_url, store):
    store.ranking([("BTC", "Bitcoin")])
    store.prices([(1, "BTC", "Bitcoin", 1, "5")])
    app = create_app(ApiSettings(database_url=database_url({"DATABASE_URL": reader_url})))
    try:
        client = app.test_client()
        # The list is loaded in the background: ready once it is.
        assert wait_for(lambda: client.get("/readyz").status_code == 200, timeout=5)
        assert client.get("/?fields=rank,symbol,name,price_usd").get_json()["data"] == [
            {"rank": 1, "symbol": "BTC", "name": "Bitcoin", "price_usd": 5}
        ]
        # A coin's history is read per request, by the same role.
        assert client.get("/coins/1/history").get_json()["data"][0]["price_usd"] == 5
    finally:
        app.extensions["toplist"].stop()
        app.extensions["engine"].dispose()


@pytest.mark.parametrize("statement", WRITES)
def test_reader_role_cannot_write(reader_url, statement):
    with (
        psycopg.connect(reader_url) as connection,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        connection.execute(statement)


def test_tables_created_by_later_migrations_are_readable_too(reader_url, db_url):
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("CREATE TABLE later_table (id int)")
    try:
        with psycopg.connect(reader_url) as connection:
            assert connection.execute("SELECT count(*) FROM later_table").fetchone() == (0,)
    finally:
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute("DROP TABLE later_table")


@pytest.mark.parametrize("kind", ["ranking", "prices"])
def test_reader_role_cannot_take_a_scrape_lock(reader_url, kind):
    with (
        psycopg.connect(reader_url) as connection,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        connection.execute(
            "SELECT kind FROM scrape_locks WHERE kind = %s FOR UPDATE SKIP LOCKED", (kind,)
        )


def test_reader_role_cannot_stop_the_scrapers(reader_url, scrape, db):
    """Whatever the reader holds, both kinds of run go on: it could once take their lock."""
    with psycopg.connect(reader_url) as reader:
        # The session advisory locks the scrapers used to take, and the lock table, read in
        # a transaction left open.
        reader.execute("SELECT pg_advisory_lock(7140101), pg_advisory_lock(7140102)")
        reader.execute("SELECT kind FROM scrape_locks")
        assert scrape("ranks") == 0
        assert scrape("prices") == 0
    with Session(db) as session:
        runs = session.scalars(select(ScrapeRun).order_by(ScrapeRun.id))
        assert [(r.kind, r.status) for r in runs] == [
            ("ranking", "succeeded"),
            ("prices", "succeeded"),
        ]
