"""Deciding what one mapped event does to our belief about its record. Pure.

Events are ordered by the provider's occurrence time; a tie goes to the event further along the
workflow, then to the event key, so the outcome never depends on arrival order. An event older
than the newest one applied is stale: evidence, but no transition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .canonical import Belief, MappedEvent
from .state_machine import can_transition
from .statuses import Status, rank
from .taxonomy import Category


@dataclass(frozen=True, slots=True)
class Apply:
    """Apply the event: status and/or fields change (or only the watermark advances)."""

    to_status: Status
    changed_fields: tuple[str, ...]
    reason: str
    opens: Category | None = None  # a failure to open alongside (unknown provider status)


@dataclass(frozen=True, slots=True)
class Stale:
    reason: str


@dataclass(frozen=True, slots=True)
class Reject:
    category: Category
    reason: str


Decision = Apply | Stale | Reject


def target_status(mapped: MappedEvent) -> Status:
    return mapped.status if mapped.status is not None else Status.NEEDS_REVIEW


def event_key(occurred_at: datetime, mapped: MappedEvent, event_key: str) -> tuple[datetime, int, str]:
    return (occurred_at, rank(target_status(mapped)), event_key)


def decide(current: Belief | None, mapped: MappedEvent, key: tuple[datetime, int, str]) -> Decision:
    target = target_status(mapped)
    opens = Category.CONTRACT_MISMATCH if mapped.status is None else None
    unknown = f"unknown provider status {mapped.provider_status!r}" if opens else ""

    if current is None:
        why = unknown or f"provider status {mapped.provider_status!r}"
        return Apply(target, tuple(sorted(mapped.fields)), f"new record: {why}", opens)

    if current.watermark is not None and key <= current.watermark:
        return Stale(
            f"occurred {key[0].isoformat()} is not newer than the last applied event "
            f"({current.watermark[0].isoformat()})"
        )

    changed = _changed_fields(current.fields, mapped.fields)
    if target == current.status:
        why = unknown or f"provider status {mapped.provider_status!r}"
        return Apply(target, changed, why if changed or opens else f"no change: {why}", opens)

    if not can_transition(current.status, target):
        return Reject(
            Category.BUSINESS_RULE_REJECTION,
            f"transition {current.status} -> {target} is not allowed "
            f"(provider status {mapped.provider_status!r})",
        )
    return Apply(target, changed, unknown or f"provider status {mapped.provider_status!r}", opens)


def _changed_fields(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, ...]:
    keys = set(before) | set(after)
    return tuple(sorted(k for k in keys if before.get(k) != after.get(k)))
