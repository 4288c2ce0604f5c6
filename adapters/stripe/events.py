"""Parsing Stripe event objects (`id`, `type`, `created`, `data.object`)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

import orjson

from workbench.domain.canonical import BoundaryProblem, ParsedEvent
from workbench.domain.taxonomy import Category

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
_UTC = UTC

def parse_event(body: bytes) -> ParsedEvent:
    try:
        payload = _loads(body)
    except _JSONDecodeError as exc:
        raise BoundaryProblem(Category.VALIDATION, "body_not_json", f"body is not JSON: {exc}") from None
    # orjson makes exact dicts, strs and ints, so `type(...) is` checks are isinstance checks.
    if type(payload) is not dict:
        raise BoundaryProblem(
            Category.CONTRACT_MISMATCH, "event_not_object", "event body is not a JSON object"
        )
    event_id = payload.get("id")
    event_type = payload.get("type")
    created = payload.get("created")
    if type(event_id) is not str or not event_id:
        raise BoundaryProblem(Category.CONTRACT_MISMATCH, "event_missing_id", "event has no string `id`")
    if type(event_type) is not str:
        raise BoundaryProblem(Category.CONTRACT_MISMATCH, "event_missing_type", "event has no string `type`")
    if type(created) is not int:  # a bool, a float, a string, a list, ... or missing
        raise BoundaryProblem(
            Category.CONTRACT_MISMATCH, "event_missing_created", "event has no integer `created`"
        )
    return ParsedEvent(event_id, event_type, _occurred_at(created), payload)


# `created` is whole seconds and neighbouring events share them: each second becomes a datetime
# once (errors are not cached; bounded, so memory stays constant on any stream).
@lru_cache(maxsize=65536)
def _occurred_at(created: int) -> datetime:
    try:
        occurred_at = datetime.fromtimestamp(created, tz=_UTC)
    except (OverflowError, OSError, ValueError):
        raise BoundaryProblem(
            Category.VALIDATION, "event_bad_created", f"`created` {created} is not a valid time"
        ) from None
    return occurred_at
