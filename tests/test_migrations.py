"""The schema is owned by Alembic: migrations round-trip and match the models."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import quote

import psycopg
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from devtools.postgres import drop_database, ensure_database
from tests.support import ROOT, alembic_config
from topcoins.build import schema_head
from topcoins.models import VIEWS
from topcoins.settings import database_url


def test_upgrade_downgrade_upgrade_round_trip(fresh_database):
    url = fresh_database()
    config = alembic_config(url)
    engine = create_engine(database_url({"DATABASE_URL": url}))
    try:
        command.upgrade(config, "head")
        tables = set(inspect(engine).get_table_names())
        assert {
            "scrape_runs",
            "ranking_entries",
            "price_quotes",
            "symbol_aliases",
            "cmc_assets",
        } <= tables
        assert set(inspect(engine).get_view_names()) == set(VIEWS)
        command.downgrade(config, "base")
        engine.dispose()
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        assert inspect(engine).get_view_names() == []
        command.upgrade(config, "head")
        with engine.connect() as connection:
            assert (
                connection.scalar(text("SELECT version_num FROM alembic_version")) == schema_head()
            )
    finally:
        engine.dispose()


def test_models_and_migrations_do_not_drift(db_url):
    command.check(alembic_config(db_url))


def test_migrated_views_are_the_ones_defined_in_the_models(engine):
    def definitions(connection) -> dict[str, str]:
        viewdef = text("SELECT pg_get_viewdef(CAST(:name AS regclass), true)")
        return {name: connection.scalar(viewdef, {"name": name}) for name in VIEWS}

    with engine.connect() as connection:
        transaction = connection.begin()
        migrated = definitions(connection)
        for name in reversed(VIEWS):
            connection.execute(text(f"DROP VIEW {name}"))
        for sql in VIEWS.values():
            connection.execute(text(sql))
        from_models = definitions(connection)
        transaction.rollback()
    assert migrated == from_models


def test_an_existing_history_is_carried_over_by_kind(fresh_database):
    """Runs stored before the providers changed stay served after the upgrade."""
    url = fresh_database()
    config = alembic_config(url)
    engine = create_engine(database_url({"DATABASE_URL": url}))
    try:
        command.upgrade(config, "0003")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO scrape_runs (source, status, started_at) VALUES "
                    "('cryptocompare', 'succeeded', now()), ('coinmarketcap', 'succeeded', now())"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO ranking_entries (run_id, rank, symbol, name, cryptocompare_id) "
                    "VALUES (1, 1, 'BTC', 'Bitcoin', 1182)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO price_quotes (run_id, cmc_id, symbol, name, price_usd) "
                    "VALUES (2, 1, 'BTC', 'Bitcoin', 96000.5)"
                )
            )
        command.upgrade(config, "head")
        with engine.connect() as connection:
            runs = connection.execute(
                text("SELECT id, kind, source, measure FROM scrape_runs ORDER BY id")
            ).all()
            served = connection.execute(
                text(
                    "SELECT t.symbol, t.price_usd, t.ranking_source, e.provider_asset_id "
                    "FROM top_coins t "
                    "JOIN ranking_entries e ON e.run_id = t.ranking_run_id AND e.rank = t.rank"
                )
            ).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in runs] == [
        (1, "ranking", "cryptocompare", "TOTALVOLUME24HTO"),
        (2, "prices", "coinmarketcap", None),
    ]
    assert [tuple(r) for r in served] == [("BTC", Decimal("96000.5"), "cryptocompare", 1182)]


def test_migration_files_are_numbered_in_sequence():
    scripts = ScriptDirectory(str(ROOT / "migrations"))
    revisions = [r.revision for r in scripts.walk_revisions("base", "heads")][::-1]
    assert revisions == [f"{i:04d}" for i in range(1, len(revisions) + 1)]


@dataclass
class Owner:
    """A LOGIN role without CREATEROLE that owns a fresh database, as on a managed service."""

    url: str
    # Group roles the test created, dropped once the database that uses them is gone.
    roles: list[str] = field(default_factory=list)

    def privilege(self, role: str, table: str) -> bool:
        with psycopg.connect(self.url) as connection:
            query = "SELECT has_table_privilege(%s, %s, 'SELECT')"
            return connection.execute(query, (role, table)).fetchone()[0]

    def revision(self) -> str | None:
        with psycopg.connect(self.url) as connection:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
            return row[0] if row else None


@pytest.fixture
def owner(admin_url: str, db_url: str) -> Iterator[Owner]:
    """``db_url`` is migrated first, so the cluster has its topcoins_reader."""
    suffix = uuid.uuid4().hex[:8]
    role, database = f"topcoins_owner_{suffix}", f"topcoins_test_owner_{suffix}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOCREATEROLE PASSWORD 'owner-test'").format(
                sql.Identifier(role)
            )
        )
    url = ensure_database(admin_url, database)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(*map(sql.Identifier, (database, role)))
        )
        admin.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(role)))
    as_owner = make_url(url).set(username=role, password="owner-test")
    created = Owner(as_owner.render_as_string(hide_password=False))
    try:
        yield created
    finally:
        drop_database(admin_url, database)
        with psycopg.connect(admin_url, autocommit=True) as admin:
            for name in (*created.roles, role):
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_an_owner_without_createrole_migrates_once_the_reader_role_exists(owner):
    command.upgrade(alembic_config(owner.url), "head")
    assert owner.revision() == schema_head()
    assert owner.privilege("topcoins_reader", "scrape_locks")


def test_a_missing_reader_role_that_cannot_be_created_says_what_to_run(owner, admin_url):
    """The group role is named per test, leaving the cluster's topcoins_reader alone."""
    reader = f"topcoins_reader_{uuid.uuid4().hex[:8]}"
    owner.roles.append(reader)
    url = f"{owner.url}?options={quote(f'-c topcoins.reader_role={reader}')}"
    with pytest.raises(ProgrammingError) as raised:
        command.upgrade(alembic_config(url), "head")
    assert isinstance(raised.value.orig, psycopg.errors.InsufficientPrivilege)
    assert raised.value.orig.diag.message_primary == (
        f"the group role {reader} is missing and {make_url(owner.url).username} may not create "
        f'it: run "CREATE ROLE {reader} NOLOGIN;" as a role with CREATEROLE, then migrate again'
    )
    assert owner.revision() == "0001"

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(reader)))
    command.upgrade(alembic_config(url), "head")
    assert owner.revision() == schema_head()
    assert owner.privilege(reader, "scrape_runs")
    assert not owner.privilege("topcoins_reader", "scrape_runs")
