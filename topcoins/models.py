"""The database schema: the contract between the scrapers (writers) and the API (reader).

Every scrape run gets a row in ``scrape_runs``; a successful run owns the rows it
wrote (``ranking_entries`` or ``price_quotes``), committed in the same transaction,
so a snapshot is either complete or absent.  Readers only ever look at the latest
*succeeded* run of each kind (``latest_runs``), through the ``top_coins`` view below.

A week of history at 5000 coins is some 50 million ranking rows, so the history is
built to be cheap: a coin's text is stored once (``assets``), the rows that repeat every
run are narrow, and both history tables are partitioned by day, so that retention drops
whole partitions instead of deleting rows (``scrapers.history``).  They carry no
B-tree: rows arrive in run order, and a BRIN index finds a run's rows in a few pages.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import (
    REAL,
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
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


# The history tables are partitioned by ``day``: whole days since this date, in UTC, as
# a smallint (two bytes, where a date would take four and widen every row).
HISTORY_EPOCH = date(2000, 1, 1)


def history_day(moment: datetime) -> int:
    """The partition a run's rows go to: the UTC day the run started."""
    return (moment.astimezone(UTC).date() - HISTORY_EPOCH).days


# A run of 5000 coins fills some 27 pages of ranking_entries: a range of 32 pages puts it
# in one or two ranges, so a run is read in at most 64 pages however long the history.
BRIN_PAGES_PER_RANGE = 32


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
    # history_day(started_at): the partition of the run's rows.
    day: Mapped[int] = mapped_column(SmallInteger)

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


class Asset(Base):
    """A coin as its ranking provider described it, and the CoinMarketCap id it resolved to.

    Ranking rows point here rather than repeat the text every minute.  A row is never
    changed: a coin renamed, or resolved to another id (an alias, a new id map), gets a
    new row, so a past ranking still shows what was served then and why.  The resolution
    is stored rather than computed by the view, so that psql shows why a coin got the
    price it got, even after the id map or the aliases changed.
    """

    __tablename__ = "assets"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    provider_asset_id: Mapped[int | None] = mapped_column(BigInteger)
    symbol: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    slug: Mapped[str | None] = mapped_column(Text)
    cmc_id: Mapped[int | None] = mapped_column(BigInteger)
    resolved_by: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint(_in("source", Source), name="source"),
        CheckConstraint(_in("resolved_by", ResolvedBy), name="resolved_by"),
        CheckConstraint("(cmc_id IS NULL) = (resolved_by IS NULL)", name="cmc_id_iff_resolved"),
        # One row per description; NULLs compared as values (PostgreSQL 14 has no
        # NULLS NOT DISTINCT).
        Index(
            "uq_assets_description",
            "source",
            "symbol",
            "name",
            text("coalesce(provider_asset_id, 0)"),
            text("coalesce(slug, '')"),
            text("coalesce(cmc_id, 0)"),
            text("coalesce(resolved_by, '')"),
            unique=True,
        ),
        Index("ix_assets_cmc_id", "cmc_id"),
    )


class RankingEntry(Base):
    """One coin of a ranking: 16 bytes of data a row, some 50 million rows a week at 5000.

    The columns are ordered so that none needs padding.  There is no primary key: it
    would have to include ``day`` and would be as large as the table; the scraper's
    writer is the only writer, and it writes each rank once.
    """

    __tablename__ = "ranking_entries"

    run_id: Mapped[int] = mapped_column(Integer)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    # The ranking's basis, to seven significant digits: a four-byte float keeps the row
    # narrow, and the order is the provider's (``rank``), not recomputed from this.
    volume_24h_usd: Mapped[float | None] = mapped_column(REAL)
    rank: Mapped[int] = mapped_column(SmallInteger)
    day: Mapped[int] = mapped_column(SmallInteger)

    __table_args__ = (
        CheckConstraint("rank > 0", name="rank_positive"),
        Index(
            "ix_ranking_entries_run_id",
            "run_id",
            postgresql_using="brin",
            postgresql_with={"pages_per_range": BRIN_PAGES_PER_RANGE},
        ),
        # A coin's history (``api.history``): its rows of a day, in a few pages of index.
        # Deduplicated, an asset's 1 440 rows a day take some 9 KB of this index.
        Index("ix_ranking_entries_asset_id", "asset_id"),
        {"postgresql_partition_by": "RANGE (day)"},
    )
    # No primary key in the table (see above); the ORM needs one to map it.
    __mapper_args__ = {"primary_key": [run_id, rank]}  # noqa: RUF012


class PriceQuote(Base):
    """A CoinMarketCap USD quote, under the run that fetched it.

    A prices run stores one per priced coin; a CoinMarketCap ranking stores the prices its
    listing carried, which the next prices run copies rather than buys again.
    """

    __tablename__ = "price_quotes"

    last_updated: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[int] = mapped_column(Integer)
    cmc_id: Mapped[int] = mapped_column(Integer)
    day: Mapped[int] = mapped_column(SmallInteger)
    price_usd: Mapped[Decimal | None] = mapped_column(Numeric)
    # Served, never computed on: a float is enough, and keeps the row narrow.
    market_cap_usd: Mapped[float | None] = mapped_column(Double)
    percent_change_24h: Mapped[float | None] = mapped_column(REAL)

    __table_args__ = (
        Index(
            "ix_price_quotes_run_id",
            "run_id",
            postgresql_using="brin",
            postgresql_with={"pages_per_range": BRIN_PAGES_PER_RANGE},
        ),
        Index("ix_price_quotes_cmc_id", "cmc_id"),
        {"postgresql_partition_by": "RANGE (day)"},
    )
    __mapper_args__ = {"primary_key": [run_id, cmc_id]}  # noqa: RUF012


