"""A SELECT-only group role for the API: ``topcoins_reader``.

The API only reads, so it connects as a LOGIN role that is a member of this group
(see README "Least privilege").  Roles are cluster-wide: the role is created if it
is missing and never dropped here, since other databases of the cluster may use it;
downgrade only revokes what this database granted.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 03:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        DO $$
        BEGIN
            CREATE ROLE topcoins_reader NOLOGIN;
        EXCEPTION WHEN duplicate_object THEN
            NULL;
        END
        $$
        """
    )
    op.execute("GRANT USAGE ON SCHEMA public TO topcoins_reader")
    op.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO topcoins_reader")
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO topcoins_reader"
    )


def downgrade() -> None:
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM topcoins_reader"
    )
    op.execute("REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM topcoins_reader")
    op.execute("REVOKE USAGE ON SCHEMA public FROM topcoins_reader")
