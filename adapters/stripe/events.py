"""Parsing Stripe event objects (`id`, `type`, `created`, `data.object`)."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson

from workbench.domain.canonical import BoundaryProblem, ParsedEvent
from workbench.domain.taxonomy import Category


def parse_event(body: bytes) -> ParsedEvent:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BoundaryProblem(Category.VALIDATION, "body_not_json", f"body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BoundaryProblem(
            Category.CONTRACT_MISMATCH, "event_not_object", "event body is not a JSON object"
        )
    event_id = payload.get("id")
    event_type = payload.get("type")
    created = payload.get("created")
    if not isinstance(event_id, str) or not event_id:
        raise BoundaryProblem(Category.CONTRACT_MISMATCH, "event_missing_id", "event has no string `id`")
    if not isinstance(event_type, str):
        raise BoundaryProblem(Category.CONTRACT_MISMATCH, "event_missing_type", "event has no string `type`")
    if isinstance(created, bool) or not isinstance(created, int):
        raise BoundaryProblem(
            Category.CONTRACT_MISMATCH, "event_missing_created", "event has no integer `created`"
        )
    try:
        occurred_at = datetime.fromtimestamp(created, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise BoundaryProblem(
            Category.VALIDATION, "event_bad_created", f"`created` {created} is not a valid time"
        ) from None
    return ParsedEvent(event_id, event_type, occurred_at, payload)
