"""The trace id of each scrape run, so psql leads to the scrape's trace.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 03:15:06.552696
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("scrape_runs", sa.Column("trace_id", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("scrape_runs", "trace_id")
