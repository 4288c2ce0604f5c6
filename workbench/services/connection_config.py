"""Versioned configuration: show a connection and its history, compare two versions, export it
to TOML and import it back.

Everything handed to a face is redacted (history snapshots already are). An export holds
references only: settings never hold a secret's value, and redaction runs over it anyway. An
import is validated whole (ConnectionFile), planned (the field changes against the current
version), and then written as one new version, or a new connection at version 1.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import tomli_w
from pydantic import ValidationError

from adapters import UnknownProvider
from workbench.domain.connection_config import ConnectionFile, first_problem
from workbench.domain.field_changes import FieldChange, field_changes
from workbench.domain.redaction import redact

from . import access, connections
from .context import ServiceContext
from .errors import InvalidArgument, NotFound, ServiceError

MAX_IMPORT_BYTES = 1 << 20


@dataclass(frozen=True)
class VersionEntry:
    """One version of a connection: who made it, when, why, and what it changed."""

    version: int
    actor: str
    at: str
    reason: str | None
    snapshot: dict[str, Any]  # redacted
    changes: list[FieldChange]  # against the version before (everything, for version 1)

    def as_json(self) -> dict[str, Any]:
        return {"version": self.version, "actor": self.actor, "at": self.at, "reason": self.reason,
                "snapshot": self.snapshot, "changes": [change.as_json() for change in self.changes]}

    def summary(self) -> dict[str, Any]:
        return {"version": self.version, "actor": self.actor, "at": self.at, "reason": self.reason}


@dataclass(frozen=True)
class ConnectionView:
    info: connections.ConnectionInfo
    settings: dict[str, Any]  # redacted

    def as_json(self) -> dict[str, Any]:
        i = self.info
        return {"id": i.id, "name": i.name, "provider": i.provider, "environment": i.environment,
                "paused": i.paused, "version": i.version, "settings": self.settings}


@dataclass(frozen=True)
class VersionDiff:
    connection: str
    left: VersionEntry
    right: VersionEntry
    changes: list[FieldChange]

    def as_json(self) -> dict[str, Any]:
        return {"connection": self.connection, "from": self.left.summary(), "to": self.right.summary(),
                "changes": [change.as_json() for change in self.changes]}


def show(ctx: ServiceContext, name: str) -> ConnectionView:
    access.require(ctx, "read")
    info = connections.get_connection(ctx, name)
    return ConnectionView(info, redact(info.settings))


def history(ctx: ServiceContext, name: str) -> list[VersionEntry]:
    """Every version, oldest first, each with the fields it changed."""
    access.require(ctx, "read")
    entries = []
    previous: dict[str, Any] = {}
    for row in connections.history(ctx, name):
        snapshot = row["snapshot"]
        entries.append(VersionEntry(row["version"], row["actor"], row["at"], row["reason"], snapshot,
                                    field_changes(previous, snapshot)))
        previous = snapshot
    return entries


def diff_versions(ctx: ServiceContext, name: str, left: int, right: int) -> VersionDiff:
    entries = {entry.version: entry for entry in history(ctx, name)}
    for version in (left, right):
        if version not in entries:
            raise NotFound(f"connection {name!r} has no version {version}: it has versions 1 to {max(entries)}")
    a, b = entries[left], entries[right]
    return VersionDiff(name, a, b, field_changes(a.snapshot, b.snapshot))


# -- export and import ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    text: bytes
    masked: list[str]  # paths redaction masked: an import of this file would write the mask


def _without_nulls(value: Any) -> Any:
    # TOML has no null: an absent key reads back as the model's default (None).
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value if v is not None]
    return value


_REFERENCE_ORDER = ("name", "kind", "environment", "added_at", "expires_at", "retired_at")


def _readable(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings in the order people read them: a secret reference's name first (the store may
    hand keys back sorted)."""
    refs = settings.get("secrets")
    if not isinstance(refs, list):
        return settings
    ordered = [{**{k: ref[k] for k in _REFERENCE_ORDER if k in ref}, **ref} if isinstance(ref, dict) else ref
               for ref in refs]
    return {**settings, "secrets": ordered}


