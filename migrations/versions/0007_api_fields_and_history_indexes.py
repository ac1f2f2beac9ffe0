"""What the API's consumers ask for: market cap and 24 h change, and a coin's history.

``price_quotes`` keeps CoinMarketCap's market cap and 24 h percent change beside the
price; ``top_coins`` serves them with the ranking's volume, the provider's asset id and
when the provider last updated the price.  Two B-tree indexes find one coin's rows of a
day (``api.history``): deduplicated, they cost some 6 bytes a row.

Both columns are nullable and added without a rewrite.  Each index is built on every
partition while the table is locked against writes: on a week at 5000 coins that takes
some seconds, during which the scrapers wait (their lock timeout is longer).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A copy of the view in topcoins.models as of this revision; migrations are history and
# must not change when the models do.
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
"""


def upgrade() -> None:
    op.add_column("price_quotes", sa.Column("market_cap_usd", sa.Double(), nullable=True))
    op.add_column("price_quotes", sa.Column("percent_change_24h", sa.REAL(), nullable=True))
    op.create_index("ix_ranking_entries_asset_id", "ranking_entries", ["asset_id"])
    op.create_index("ix_price_quotes_cmc_id", "price_quotes", ["cmc_id"])
    op.execute("DROP VIEW top_coins")
    op.execute(TOP_COINS_VIEW_SQL)


def downgrade() -> None:
    op.execute("DROP VIEW top_coins")
    op.drop_index("ix_price_quotes_cmc_id", table_name="price_quotes")
    op.drop_index("ix_ranking_entries_asset_id", table_name="ranking_entries")
    op.drop_column("price_quotes", "percent_change_24h")
    op.drop_column("price_quotes", "market_cap_usd")
    op.execute(context.script.get_revision("0006").module.TOP_COINS_VIEW_SQL)
