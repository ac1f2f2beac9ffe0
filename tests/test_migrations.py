"""The schema is owned by Alembic: migrations round-trip and match the models."""

from __future__ import annotations

from decimal import Decimal

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

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
