"""Canonical shapes: what adapters map provider payloads into, and what the workflow reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .statuses import Status
from .taxonomy import Category


class Verdict(StrEnum):
    """What ingest concluded about one delivery."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    INVALID = "invalid"
    IGNORED = "ignored"
    REJECTED = "rejected"
    FAILED = "failed"
    HELD = "held"  # stored while its connection was paused; applied on resume


class Source(StrEnum):
    WEBHOOK = "webhook"
    POLL = "poll"
    RECONCILE = "reconcile"
    REPLAY = "replay"
    FILE = "file"


class Cause(StrEnum):
    EVENT = "event"
    COMMAND = "command"
    RECONCILIATION = "reconciliation"
    OPERATOR = "operator"
    REPLAY = "replay"


class PaymentFields(BaseModel):
    """Canonical fields of a payment record, provider-neutral."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: int = Field(ge=0, description="minor units")
    currency: str = Field(pattern=r"^[a-z]{3}$")
    customer: str | None = None
    description: str | None = None
    provider_status: str
    failure_code: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """A provider event after parsing, before mapping."""

    provider_event_id: str | None
    event_type: str | None
    occurred_at: datetime | None
    payload: Any


@dataclass(frozen=True, slots=True)
class MappedEvent:
    """What the mapping made of one event: which record, which internal status."""

    kind: str
    external_id: str
    provider_status: str
    status: Status | None  # None: a provider status the mapping does not know
    fields: dict[str, Any]
    mapping_version: str


@dataclass(frozen=True, slots=True)
class NotCovered:
    """The event is about something this mapping does not cover (stored, verdict ignored)."""

    reason: str


class BoundaryProblem(Exception):
    """Raised by an adapter when a payload cannot be parsed or mapped; carries its category."""

    def __init__(self, category: Category, code: str, message: str) -> None:
        super().__init__(message)
        self.category = category
        self.code = code
        self.message = message


@dataclass(slots=True)
class Belief:
    """What we believe about one record now, plus the ordering watermark of the newest event
    that shaped it."""

    status: Status
    fields: dict[str, Any] = field(default_factory=dict)
    watermark: tuple[datetime, int, str] | None = None
