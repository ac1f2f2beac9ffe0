"""The schema is owned by Alembic: migrations round-trip and match the models."""

from __future__ import annotations

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from tests.support import ROOT, alembic_config
from topcoins.build import schema_head
from topcoins.models import TOP_COINS_VIEW_SQL
from topcoins.settings import database_url


def test_upgrade_downgrade_upgrade_round_trip(fresh_database):
    url = fresh_database()
    config = alembic_config(url)
    engine = create_engine(database_url({"DATABASE_URL": url}))
    try:
        command.upgrade(config, "head")
        tables = set(inspect(engine).get_table_names())
        assert {"scrape_runs", "ranking_entries", "price_quotes", "symbol_aliases"} <= tables
        assert "top_coins" in inspect(engine).get_view_names()
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


def test_migrated_view_is_the_one_defined_in_the_models(engine):
    viewdef = text("SELECT pg_get_viewdef('top_coins'::regclass, true)")
    with engine.connect() as connection:
        transaction = connection.begin()
        migrated = connection.scalar(viewdef)
        connection.execute(text("DROP VIEW top_coins"))
        connection.execute(text(TOP_COINS_VIEW_SQL))
        from_models = connection.scalar(viewdef)
        transaction.rollback()
    assert migrated == from_models


def test_migration_files_are_numbered_in_sequence():
    scripts = ScriptDirectory(str(ROOT / "migrations"))
    revisions = [r.revision for r in scripts.walk_revisions("base", "heads")][::-1]
    assert revisions == [f"{i:04d}" for i in range(1, len(revisions) + 1)]
