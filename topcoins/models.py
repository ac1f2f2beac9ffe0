"""The database schema: the contract between the scrapers (writers) and the API (reader).

Every scrape run gets a row in ``scrape_runs``; a successful run owns the rows it
wrote (``ranking_entries`` or ``price_quotes``), committed in the same transaction,
so a snapshot is either complete or absent.  Readers only ever look at the latest
*succeeded* run of each kind (``latest_runs``), through the ``top_coins`` view below.
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
    """Who answered: the provider a run talked to (``scrape_runs.source``)."""

    COINDESK = "coindesk"
    CRYPTOCOMPARE = "cryptocompare"
    COINMARKETCAP = "coinmarketcap"


class RunKind(enum.StrEnum):
    """What a run produced; with CoinMarketCap ranking both kinds share one source."""

    RANKING = "ranking"
    PRICES = "prices"


class RunStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ResolvedBy(enum.StrEnum):
    """Which rule gave a ranked coin its CoinMarketCap id, in the order they are tried."""

    ALIAS = "alias"
    PROVIDER = "provider"
    SYMBOL = "symbol"
    SLUG = "slug"
    NAME = "name"


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class ScrapeRun(Base):
    """One scraper run, successful or not; failed runs keep their reason for operators."""

    __tablename__ = "scrape_runs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    item_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # CoinMarketCap credits the run spent (the only provider that bills per call), as
    # reported by the provider's own status.credit_count.
    credit_count: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # W3C trace id (32 hex digits) of the scrape's root span: from psql to the trace.
    trace_id: Mapped[str | None] = mapped_column(Text)
    # What a ranking is ordered by, in the provider's own field name.
    measure: Mapped[str | None] = mapped_column(Text)
    # Ranked coins without a CoinMarketCap id that a price run looked up by ticker.
    ticker_lookups: Mapped[int | None] = mapped_column(Integer)
    # CoinMarketCap's /v1/key/info as read at the start of a run that spends credits.
    credit_limit_monthly: Mapped[int | None] = mapped_column(Integer)
    credits_left_monthly: Mapped[int | None] = mapped_column(Integer)
    credits_reset_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(_in("kind", RunKind), name="kind"),
        CheckConstraint(_in("source", Source), name="source"),
        CheckConstraint(_in("status", RunStatus), name="status"),
        CheckConstraint("(status = 'failed') = (error IS NOT NULL)", name="error_iff_failed"),
        Index(
            "ix_scrape_runs_latest_success",
            "kind",
            text("id DESC"),
            postgresql_where=text("status = 'succeeded'"),
        ),
        Index("ix_scrape_runs_finished_at", "finished_at"),
    )


class RankingEntry(Base):
    """One coin of a ranking, as its provider gave it, with the CoinMarketCap id it resolved to.

    The resolution is stored rather than computed by the view, so that psql shows why a
    coin got the price it got, even after the id map or the aliases changed.
    """

    __tablename__ = "ranking_entries"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("scrape_runs.id", ondelete="CASCADE"), primary_key=True
    )
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    symbol: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    provider_asset_id: Mapped[int | None] = mapped_column(BigInteger)
    slug: Mapped[str | None] = mapped_column(Text)
    volume_24h_usd: Mapped[Decimal | None] = mapped_column(Numeric)
    # The ranking provider's own price: served only when CoinMarketCap is that provider.
    price_usd: Mapped[Decimal | None] = mapped_column(Numeric)
    price_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cmc_id: Mapped[int | None] = mapped_column(BigInteger)
    resolved_by: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint("rank > 0", name="rank_positive"),
        CheckConstraint(_in("resolved_by", ResolvedBy), name="resolved_by"),
        CheckConstraint("(cmc_id IS NULL) = (resolved_by IS NULL)", name="cmc_id_iff_resolved"),
    )


class PriceQuote(Base):
    """A CoinMarketCap USD quote; a ticker lookup can store several rows sharing a symbol."""

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

    __table_args__ = (Index("ix_price_quotes_run_symbol", "run_id", "symbol"),)


class SymbolAlias(Base):
    """Operator-maintained fix for a ticker the resolution rules get wrong; wins over them."""

    __tablename__ = "symbol_aliases"

    symbol: Mapped[str] = mapped_column(Text, primary_key=True)
    cmc_id: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CmcAsset(Base):
    """CoinMarketCap's id map (/v1/cryptocurrency/map), replaced whole at most once a day.

    Reference data rather than a snapshot: the ranking scrape reads it to resolve ids,
    and keeps no history of it.
    """

    __tablename__ = "cmc_assets"

    cmc_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    symbol: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    slug: Mapped[str] = mapped_column(Text)
    rank: Mapped[int | None] = mapped_column(Integer)
    # The name as the resolution compares names (scrapers.resolution.name_key).
    name_key: Mapped[str] = mapped_column(Text)
    refreshed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_cmc_assets_upper_symbol", text("upper(symbol)")),
        Index("ix_cmc_assets_slug", "slug"),
        Index("ix_cmc_assets_name_key", "name_key"),
    )


class ScrapeLock(Base):
    """One row per kind of run, held locked (``FOR UPDATE``) by the run of that kind.

    A row lock needs UPDATE on the table, so only the writer role can take it: the API's
    SELECT-only role cannot stop the scrapers (``scrapers.lock``).
    """

    __tablename__ = "scrape_locks"

    kind: Mapped[str] = mapped_column(Text, primary_key=True)

    __table_args__ = (CheckConstraint(_in("kind", RunKind), name="kind"),)


# Every successful snapshot is announced on this channel when it commits (its payload:
# "<kind>:<run id>"); each API worker LISTENs, so it serves the snapshot at once.
SNAPSHOT_CHANNEL = "top_coins_snapshots"


# The latest successful run of each kind: the one definition of "current", used by the
# view below, the API's poll, the price scrape and the metrics.  One indexed LIMIT 1
# per kind, however long the history.
LATEST_RUNS_VIEW_SQL = """
CREATE VIEW latest_runs AS
SELECT r.*
FROM (VALUES ('ranking'), ('prices')) AS kinds (kind)
CROSS JOIN LATERAL (
    SELECT * FROM scrape_runs s
    WHERE s.kind = kinds.kind AND s.status = 'succeeded'
    ORDER BY s.id DESC
    LIMIT 1
) r
""".strip()

# The merge the API serves, kept as SQL so psql users query exactly what the API
# serves.  A ranked coin is priced by the CoinMarketCap id it resolved to; a coin
# without one falls back to the quotes a ticker lookup stored under its symbol (the
# asset of the same name first, then the best CoinMarketCap rank).  Migrations copy
# this text when they (re)create the view; a test checks that they match.
TOP_COINS_VIEW_SQL = """
CREATE VIEW top_coins AS
WITH ranking_run AS (
    SELECT id, source, measure, finished_at FROM latest_runs WHERE kind = 'ranking'
), price_run AS (
    SELECT id, finished_at FROM latest_runs WHERE kind = 'prices'
)
SELECT
    r.rank,
    r.symbol,
    r.name,
    coalesce(p.price_usd, t.price_usd) AS price_usd,
    coalesce(r.cmc_id, t.cmc_id) AS cmc_id,
    CASE
        WHEN r.cmc_id IS NOT NULL THEN r.resolved_by
        WHEN t.cmc_id IS NOT NULL THEN 'ticker'
    END AS match,
    ranking_run.id AS ranking_run_id,
    ranking_run.source AS ranking_source,
    ranking_run.measure AS ranking_measure,
    ranking_run.finished_at AS ranked_at,
    price_run.id AS price_run_id,
    price_run.finished_at AS priced_at
