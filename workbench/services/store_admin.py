"""Store administration for the faces: where the store is, and bringing its schema up to date."""

from __future__ import annotations

from store.database import display_url, open_checked, resolve_url

from .store_faults import store_failure


def store_location(url: str | None = None) -> str:
    """The store `url` resolves to (--db, WORKBENCH_DB, the embedded default), password hidden."""
    return display_url(resolve_url(url))


def upgrade_store(url: str | None = None) -> str:
    """Create the store if need be and migrate its schema to this workbench's; returns where it is."""
    try:
        opened = open_checked(url, auto_upgrade=True, create=True)
    except Exception as exc:
        raise store_failure(exc, store_location(url), opening=True) from exc
    opened.engine.dispose()
    return opened.location
