"""Parsing payroll events: `{"type", "occurred_at" (ISO 8601), "run": {...}}`, with no event ID.

Without an ID, the core identifies an event by the hash of its body (provider_event_id None):
a redelivered event is byte-for-byte the same, so it is recognised as a duplicate.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

import orjson

from workbench.domain.canonical import BoundaryProblem, ParsedEvent
from workbench.domain.taxonomy import Category

_loads = orjson.loads


def parse_event(body: bytes) -> ParsedEvent:
    try:
        payload = _loads(body)
    except orjson.JSONDecodeError as exc:
        raise BoundaryProblem(Category.VALIDATION, "body_not_json", f"body is not JSON: {exc}") from None
    if type(payload) is not dict:
        raise BoundaryProblem(Category.CONTRACT_MISMATCH, "event_not_object", "event body is not a JSON object")
    event_type = payload.get("type")
    occurred = payload.get("occurred_at")
    if type(event_type) is not str or not event_type:
        raise BoundaryProblem(Category.CONTRACT_MISMATCH, "event_missing_type", "event has no string `type`")
    if type(occurred) is not str:
        raise BoundaryProblem(Category.CONTRACT_MISMATCH, "event_missing_occurred_at",
                              "event has no string `occurred_at`")
    return ParsedEvent(None, event_type, _occurred_at(occurred), payload)


@lru_cache(maxsize=65536)
def _occurred_at(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BoundaryProblem(Category.VALIDATION, "event_bad_occurred_at",
                              f"`occurred_at` {text[:64]!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:  # a time without a zone would be read in whatever zone we run in
        raise BoundaryProblem(Category.VALIDATION, "event_bad_occurred_at", "`occurred_at` has no time zone")
    return when
