"""Three ranking providers, runs by kind, coins resolved to CoinMarketCap ids, the id map.

A run now has a ``kind`` (ranking or prices) beside its ``source`` (the provider), since
with CoinMarketCap as the ranking provider both kinds share a source.  Ranking entries
carry the provider's asset id, slug and price, and the CoinMarketCap id they resolved to
with the rule that found it.  ``cmc_assets`` keeps CoinMarketCap's id map.  The views
are rebuilt on ``latest_runs``, the one definition of the current snapshot pair.

Downgrade deletes the runs the old schema cannot tell apart (CoinDesk rankings and
CoinMarketCap rankings, with their entries), and the id map.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Copies of topcoins.models.LATEST_RUNS_VIEW_SQL and TOP_COINS_VIEW_SQL as of this
# revision; migrations are history and must not change when the models do.
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
"""

LEGACY_MEASURE = "TOTALVOLUME24HTO"


def upgrade() -> None:
    op.execute("DROP VIEW top_coins")

    op.add_column("scrape_runs", sa.Column("kind", sa.Text(), nullable=True))
    op.execute(
        "UPDATE scrape_runs SET kind = CASE source WHEN 'cryptocompare' THEN 'ranking' "
        "ELSE 'prices' END"
    )
    op.alter_column("scrape_runs", "kind", nullable=False)
    op.add_column("scrape_runs", sa.Column("measure", sa.Text(), nullable=True))
    op.execute(
        sa.text("UPDATE scrape_runs SET measure = :measure WHERE kind = 'ranking'").bindparams(
            measure=LEGACY_MEASURE
        )
    )
    op.add_column("scrape_runs", sa.Column("ticker_lookups", sa.Integer(), nullable=True))
    op.add_column("scrape_runs", sa.Column("credit_limit_monthly", sa.Integer(), nullable=True))
    op.add_column("scrape_runs", sa.Column("credits_left_monthly", sa.Integer(), nullable=True))
    op.add_column(
        "scrape_runs", sa.Column("credits_reset_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.drop_constraint(op.f("ck_scrape_runs_source"), "scrape_runs", type_="check")
    op.create_check_constraint(
        op.f("ck_scrape_runs_source"),
        "scrape_runs",
        "source IN ('coindesk', 'cryptocompare', 'coinmarketcap')",
    )
    op.create_check_constraint(
        op.f("ck_scrape_runs_kind"), "scrape_runs", "kind IN ('ranking', 'prices')"
    )
    op.drop_index("ix_scrape_runs_latest_success", table_name="scrape_runs")
    op.create_index(
        "ix_scrape_runs_latest_success",
        "scrape_runs",
        ["kind", sa.literal_column("id DESC")],
        unique=False,
        postgresql_where=sa.text("status = 'succeeded'"),
    )

    op.alter_column("ranking_entries", "cryptocompare_id", new_column_name="provider_asset_id")
    op.add_column("ranking_entries", sa.Column("slug", sa.Text(), nullable=True))
    op.add_column("ranking_entries", sa.Column("price_usd", sa.Numeric(), nullable=True))
    op.add_column(
        "ranking_entries",
        sa.Column("price_updated_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("ranking_entries", sa.Column("cmc_id", sa.BigInteger(), nullable=True))
    op.add_column("ranking_entries", sa.Column("resolved_by", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_ranking_entries_resolved_by"),
        "ranking_entries",
        "resolved_by IN ('alias', 'provider', 'symbol', 'slug', 'name')",
    )
    op.create_check_constraint(
        op.f("ck_ranking_entries_cmc_id_iff_resolved"),
        "ranking_entries",
        "(cmc_id IS NULL) = (resolved_by IS NULL)",
    )

    # The view matched names; ids made that index dead weight on the largest table.
    op.drop_index("ix_price_quotes_run_lower_name", table_name="price_quotes")

    op.create_table(
        "cmc_assets",
        sa.Column("cmc_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("name_key", sa.Text(), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cmc_id", name=op.f("pk_cmc_assets")),
    )
    op.create_index("ix_cmc_assets_name_key", "cmc_assets", ["name_key"], unique=False)
    op.create_index("ix_cmc_assets_slug", "cmc_assets", ["slug"], unique=False)
    op.create_index(
        "ix_cmc_assets_upper_symbol",
        "cmc_assets",
        [sa.literal_column("upper(symbol)")],
        unique=False,
    )

    op.execute(LATEST_RUNS_VIEW_SQL)
    op.execute(TOP_COINS_VIEW_SQL)


def downgrade() -> None:
    op.execute("DROP VIEW top_coins")
    op.execute("DROP VIEW latest_runs")
    op.drop_index("ix_cmc_assets_upper_symbol", table_name="cmc_assets")
    op.drop_index("ix_cmc_assets_slug", table_name="cmc_assets")
    op.drop_index("ix_cmc_assets_name_key", table_name="cmc_assets")
    op.drop_table("cmc_assets")
    op.create_index(
        "ix_price_quotes_run_lower_name",
        "price_quotes",
        ["run_id", sa.literal_column("lower(name)")],
        unique=False,
    )

    op.execute(
        "DELETE FROM scrape_runs WHERE source = 'coindesk' "
        "OR (source = 'coinmarketcap' AND kind = 'ranking')"
    )
    op.drop_constraint(
        op.f("ck_ranking_entries_cmc_id_iff_resolved"), "ranking_entries", type_="check"
    )
    op.drop_constraint(op.f("ck_ranking_entries_resolved_by"), "ranking_entries", type_="check")
    for name in ("resolved_by", "cmc_id", "price_updated_at", "price_usd", "slug"):
        op.drop_column("ranking_entries", name)
    op.alter_column("ranking_entries", "provider_asset_id", new_column_name="cryptocompare_id")

    op.drop_index("ix_scrape_runs_latest_success", table_name="scrape_runs")
    op.create_index(
        "ix_scrape_runs_latest_success",
        "scrape_runs",
        ["source", sa.literal_column("id DESC")],
        unique=False,
        postgresql_where=sa.text("status = 'succeeded'"),
    )
    op.drop_constraint(op.f("ck_scrape_runs_kind"), "scrape_runs", type_="check")
    op.drop_constraint(op.f("ck_scrape_runs_source"), "scrape_runs", type_="check")
    op.create_check_constraint(
        op.f("ck_scrape_runs_source"), "scrape_runs", "source IN ('cryptocompare', 'coinmarketcap')"
    )
    for name in (
        "credits_reset_at",
        "credits_left_monthly",
        "credit_limit_monthly",
        "ticker_lookups",
        "measure",
        "kind",
    ):
        op.drop_column("scrape_runs", name)
    op.execute(context.script.get_revision("0001").module.TOP_COINS_VIEW_SQL)