class TickerMatch(Base):
    """The CoinMarketCap id a prices run chose, by ticker, for a coin the ranking left unresolved.

    Rare (only while the id map is missing or stale), so neither narrow nor partitioned:
    its rows go with their run.
    """

    __tablename__ = "ticker_matches"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("scrape_runs.id", ondelete="CASCADE"), primary_key=True
    )
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    cmc_id: Mapped[int] = mapped_column(BigInteger)


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
# serves.  A ranked coin is priced by the CoinMarketCap id its asset resolved to, or, for
# a coin left unresolved, by the id the prices run matched by ticker.  Each history
# table is read in the partition of its run's day, by the run's BRIN index: the run and
# its day are subqueries (init plans), so that the planner reads one run's rows whatever
# the history; joined on as rows, they let it guess a handful of rows and nest loops
# over 5000 (seconds instead of milliseconds, bench/history.py).  Migrations
# copy this text when they (re)create the view; a test checks that they match.
TOP_COINS_VIEW_SQL = """
CREATE VIEW top_coins AS
WITH ranking_run AS (
    SELECT id, day, source, measure, finished_at FROM latest_runs WHERE kind = 'ranking'
), price_run AS (
    SELECT id, day, finished_at FROM latest_runs WHERE kind = 'prices'
)
SELECT
    e.rank,
    a.symbol,
    a.name,
    p.price_usd,
    coalesce(a.cmc_id, t.cmc_id) AS cmc_id,
    CASE
        WHEN a.cmc_id IS NOT NULL THEN a.resolved_by
        WHEN t.cmc_id IS NOT NULL THEN 'ticker'
    END AS match,
    ranking_run.id AS ranking_run_id,
    ranking_run.source AS ranking_source,
    ranking_run.measure AS ranking_measure,
    ranking_run.finished_at AS ranked_at,
    price_run.id AS price_run_id,
    price_run.finished_at AS priced_at,
    a.provider_asset_id,
    e.volume_24h_usd,
    p.market_cap_usd,
    p.percent_change_24h,
    p.last_updated AS price_updated_at
FROM ranking_run
JOIN ranking_entries e
    ON e.day = (SELECT day FROM ranking_run) AND e.run_id = (SELECT id FROM ranking_run)
JOIN assets a ON a.id = e.asset_id
LEFT JOIN price_run ON true
LEFT JOIN ticker_matches t ON t.run_id = price_run.id AND t.asset_id = e.asset_id
LEFT JOIN price_quotes p
    ON p.day = (SELECT day FROM price_run)
    AND p.run_id = (SELECT id FROM price_run)
    AND p.cmc_id = coalesce(a.cmc_id, t.cmc_id)
""".strip()

# Every stored ranking with its coins' text, for psql and for history: filter on
# ``run_id`` (and ``day``, to read one partition).  The rows of a forgotten run, kept
# until their day's partition goes, are not shown.
RANKINGS_VIEW_SQL = """
CREATE VIEW rankings AS
SELECT
    e.run_id,
    r.finished_at AS ranked_at,
    r.source,
    e.day,
    e.rank,
    a.symbol,
    a.name,
    e.volume_24h_usd,
    a.cmc_id,
    a.resolved_by,
    a.provider_asset_id,
    a.slug,
    e.asset_id
FROM ranking_entries e
JOIN scrape_runs r ON r.id = e.run_id
JOIN assets a ON a.id = e.asset_id
""".strip()

VIEWS = {
    "latest_runs": LATEST_RUNS_VIEW_SQL,
    "top_coins": TOP_COINS_VIEW_SQL,
    "rankings": RANKINGS_VIEW_SQL,
}


# Column descriptions of the views for SQLAlchemy selects; not part of ``Base.metadata``
# because the views are created by the migrations from the SQL above, not by DDL here.
latest_runs = table(
    "latest_runs",
    column("id", BigInteger),
    column("kind", Text),
    column("source", Text),
    column("finished_at", DateTime(timezone=True)),
    column("day", SmallInteger),
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
    column("provider_asset_id", BigInteger),
    column("volume_24h_usd", REAL),
    column("market_cap_usd", Double),
    column("percent_change_24h", REAL),
    column("price_updated_at", DateTime(timezone=True)),
)

rankings = table(
    "rankings",
    column("run_id", Integer),
    column("ranked_at", DateTime(timezone=True)),
    column("source", Text),
    column("day", SmallInteger),
    column("rank", SmallInteger),
    column("symbol", Text),
    column("name", Text),
    column("volume_24h_usd", REAL),
    column("cmc_id", BigInteger),
    column("resolved_by", Text),
    column("provider_asset_id", BigInteger),
    column("slug", Text),
    column("asset_id", Integer),
)
