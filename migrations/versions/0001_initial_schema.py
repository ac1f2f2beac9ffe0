"""Initial schema: scrape runs, ranking and price snapshots, aliases, the top_coins view.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 02:28:22.308505
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# A copy of topcoins.models.TOP_COINS_VIEW_SQL as of this revision; migrations are
# history and must not change when the model does.
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
"""


def upgrade() -> None:
    op.create_table(
        "scrape_runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "finished_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("item_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("credit_count", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(status = 'failed') = (error IS NOT NULL)",
            name=op.f("ck_scrape_runs_error_iff_failed"),
        ),
        sa.CheckConstraint(
            "source IN ('cryptocompare', 'coinmarketcap')", name=op.f("ck_scrape_runs_source")
        ),
        sa.CheckConstraint("status IN ('succeeded', 'failed')", name=op.f("ck_scrape_runs_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scrape_runs")),
    )
    op.create_index("ix_scrape_runs_finished_at", "scrape_runs", ["finished_at"], unique=False)
    op.create_index(
        "ix_scrape_runs_latest_success",
        "scrape_runs",
        ["source", sa.literal_column("id DESC")],
        unique=False,
        postgresql_where=sa.text("status = 'succeeded'"),
    )
    op.create_table(
        "symbol_aliases",
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("cmc_id", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("symbol", name=op.f("pk_symbol_aliases")),
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
        "ix_price_quotes_run_lower_name",
        "price_quotes",
        ["run_id", sa.literal_column("lower(name)")],
        unique=False,
    )
    op.create_index(
        "ix_price_quotes_run_symbol", "price_quotes", ["run_id", "symbol"], unique=False
    )
    op.create_table(
        "ranking_entries",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("cryptocompare_id", sa.BigInteger(), nullable=True),
        sa.Column("volume_24h_usd", sa.Numeric(), nullable=True),
        sa.CheckConstraint("rank > 0", name=op.f("ck_ranking_entries_rank_positive")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["scrape_runs.id"],
            name=op.f("fk_ranking_entries_run_id_scrape_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "rank", name=op.f("pk_ranking_entries")),
    )
    op.execute(TOP_COINS_VIEW_SQL)


def downgrade() -> None:
    op.execute("DROP VIEW top_coins")
    op.drop_table("ranking_entries")
    op.drop_index("ix_price_quotes_run_symbol", table_name="price_quotes")
    op.drop_index("ix_price_quotes_run_lower_name", table_name="price_quotes")
    op.drop_table("price_quotes")
    op.drop_table("symbol_aliases")
    op.drop_index(
        "ix_scrape_runs_latest_success",
        table_name="scrape_runs",
        postgresql_where=sa.text("status = 'succeeded'"),
    )
    op.drop_index("ix_scrape_runs_finished_at", table_name="scrape_runs")
    op.drop_table("scrape_runs")
