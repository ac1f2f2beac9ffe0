"""The Alembic migrations, packaged: ``alembic.ini`` and ``top-coins-migrate`` find them here."""
