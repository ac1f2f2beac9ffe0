"""Alembic environment: migrations run online, one migrator at a time."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import create_engine, pool, text

from topcoins.models import Base
from topcoins.settings import ConfigError, database_url

# Any fixed number works; it only has to differ from the scrapers' lock keys.
MIGRATION_LOCK_KEY = 7_140_001

# scrapers.history names a partition <table>_YYYYMMDD.
_PARTITION = re.compile(r"_\d{8}$")

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def _url() -> str:
    explicit = config.attributes.get("database_url")
    if explicit:
        return str(explicit)
    try:
        return database_url(os.environ)
    except ConfigError as exc:
        sys.exit(f"alembic: {exc}")


def include_name(name: str | None, type_: str, parent_names: Mapping[Any, str | None]) -> bool:
    """The history tables' daily partitions are made by the scrapers, not by migrations."""
    return not (type_ == "table" and name is not None and _PARTITION.search(name))


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        # Two migrators (a re-run Job, a developer) must not interleave DDL.
        connection.execute(text("SET lock_timeout = '30s'"))
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                compare_type=True,
                include_name=include_name,
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    sys.exit("alembic: offline (--sql) mode is not supported; run against a database")
run_migrations_online()
