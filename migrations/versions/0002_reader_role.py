"""A SELECT-only group role for the API: ``topcoins_reader``.

The API only reads, so it connects as a LOGIN role that is a member of this group
(see README "Least privilege").  Roles are cluster-wide: the role is created if it
is missing and never dropped here, since other databases of the cluster may use it;
downgrade only revokes what this database granted.

The role is looked up before it is created: PostgreSQL checks CREATEROLE before it
notices a duplicate, and an owner role without CREATEROLE must be able to migrate once
the role exists.  When it is missing and cannot be created, the error says what to run.
A session may name another group role in ``topcoins.reader_role`` (the tests do, to
leave the cluster's own alone).

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
        DECLARE
            reader text := coalesce(
                nullif(current_setting('topcoins.reader_role', true), ''), 'topcoins_reader'
            );
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = reader) THEN
                BEGIN
                    EXECUTE format('CREATE ROLE %I NOLOGIN', reader);
                EXCEPTION
                    WHEN duplicate_object THEN
                        NULL;
                    WHEN insufficient_privilege THEN
                        RAISE insufficient_privilege USING MESSAGE = format(
                            'the group role %1$s is missing and %2$s may not create it: run '
                            '"CREATE ROLE %1$s NOLOGIN;" as a role with CREATEROLE, '
                            'then migrate again',
                            quote_ident(reader), quote_ident(current_user)
                        );
                END;
            END IF;
            EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', reader);
            EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', reader);
            EXECUTE format(
                'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO %I', reader
            );
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DO $$
        DECLARE
            reader text := coalesce(
                nullif(current_setting('topcoins.reader_role', true), ''), 'topcoins_reader'
            );
        BEGIN
            EXECUTE format(
                'ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM %I',
                reader
            );
            EXECUTE format('REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM %I', reader);
            EXECUTE format('REVOKE USAGE ON SCHEMA public FROM %I', reader);
        END
        $$
        """
    )
