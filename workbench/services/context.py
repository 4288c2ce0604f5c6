"""What every use case needs: the store, the adapters, a clock, an ID factory, an actor."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from sqlalchemy import Engine

from adapters import AdapterRegistry, default_registry
from store.database import display_url, open_checked, resolve_url
from workbench.domain.ids import IdFactory, default_ids

from .store_faults import store_failure


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_actor() -> str:
    """The OS account this process runs as. From the user database, not LOGNAME or USER
    (getpass reads those first): roles hang on this name, and an environment variable is
    anyone's to set."""
    try:
        return f"user:{pwd.getpwuid(os.geteuid()).pw_name}"
    except KeyError:  # a uid with no account (containers): still say who acted, by number
        return f"user:uid-{os.geteuid()}"


@dataclass(frozen=True)
class ServiceContext:
    engine: Engine
    adapters: AdapterRegistry = field(default_factory=default_registry)
    clock: Callable[[], datetime] = utc_now
    ids: IdFactory = default_ids
    actor: str = field(default_factory=default_actor)
    # The store could only be opened for reading (a read-only file or directory): faces show
    # it and offer no writes; a write reaching the store anyway fails with a one-line error.
    read_only: bool = False
    # Where the store is, as people may see it (no password): for messages and banners.
    location: str = ""

    def as_actor(self, actor: str) -> ServiceContext:
        return replace(self, actor=actor)


def open_context(url: str | None = None, *, actor: str | None = None, create: bool = False) -> ServiceContext:
    """Open the store at `url` (default: WORKBENCH_DB, then the embedded store). Without
    `create`, a SQLite store must already exist; one this process cannot write opens
    read-only. Every failure is a StoreUnavailable with a one-line message."""
    try:
        opened = open_checked(url, create=create)
    except Exception as exc:
        raise store_failure(exc, display_url(resolve_url(url)), opening=True) from exc
    ctx = ServiceContext(engine=opened.engine, read_only=opened.read_only, location=opened.location)
    return ctx.as_actor(actor) if actor else ctx
