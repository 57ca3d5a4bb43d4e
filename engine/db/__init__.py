"""Metadata store: SQLAlchemy 2 (async) on SQLite by default, PostgreSQL via DATABASE_URL; Alembic migrations."""
