"""The schema: migrations match the models, and the fast revision check matches Alembic."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from store.database import HEAD_REVISION, head_revision
from store.models import Base


def test_head_revision_constant_matches_the_migration_scripts():
    assert HEAD_REVISION == head_revision()


def test_migrated_schema_matches_the_models(engine):
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
