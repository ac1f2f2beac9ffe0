"""The scrapers' lock as a row per kind, which only the writer role can lock.

Until now each run took a session advisory lock, which any role can take: the API's
SELECT-only role could hold it and make every run skip.  ``SELECT … FOR UPDATE`` on a
row of ``scrape_locks`` needs UPDATE on the table, which ``topcoins_reader`` lacks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("ranking", "prices")


def upgrade() -> None:
    locks = op.create_table(
        "scrape_locks",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.CheckConstraint("kind IN ('ranking', 'prices')", name=op.f("ck_scrape_locks_kind")),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_scrape_locks")),
    )
    op.bulk_insert(locks, [{"kind": kind} for kind in KINDS])


def downgrade() -> None:
    op.drop_table("scrape_locks")
