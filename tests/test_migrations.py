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
from topcoins.buildinfo import schema_head
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
                    "JOIN rankings e ON e.run_id = t.ranking_run_id AND e.rank = t.rank"
                )
            ).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in runs] == [
        (1, "ranking", "cryptocompare", "TOTALVOLUME24HTO"),
        (2, "prices", "coinmarketcap", None),
    ]
    assert [tuple(r) for r in served] == [("BTC", Decimal("96000.5"), "cryptocompare", 1182)]


# A history as 0005 stored it: a CoinDesk ranking with a coin resolved by the provider
# and one left to a ticker lookup (two namesakes), its prices run, then a CoinMarketCap
# ranking whose listing carried a price that its prices run reused.
HISTORY_0005 = [
    "INSERT INTO scrape_runs (kind, source, status, started_at, finished_at, error) VALUES"
    " ('ranking', 'coindesk', 'succeeded', '2026-11-20 23:59:00+00',"
    " '2026-11-21 00:00:01+00', NULL),"
    " ('prices', 'coinmarketcap', 'succeeded', '2026-11-21 00:01:00+00', now(), NULL),"
    " ('ranking', 'coinmarketcap', 'succeeded', '2026-11-22 10:00:00+00', now(), NULL),"
    " ('prices', 'coinmarketcap', 'succeeded', '2026-11-22 10:01:00+00', now(), NULL),"
    " ('ranking', 'coindesk', 'failed', '2026-11-22 10:02:00+00', now(), 'down')",
    "INSERT INTO ranking_entries (run_id, rank, symbol, name, provider_asset_id, slug,"
    " volume_24h_usd, price_usd, cmc_id, resolved_by) VALUES"
    " (1, 1, 'BTC', 'Bitcoin', 1, 'bitcoin', 1234567.5, 96000, 1, 'provider'),"
    " (1, 2, 'HOT', 'Holo', 2, 'holo', 1000, 0.002, NULL, NULL),"
    " (3, 1, 'ETH', 'Ethereum', 1027, NULL, 500, 3000.25, 1027, 'provider'),"
    " (3, 2, 'BTC', 'Bitcoin', 1, NULL, 400, 95000.5, 1, 'provider')",
    "INSERT INTO price_quotes (run_id, cmc_id, symbol, name, cmc_rank, price_usd) VALUES"
    " (2, 1, 'BTC', 'Bitcoin', 1, 96001),"
    " (2, 2682, 'HOT', 'Holo', 90, 0.0021),"
    " (2, 3, 'HOT', 'Hydro Protocol', 2000, 5),"
    " (4, 1027, 'ETH', 'Ethereum', 2, 3000.25),"
    " (4, 1, 'BTC', 'Bitcoin', 1, 95000.5)",
]


def test_a_history_moves_to_the_partitioned_tables_and_back(fresh_database):
    url = fresh_database()
    config = alembic_config(url)
    engine = create_engine(database_url({"DATABASE_URL": url}))

    def state() -> dict[str, list[tuple]]:
        with engine.connect() as connection:
            return {
                "served": [
                    tuple(r)
                    for r in connection.execute(text("SELECT * FROM top_coins ORDER BY rank"))
                ],
                "runs": [
                    tuple(r)
                    for r in connection.execute(
                        text("SELECT id, kind, status, item_count FROM scrape_runs ORDER BY id")
                    )
                ],
            }

    def served_at(ranking_run: int, price_run: int) -> list[tuple]:
        """The merge as the view makes it, at an older pair of runs."""
        with engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE scrape_runs SET status = 'failed', error = 'hidden' "
                    "WHERE id > :r AND kind = 'ranking' OR id > :p AND kind = 'prices'"
                ),
                {"r": ranking_run, "p": price_run},
            )
            served = [
                tuple(r)
                for r in connection.execute(
                    text(
                        "SELECT rank, symbol, price_usd, cmc_id, match FROM top_coins ORDER BY rank"
                    )
                )
            ]
            connection.rollback()
        return served

    try:
        command.upgrade(config, "0005")
        with engine.begin() as connection:
            for statement in HISTORY_0005:
                connection.execute(text(statement))
        before = state()
        old_pair = served_at(1, 2)
        command.upgrade(config, "0006")
        assert state() == before
        assert (
            served_at(1, 2)
            == old_pair
            == [
                (1, "BTC", Decimal("96001"), 1, "provider"),
                (2, "HOT", Decimal("0.0021"), 2682, "ticker"),
            ]
        )
        with engine.connect() as connection:
            days = connection.execute(
                text("SELECT id, day, date '2000-01-01' + day FROM scrape_runs ORDER BY id")
            ).all()
            partitions = connection.scalars(
                text(
                    "SELECT inhrelid::regclass::text FROM pg_inherits "
                    "WHERE inhparent = 'ranking_entries'::regclass ORDER BY 1"
                )
            ).all()
            volume = connection.scalar(
                text("SELECT volume_24h_usd FROM rankings WHERE run_id = 1 AND rank = 1")
            )
        assert [(run, str(day)) for run, _, day in days] == [
            (1, "2026-11-20"),
            (2, "2026-11-21"),
            (3, "2026-11-22"),
            (4, "2026-11-22"),
            (5, "2026-11-22"),
        ]
        assert partitions == [
            "ranking_entries_20261120",
            "ranking_entries_20261121",
            "ranking_entries_20261122",
        ]
        assert volume == pytest.approx(1234567.5)
        command.downgrade(config, "0005")
        assert state() == before
        assert served_at(1, 2) == old_pair
    finally:
        engine.dispose()


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