def export_toml(ctx: ServiceContext, name: str, now: datetime | None = None) -> Export:
    """The connection's configuration as TOML: name, provider, environment and settings (secret
    references, never values), for `connection import`."""
    access.require(ctx, "read")
    info = connections.get_connection(ctx, name)
    document = {"name": info.name, "provider": info.provider, "environment": info.environment,
                "settings": _readable(info.settings)}
    shown = redact(document)
    masked = [change.dotted for change in field_changes(document, shown)]
    when = (now or ctx.clock()).isoformat(timespec="seconds")
    header = (f"# connection {info.name}, version {info.version}, exported {when}.\n"
              "# Secrets appear as vault references only. `workbench connection import FILE` applies it.\n\n")
    try:
        body = tomli_w.dumps(_without_nulls(shown))
    except TypeError as exc:  # a settings value TOML cannot hold
        raise ServiceError(f"connection {name!r} cannot be written as TOML: {exc}") from None
    return Export(header.encode() + body.encode(), masked)


def read_import(data: bytes, source: str) -> ConnectionFile:
    """Parse and validate a configuration file; every refusal names the line or the field."""
    if len(data) > MAX_IMPORT_BYTES:
        raise InvalidArgument(f"{source} is over {MAX_IMPORT_BYTES >> 20} MiB: not a connection's configuration")
    try:
        parsed = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidArgument(f"{source} is not UTF-8 text, so not TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"{source} is not valid TOML: {exc}") from None
    try:
        return ConnectionFile.model_validate(parsed)
    except ValidationError as exc:
        raise InvalidArgument(f"{source}: {first_problem(exc)}") from None


@dataclass(frozen=True)
class ImportPlan:
    file: ConnectionFile
    settings: dict[str, Any]  # what will be stored
    current: connections.ConnectionInfo | None  # None: the import creates the connection
    changes: list[FieldChange]  # redacted, for display

    @property
    def unchanged(self) -> bool:
        return self.current is not None and self.current.settings == self.settings

    def as_json(self) -> dict[str, Any]:
        return {"connection": self.file.name, "creates": self.current is None,
                "version": self.current.version if self.current else None,
                "changes": [change.as_json() for change in self.changes]}


def plan_import(ctx: ServiceContext, file: ConnectionFile, source: str = "the file") -> ImportPlan:
    """What importing `file` would change; refuses a file that would move a connection to
    another provider or environment (its records and vault would no longer match)."""
    access.require(ctx, "config")
    settings = file.settings.as_settings()
    for index, ref in enumerate(file.settings.secrets):
        if ref.environment != file.environment:
            raise InvalidArgument(f"{source}: settings.secrets.{index}.environment: {ref.name!r} is in the {ref.environment} "
                                  f"vault but the connection is {file.environment}")
    try:
        current: connections.ConnectionInfo | None = connections.get_connection(ctx, file.name)
    except NotFound:
        current = None
    if current is None:
        try:
            ctx.adapters.get(file.provider)
        except UnknownProvider as exc:
            raise InvalidArgument(f"{source}: provider: {exc}") from None
        before: dict[str, Any] = {}
    else:
        for field in ("provider", "environment"):
            if getattr(file, field) != getattr(current, field):
                raise InvalidArgument(f"{source}: {field}: the file says {getattr(file, field)!r} but connection {file.name!r} "
                                      f"is {getattr(current, field)!r}; a connection keeps its {field} "
                                      "(import under another name to make a new one)")
        before = {"name": current.name, "provider": current.provider, "environment": current.environment,
                  "settings": current.settings}
    after = {"name": file.name, "provider": file.provider, "environment": file.environment, "settings": settings}
    return ImportPlan(file, settings, current, field_changes(redact(before), redact(after)))


def apply_import(ctx: ServiceContext, plan: ImportPlan, reason: str | None = None) -> connections.ConnectionInfo:
    """Write the plan: one new version (audited as connection.import), or the new connection.
    Refused if the connection changed since the plan was made (the diff shown is then stale)."""
    access.require(ctx, "config")
    file = plan.file
    if plan.current is None:
        return connections.add_connection(ctx, file.name, file.provider, file.environment,
                                          reason or "imported", settings=plan.settings)
    base = plan.current

    def imported(settings: dict[str, Any]) -> dict[str, Any]:
        if settings != base.settings:
            raise ServiceError(f"connection {file.name!r} changed since the diff was shown; nothing was imported: "
                               "run the import again to see the new diff")
        return dict(plan.settings)

    return connections.update_settings(ctx, file.name, imported, "connection.import", reason)
