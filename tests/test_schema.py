"""The fast revision check used when opening a store matches Alembic's view of the scripts."""

from __future__ import annotations

from store.database import HEAD_REVISION, head_revision


def test_head_revision_constant_matches_the_migration_scripts():
    assert HEAD_REVISION == head_revision()
