"""Points in time as operators type them: ISO 8601 (`2026-11-29T10:00:00Z`, `2026-11-29`; no
zone means UTC) or a duration ago (`2h`, `3d`, `P1D`: see durations). Pure: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from .durations import BadDuration, parse_duration

FORMS = "ISO 8601 (2026-11-29T10:00Z, 2026-11-29; UTC unless a zone is given) or a time ago (2h, 3d)"


class BadMoment(ValueError):
    """Not a time this module reads; the message says what is accepted."""


def parse_moment(text: str, now: datetime) -> datetime:
    """The UTC time `text` stands for; never later than `now` plus nothing (a future time is
    refused: nothing has happened then)."""
    cleaned = text.strip()
    shown = repr(cleaned[:40])
    if not cleaned:
        raise BadMoment(f"a time is required: use {FORMS}")
    try:
        moment = datetime.fromisoformat(cleaned.replace("z", "Z"))
    except ValueError:
        try:
            moment = now - parse_duration(cleaned)
        except BadDuration:
            raise BadMoment(f"{shown} is not a time: use {FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if moment > now:
        raise BadMoment(f"{shown} is in the future")
    return moment
