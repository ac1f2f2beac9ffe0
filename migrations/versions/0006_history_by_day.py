"""History that costs little: coin text stored once, narrow rows, partitions by day.

``assets`` keeps each way a ranking provider described a coin (with the id it resolved
to) once; ``ranking_entries`` and ``price_quotes`` become narrow rows partitioned by
``day``, with a BRIN index on the run instead of B-trees larger than the tables.  The
ticker fallback that the view used to compute from the quotes' text is stored by the
prices run in ``ticker_matches``.  A run's ``day`` (its UTC start date, as days since
2000-01-01) names the partition of its rows.

Every stored run is carried over, with the same coins, ids and prices served; the
quotes' text (CoinMarketCap's symbol and name of each quote) is not kept, since the
ticker matches it served are.  Downgrade carries everything back, taking a quote's text
from the id map or from the ranked coin that resolved to it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 15:00:00
"""

from collections.abc import Sequence
from datetime import date, timedelta

import sqlalchemy as sa
from alembic import context, op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Copies of the views in topcoins.models as of this revision; migrations are history and
# must not change when the models do.
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
"""

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
    price_run.finished_at AS priced_at
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
"""

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
"""

HISTORY_EPOCH = date(2000, 1, 1)


def upgrade() -> None:
    op.execute("DROP VIEW top_coins")
    op.execute("DROP VIEW latest_runs")

    op.add_column("scrape_runs", sa.Column("day", sa.SmallInteger(), nullable=True))
    op.execute("UPDATE scrape_runs SET day = timezone('UTC', started_at)::date - date '2000-01-01'")
    op.alter_column("scrape_runs", "day", nullable=False)

    op.rename_table("ranking_entries", "ranking_entries_0005")
    op.rename_table("price_quotes", "price_quotes_0005")

    op.create_table(
        "assets",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("provider_asset_id", sa.BigInteger(), nullable=True),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=True),
        sa.Column("cmc_id", sa.BigInteger(), nullable=True),
        sa.Column("resolved_by", sa.Text(), nullable=True),
        sa.Column(
            "first_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(cmc_id IS NULL) = (resolved_by IS NULL)", name=op.f("ck_assets_cmc_id_iff_resolved")
        ),
        sa.CheckConstraint(
            "resolved_by IN ('alias', 'provider', 'symbol', 'slug', 'name')",
            name=op.f("ck_assets_resolved_by"),
        ),
        sa.CheckConstraint(
            "source IN ('coindesk', 'cryptocompare', 'coinmarketcap')",
            name=op.f("ck_assets_source"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assets")),
    )
    op.create_index("ix_assets_cmc_id", "assets", ["cmc_id"], unique=False)
    op.create_index(
        "uq_assets_description",
        "assets",
        [
            "source",
            "symbol",
            "name",
            sa.literal_column("coalesce(provider_asset_id, 0)"),
            sa.literal_column("coalesce(slug, '')"),
            sa.literal_column("coalesce(cmc_id, 0)"),
            sa.literal_column("coalesce(resolved_by, '')"),
        ],
        unique=True,
    )
    op.create_table(
        "ranking_entries",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("volume_24h_usd", sa.REAL(), nullable=True),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("day", sa.SmallInteger(), nullable=False),
        sa.CheckConstraint("rank > 0", name=op.f("ck_ranking_entries_rank_positive")),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_ranking_entries_asset_id_assets")
        ),
        postgresql_partition_by="RANGE (day)",
    )
    op.create_index(
        "ix_ranking_entries_run_id",
        "ranking_entries",
        ["run_id"],
        unique=False,
        postgresql_using="brin",
        postgresql_with={"pages_per_range": 32},
    )
    op.create_table(
        "price_quotes",
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("cmc_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.SmallInteger(), nullable=False),
        sa.Column("price_usd", sa.Numeric(), nullable=True),
        postgresql_partition_by="RANGE (day)",
    )
    op.create_index(
        "ix_price_quotes_run_id",
        "price_quotes",
        ["run_id"],
        unique=False,
        postgresql_using="brin",
        postgresql_with={"pages_per_range": 32},
    )
    op.create_table(
        "ticker_matches",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("cmc_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_ticker_matches_asset_id_assets")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["scrape_runs.id"],
            name=op.f("fk_ticker_matches_run_id_scrape_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "asset_id", name=op.f("pk_ticker_matches")),
    )

    connection = op.get_bind()
    for (day,) in connection.execute(sa.text("SELECT DISTINCT day FROM scrape_runs ORDER BY 1")):
        suffix = f"{HISTORY_EPOCH + timedelta(days=day):%Y%m%d}"
        for table in ("ranking_entries", "price_quotes"):
            op.execute(
                f'CREATE TABLE "{table}_{suffix}" PARTITION OF "{table}" '
                f"FOR VALUES FROM ({int(day)}) TO ({int(day) + 1})"
            )

    op.execute(
        "INSERT INTO assets (source, provider_asset_id, symbol, name, slug, cmc_id, resolved_by,"
        " first_seen_at)"
        " SELECT r.source, e.provider_asset_id, e.symbol, e.name, e.slug, e.cmc_id,"
        " e.resolved_by, min(r.started_at)"
        " FROM ranking_entries_0005 e JOIN scrape_runs r ON r.id = e.run_id"
        " GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 8"
        " ON CONFLICT DO NOTHING"
    )
    op.execute(
        "INSERT INTO ranking_entries (run_id, asset_id, volume_24h_usd, rank, day)"
        " SELECT e.run_id, a.id, e.volume_24h_usd, e.rank, r.day"
        " FROM ranking_entries_0005 e JOIN scrape_runs r ON r.id = e.run_id"
        " JOIN assets a ON a.source = r.source AND a.symbol = e.symbol AND a.name = e.name"
        " AND coalesce(a.provider_asset_id, 0) = coalesce(e.provider_asset_id, 0)"
        " AND coalesce(a.slug, '') = coalesce(e.slug, '')"
        " AND coalesce(a.cmc_id, 0) = coalesce(e.cmc_id, 0)"
        " AND coalesce(a.resolved_by, '') = coalesce(e.resolved_by, '')"
        " ORDER BY e.run_id, e.rank"
    )
    # A CoinMarketCap ranking carried its own prices, which the next prices run reused.
    # Ids above int4 never came from a real provider; the narrow rows cannot hold them.
    op.execute(
        "INSERT INTO price_quotes (last_updated, run_id, cmc_id, day, price_usd)"
        " SELECT last_updated, run_id, cmc_id, day, price_usd FROM ("
        "  SELECT q.last_updated, q.run_id, q.cmc_id, r.day, q.price_usd"
        "  FROM price_quotes_0005 q JOIN scrape_runs r ON r.id = q.run_id"
        "  WHERE q.cmc_id <= 2147483647"
        "  UNION ALL"
        "  (SELECT DISTINCT ON (e.run_id, e.cmc_id)"
        "   e.price_updated_at, e.run_id, e.cmc_id, r.day, e.price_usd"
        "  FROM ranking_entries_0005 e JOIN scrape_runs r ON r.id = e.run_id"
        "  WHERE r.source = 'coinmarketcap' AND e.resolved_by = 'provider'"
        "  AND e.cmc_id <= 2147483647"
        "  ORDER BY e.run_id, e.cmc_id, e.rank)"
        " ) q ORDER BY run_id, cmc_id"
    )
    # The rule the old view applied to a coin without an id, at every price run.
    op.execute(
        "INSERT INTO ticker_matches (run_id, asset_id, cmc_id)"
        " SELECT DISTINCT ON (q.run_id, a.id) q.run_id, a.id, q.cmc_id"
        " FROM assets a JOIN price_quotes_0005 q ON q.symbol = a.symbol"
        " WHERE a.cmc_id IS NULL"
        " ORDER BY q.run_id, a.id, lower(q.name) = lower(a.name) DESC,"
        " q.cmc_rank ASC NULLS LAST, q.cmc_id ASC"
    )
    op.drop_table("ranking_entries_0005")
    op.drop_table("price_quotes_0005")

    op.execute(LATEST_RUNS_VIEW_SQL)
    op.execute(TOP_COINS_VIEW_SQL)
    op.execute(RANKINGS_VIEW_SQL)


def downgrade() -> None:
    op.execute("DROP VIEW rankings")
    op.execute("DROP VIEW top_coins")
    op.execute("DROP VIEW latest_runs")
    op.rename_table("ranking_entries", "ranking_entries_0006")
    op.rename_table("price_quotes", "price_quotes_0006")

    op.create_table(
        "ranking_entries",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("provider_asset_id", sa.BigInteger(), nullable=True),
        sa.Column("volume_24h_usd", sa.Numeric(), nullable=True),
        sa.Column("slug", sa.Text(), nullable=True),
        sa.Column("price_usd", sa.Numeric(), nullable=True),
        sa.Column("price_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cmc_id", sa.BigInteger(), nullable=True),
        sa.Column("resolved_by", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(cmc_id IS NULL) = (resolved_by IS NULL)",
            name=op.f("ck_ranking_entries_cmc_id_iff_resolved"),
        ),
        sa.CheckConstraint("rank > 0", name=op.f("ck_ranking_entries_rank_positive")),
        sa.CheckConstraint(
            "resolved_by IN ('alias', 'provider', 'symbol', 'slug', 'name')",
            name=op.f("ck_ranking_entries_resolved_by"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["scrape_runs.id"],
            name=op.f("fk_ranking_entries_run_id_scrape_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "rank", name=op.f("pk_ranking_entries")),
    )
    op.create_table(
        "price_quotes",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("cmc_id", sa.BigInteger(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=True),
        sa.Column("cmc_rank", sa.Integer(), nullable=True),
        sa.Column("price_usd", sa.Numeric(), nullable=True),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["scrape_runs.id"],
            name=op.f("fk_price_quotes_run_id_scrape_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "cmc_id", name=op.f("pk_price_quotes")),
    )
    op.create_index(
        "ix_price_quotes_run_symbol", "price_quotes", ["run_id", "symbol"], unique=False
    )

    op.execute(
        "INSERT INTO ranking_entries (run_id, rank, symbol, name, provider_asset_id,"
        " volume_24h_usd, slug, price_usd, price_updated_at, cmc_id, resolved_by)"
        " SELECT e.run_id, e.rank, a.symbol, a.name, a.provider_asset_id, e.volume_24h_usd,"
        " a.slug, q.price_usd, q.last_updated, a.cmc_id, a.resolved_by"
        " FROM ranking_entries_0006 e JOIN assets a ON a.id = e.asset_id"
        " JOIN scrape_runs r ON r.id = e.run_id"
        " LEFT JOIN price_quotes_0006 q ON r.source = 'coinmarketcap'"
        " AND a.resolved_by = 'provider' AND q.run_id = e.run_id AND q.cmc_id = a.cmc_id"
    )
    op.execute(
        "INSERT INTO price_quotes (run_id, cmc_id, symbol, name, slug, cmc_rank, price_usd,"
        " last_updated)"
        " SELECT q.run_id, q.cmc_id,"
        " coalesce(matched.symbol, m.symbol, ranked.symbol, ''),"
        " coalesce(matched.name, m.name, ranked.name, ''),"
        " coalesce(matched.slug, m.slug, ranked.slug), m.rank, q.price_usd, q.last_updated"
        " FROM price_quotes_0006 q JOIN scrape_runs r ON r.id = q.run_id AND r.kind = 'prices'"
        " LEFT JOIN cmc_assets m ON m.cmc_id = q.cmc_id"
        " LEFT JOIN LATERAL (SELECT a.symbol, a.name, a.slug FROM ticker_matches t"
        "  JOIN assets a ON a.id = t.asset_id WHERE t.run_id = q.run_id AND t.cmc_id = q.cmc_id"
        "  ORDER BY a.id LIMIT 1) matched ON true"
        " LEFT JOIN LATERAL (SELECT a.symbol, a.name, a.slug FROM assets a"
        "  WHERE a.cmc_id = q.cmc_id ORDER BY a.id DESC LIMIT 1) ranked ON true"
    )
    op.drop_table("ticker_matches")
    op.drop_table("ranking_entries_0006")
    op.drop_table("price_quotes_0006")
    op.drop_index("uq_assets_description", table_name="assets")
    op.drop_index("ix_assets_cmc_id", table_name="assets")
    op.drop_table("assets")
    op.drop_column("scrape_runs", "day")

    views = context.script.get_revision("0004").module
    op.execute(views.LATEST_RUNS_VIEW_SQL)
    op.execute(views.TOP_COINS_VIEW_SQL)
