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
from .statuses import WORKFLOW_RANK, Status
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


_NEEDS_REVIEW = Status.NEEDS_REVIEW
_CONTRACT_MISMATCH = Category.CONTRACT_MISMATCH
_RANK = WORKFLOW_RANK


def target_status(mapped: MappedEvent) -> Status:
    return mapped.status if mapped.status is not None else _NEEDS_REVIEW


def event_key(occurred_at: datetime, mapped: MappedEvent, event_key: str) -> tuple[datetime, int, str]:
    status = mapped.status
    return (occurred_at, _RANK[status if status is not None else _NEEDS_REVIEW], event_key)


def decide(current: Belief | None, mapped: MappedEvent, key: tuple[datetime, int, str]) -> Decision:
    status = mapped.status
    if status is None:
        target, opens = _NEEDS_REVIEW, _CONTRACT_MISMATCH
        unknown = f"unknown provider status {mapped.provider_status!r}"
    else:
        target, opens, unknown = status, None, ""

    if current is None:
        why = unknown or _provider_status(mapped.provider_status)
        return Apply(target, _sorted_keys(mapped.fields), f"new record: {why}", opens)

    watermark = current.watermark
    if watermark is not None and key <= watermark:
        return Stale(
            f"occurred {key[0].isoformat()} is not newer than the last applied event "
            f"({watermark[0].isoformat()})"
        )

    changed = _changed_fields(current.fields, mapped.fields)
    if target == current.status:
        why = unknown or _provider_status(mapped.provider_status)
        return Apply(target, changed, why if changed or opens else f"no change: {why}", opens)

    if not can_transition(current.status, target):
        return Reject(
            Category.BUSINESS_RULE_REJECTION,
            f"transition {current.status} -> {target} is not allowed "
            f"(provider status {mapped.provider_status!r})",
        )
    return Apply(target, changed, unknown or _provider_status(mapped.provider_status), opens)


# The few distinct texts and key sets a provider sends, computed once each (bounded caches:
# cleared when they grow, so hostile input cannot make them grow without limit).
_CACHE_LIMIT = 1024
_reasons: dict[str, str] = {}
_key_sets: dict[tuple[str, ...], tuple[str, ...]] = {}


def _provider_status(provider_status: str) -> str:
    reason = _reasons.get(provider_status)
    if reason is None:
        if len(_reasons) >= _CACHE_LIMIT:
            _reasons.clear()
        reason = _reasons[provider_status] = f"provider status {provider_status!r}"
    return reason


def _sorted_keys(fields: dict[str, Any]) -> tuple[str, ...]:
    keys = tuple(fields)
    found = _key_sets.get(keys)
    if found is None:
        if len(_key_sets) >= _CACHE_LIMIT:
            _key_sets.clear()
        found = _key_sets[keys] = tuple(sorted(keys))
    return found


def _changed_fields(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, ...]:
    if before.keys() == after.keys():  # the usual case: the same fields, maybe new values
        changed = [k for k, v in after.items() if before[k] != v]
        if len(changed) > 1:
            changed.sort()
        return tuple(changed)
    keys = set(before) | set(after)
    return tuple(sorted(k for k in keys if before.get(k) != after.get(k)))
