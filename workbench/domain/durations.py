"""Durations as operators type them: `90d`, `12h`, `30m`, `45s`, `2w`, or ISO 8601 (`P30D`,
`PT12H`). Pure: no I/O."""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import TypeAdapter, ValidationError

# Beyond this a date overflows or means "never" in disguise: leave the expiry out instead.
MAX_DURATION = timedelta(days=36_525)
FORMS = "a number and a unit (90d, 12h, 30m, 45s, 2w) or ISO 8601 (P30D, PT12H)"

_SHORT = re.compile(r"(\d{1,9})\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_ISO = TypeAdapter(timedelta)


class BadDuration(ValueError):
    """Not a duration this module reads; the message says what is accepted."""


def parse_duration(text: str) -> timedelta:
    """The timedelta `text` stands for; positive and at most MAX_DURATION."""
    cleaned = text.strip()
    shown = repr(cleaned[:40])
    short = _SHORT.fullmatch(cleaned.lower())
    if short:
        duration = timedelta(**{_UNITS[short.group(2)]: int(short.group(1))}) if int(short.group(1)) < 10**8 else None
    elif cleaned[:1] in ("P", "p"):  # only ISO 8601: pydantic would also read "30" as 30 seconds
        try:
            duration = _ISO.validate_python(cleaned.upper())
        except ValidationError:
            raise BadDuration(f"{shown} is not a duration: use {FORMS}") from None
    else:
        raise BadDuration(f"{shown} is not a duration: use {FORMS}")
    if duration is None or duration > MAX_DURATION:
        raise BadDuration(f"{shown} is too long: at most {MAX_DURATION.days} days")
    if duration <= timedelta(0):
        raise BadDuration(f"{shown} is not a positive duration")
    return duration
