"""The database schema: the contract between the scrapers (writers) and the API (reader).

Every scrape run gets a row in ``scrape_runs``; a successful run owns the rows it
wrote (``ranking_entries`` or ``price_quotes``), committed in the same transaction,
so a snapshot is either complete or absent.  Readers only ever look at the latest
*succeeded* run of each source, through the ``top_coins`` view below.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    Text,
    column,
    func,
    table,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Source(enum.StrEnum):
    CRYPTOCOMPARE = "cryptocompare"
    COINMARKETCAP = "coinmarketcap"


class RunStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ScrapeRun(Base):
    """One scraper run, successful or not; failed runs keep their reason for operators."""

    __tablename__ = "scrape_runs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    item_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    credit_count: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # W3C trace id (32 hex digits) of the scrape's root span: from psql to the trace.
    trace_id: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("source IN ('cryptocompare', 'coinmarketcap')", name="source"),
        CheckConstraint("status IN ('succeeded', 'failed')", name="status"),
        CheckConstraint("(status = 'failed') = (error IS NOT NULL)", name="error_iff_failed"),
        Index(
            "ix_scrape_runs_latest_success",
            "source",
            text("id DESC"),
            postgresql_where=text("status = 'succeeded'"),
        ),
        Index("ix_scrape_runs_finished_at", "finished_at"),
    )


class RankingEntry(Base):
    """A CryptoCompare ranking row; ``name`` is CryptoCompare's FullName."""

    __tablename__ = "ranking_entries"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("scrape_runs.id", ondelete="CASCADE"), primary_key=True
    )
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    symbol: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    cryptocompare_id: Mapped[int | None] = mapped_column(BigInteger)
    volume_24h_usd: Mapped[Decimal | None] = mapped_column(Numeric)

    __table_args__ = (CheckConstraint("rank > 0", name="rank_positive"),)


class PriceQuote(Base):
    """A CoinMarketCap USD quote; several rows of one run may share a symbol."""

    __tablename__ = "price_quotes"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("scrape_runs.id", ondelete="CASCADE"), primary_key=True
    )
    cmc_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    symbol: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    slug: Mapped[str | None] = mapped_column(Text)
    cmc_rank: Mapped[int | None] = mapped_column(Integer)
    price_usd: Mapped[Decimal | None] = mapped_column(Numeric)
    last_updated: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_price_quotes_run_symbol", "run_id", "symbol"),
        Index("ix_price_quotes_run_lower_name", "run_id", text("lower(name)")),
    )


class SymbolAlias(Base):
    """Operator-maintained fix for a ticker the merge rules get wrong; wins over them."""

    __tablename__ = "symbol_aliases"

    symbol: Mapped[str] = mapped_column(Text, primary_key=True)
    cmc_id: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# The merge the API serves, kept as SQL so psql users query exactly what the API
# serves.  Migrations copy this text when they (re)create the view; a test checks
# that the migrated database's view matches it.
TOP_COINS_VIEW_SQL = """
CREATE VIEW top_coins AS
WITH ranking_run AS (
    SELECT id, finished_at FROM scrape_runs
    WHERE source = 'cryptocompare' AND status = 'succeeded'
    ORDER BY id DESC LIMIT 1
), price_run AS (
    SELECT id, finished_at FROM scrape_runs
    WHERE source = 'coinmarketcap' AND status = 'succeeded'
    ORDER BY id DESC LIMIT 1
)
SELECT
    r.rank,
    r.symbol,
    r.name,
    q.price_usd,
    q.cmc_id,
    q.match,
    ranking_run.id AS ranking_run_id,
    ranking_run.finished_at AS ranked_at,
    price_run.id AS price_run_id,
    price_run.finished_at AS priced_at
FROM ranking_run
JOIN ranking_entries r ON r.run_id = ranking_run.id
LEFT JOIN price_run ON true
LEFT JOIN symbol_aliases a ON a.symbol = r.symbol
LEFT JOIN LATERAL (
    SELECT p.cmc_id, p.price_usd,
        CASE
            WHEN a.cmc_id IS NOT NULL THEN 'alias'
            WHEN p.symbol = r.symbol THEN 'symbol'
            ELSE 'name'
        END AS match
    FROM price_quotes p
    WHERE p.run_id = price_run.id
      AND (
            p.cmc_id = a.cmc_id
            OR (a.cmc_id IS NULL AND (p.symbol = r.symbol OR lower(p.name) = lower(r.name)))
      )
    ORDER BY
        p.symbol = r.symbol DESC,
        lower(p.name) = lower(r.name) DESC,
        p.cmc_rank ASC NULLS LAST,
        p.cmc_id ASC
    LIMIT 1
) q ON true
""".strip()


# Column description of the view for SQLAlchemy selects; not part of ``Base.metadata``
# because the view is created by the migration from TOP_COINS_VIEW_SQL, not by DDL here.
top_coins = table(
    "top_coins",
    column("rank", Integer),
    column("symbol", Text),
    column("name", Text),
    column("price_usd", Numeric),
    column("cmc_id", BigInteger),
    column("match", Text),
    column("ranking_run_id", BigInteger),
    column("ranked_at", DateTime(timezone=True)),
    column("price_run_id", BigInteger),
    column("priced_at", DateTime(timezone=True)),
)
