"""The failure filter language, one parser for the Error queue screen's `/` filter and the
CLI's `--filter`: words separated by spaces, each either `key=value` or free text.

    category=provider_outage connection=acme since=2h until=2026-11-29T10:00 timeout

Keys: category, connection, fingerprint, state (a triage state or `unresolved`), since and
until (when the failure was recorded: see moments). A free word matches, case-insensitively,
as part of the category, connection name, fingerprint or message (what the Error queue
always did with its filter text); several words must all match. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .moments import BadMoment, parse_moment
from .taxonomy import Category, TriageState

KEYS = ("category", "connection", "fingerprint", "state", "since", "until")
UNRESOLVED = "unresolved"
STATES = (*(str(s) for s in TriageState), UNRESOLVED)
CATEGORIES = tuple(str(c) for c in Category)
MAX_WORDS = 20


class BadFilter(ValueError):
    """A filter this module cannot read; the message says which word and what is accepted."""


@dataclass(frozen=True)
class FailureFilter:
    category: str | None = None
    connection: str | None = None
    fingerprint: str | None = None
    state: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    words: tuple[str, ...] = ()  # free text, lower case

    def matches(self, category: str, connection: str | None, fingerprint: str, message: str) -> bool:
        """Whether a failure (or a group of failures sharing these) matches the key=value terms
        on category, connection and fingerprint and every free word (state and times are the
        store's to check)."""
        if self.category is not None and category != self.category:
            return False
        if self.connection is not None and connection != self.connection:
            return False
        if self.fingerprint is not None and fingerprint != self.fingerprint:
            return False
        parts = [part.lower() for part in (category, connection or "", fingerprint, message)]
        return all(any(word in part for part in parts) for word in self.words)

    def describe(self) -> str:
        """The filter written back in its own language (what audit entries and plans show)."""
        terms = [f"{key}={value.isoformat() if isinstance(value, datetime) else value}"
                 for key in KEYS if (value := getattr(self, key)) is not None]
        return " ".join([*terms, *self.words]) or "(everything)"

    def as_dict(self) -> dict[str, Any]:
        return {key: value.isoformat() if isinstance(value, datetime) else value
                for key in KEYS if (value := getattr(self, key)) is not None} | (
            {"words": list(self.words)} if self.words else {})


def parse_failure_filter(text: str, now: datetime) -> FailureFilter:
    """`text` as a FailureFilter; BadFilter (one line) for an unknown key, an unknown category
    or state, an unreadable time, or `since` after `until`."""
    values: dict[str, Any] = {}
    words: list[str] = []
    tokens = text.split()
    if len(tokens) > MAX_WORDS:
        raise BadFilter(f"a filter has at most {MAX_WORDS} words")
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep:
            words.append(token.lower())
            continue
        key = key.lower()
        if key not in KEYS:
            raise BadFilter(f"unknown filter key {key[:40]!r}; use {', '.join(KEYS)} (key=value) or free words")
        if key in values:
            raise BadFilter(f"{key} is given twice")
        if not value:
            raise BadFilter(f"{key}= needs a value")
        values[key] = _value(key, value, now)
    flt = FailureFilter(**values, words=tuple(words))
    if flt.since is not None and flt.until is not None and flt.since >= flt.until:
        raise BadFilter("since must be before until")
    return flt


def _value(key: str, value: str, now: datetime) -> Any:
    if key == "category" and value not in CATEGORIES:
        raise BadFilter(f"unknown category {value[:40]!r}; expected one of {', '.join(CATEGORIES)}")
    if key == "state" and value not in STATES:
        raise BadFilter(f"unknown state {value[:40]!r}; expected one of {', '.join(STATES)}")
    if key in ("since", "until"):
        try:
            return parse_moment(value, now)
        except BadMoment as exc:
            raise BadFilter(f"{key}: {exc}") from None
    return value
