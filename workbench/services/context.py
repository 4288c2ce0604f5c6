"""What every use case needs: the store, the adapters, a clock, an ID factory, an actor."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from sqlalchemy import Engine

from adapters import AdapterRegistry, default_registry
from store.database import open_store
from workbench.domain.ids import IdFactory, default_ids


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_actor() -> str:
    try:
        return f"user:{getpass.getuser()}"
    except Exception:  # no login name (containers): still say who acted
        return "user:unknown"


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

    def as_actor(self, actor: str) -> ServiceContext:
        return replace(self, actor=actor)


def open_context(url: str | None = None, *, actor: str | None = None) -> ServiceContext:
    engine = open_store(url)
    ctx = ServiceContext(engine=engine)
    return ctx.as_actor(actor) if actor else ctx
