"""Persistence: SQLAlchemy 2 models, Alembic migrations, engine setup. SQLite (WAL) is the
embedded default; any SQLAlchemy URL works, PostgreSQL included."""