FROM ranking_run
JOIN ranking_entries r ON r.run_id = ranking_run.id
LEFT JOIN price_run ON true
LEFT JOIN price_quotes p ON p.run_id = price_run.id AND p.cmc_id = r.cmc_id
LEFT JOIN LATERAL (
    SELECT q.cmc_id, q.price_usd
    FROM price_quotes q
    WHERE r.cmc_id IS NULL AND q.run_id = price_run.id AND q.symbol = r.symbol
    ORDER BY
        lower(q.name) = lower(r.name) DESC,
        q.cmc_rank ASC NULLS LAST,
        q.cmc_id ASC
    LIMIT 1
) t ON true
""".strip()

VIEWS = {"latest_runs": LATEST_RUNS_VIEW_SQL, "top_coins": TOP_COINS_VIEW_SQL}


# Column descriptions of the views for SQLAlchemy selects; not part of ``Base.metadata``
# because the views are created by the migrations from the SQL above, not by DDL here.
latest_runs = table(
    "latest_runs",
    column("id", BigInteger),
    column("kind", Text),
    column("source", Text),
    column("finished_at", DateTime(timezone=True)),
)

top_coins = table(
    "top_coins",
    column("rank", Integer),
    column("symbol", Text),
    column("name", Text),
    column("price_usd", Numeric),
    column("cmc_id", BigInteger),
    column("match", Text),
    column("ranking_run_id", BigInteger),
    column("ranking_source", Text),
    column("ranking_measure", Text),
    column("ranked_at", DateTime(timezone=True)),
    column("price_run_id", BigInteger),
    column("priced_at", DateTime(timezone=True)),
)
