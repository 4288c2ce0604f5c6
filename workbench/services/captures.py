"""Reading capture files: JSON lines of `{"received_at", "headers", "body" | "body_b64"}`, streamed.

A capture line (see README, "capture line"):

* `received_at`: ISO-8601 with a time zone (`Z` or an offset), within years 1..9999 in UTC;
* `headers`: an object of strings, or a list of `[name, value]` pairs (the form that keeps
  repeated headers and their order);
* `body`: the body as text (stored as its UTF-8 bytes), or `body_b64`: the exact body bytes in
  base64 (for bodies that are not UTF-8). One of the two, never both.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from workbench.domain.redaction import redact_text

# Headers as received: an object when every name is distinct, else `[name, value]` pairs in
# the order received (an object would keep only the last of a repeated header).
Headers = dict[str, str] | list[list[str]]


@dataclass(frozen=True, slots=True)
class Capture:
    """One delivery as received: the raw body and headers, untouched."""

    received_at: datetime  # aware, UTC
    headers: Headers
    body: bytes
    source: str = "file"


@dataclass(frozen=True, slots=True)
class BadLine:
    line_no: int
    reason: str


@dataclass
class CaptureReader:
    """Iterates captures from a byte stream; lines that are not capture objects are collected
    in `bad_lines` (with their line numbers) and skipped."""

    stream: IO[bytes]
    source: str = "file"
    bad_lines: list[BadLine] = field(default_factory=list)

    def __iter__(self) -> Iterator[Capture]:
        source, bad_lines, parse = self.source, self.bad_lines, parse_capture_line
        for line_no, line in enumerate(self.stream, start=1):
            if not line or line.isspace():
                continue
            capture = parse(line, source)
            if isinstance(capture, str):
                bad_lines.append(BadLine(line_no, capture))
            else:
                yield capture


_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
_fromisoformat = datetime.fromisoformat
_UTC = UTC
_HEADERS_SHAPE = "`headers` must be an object of strings or a list of [name, value] string pairs"


def parse_capture_line(line: bytes, source: str = "file") -> Capture | str:
    """A Capture, or the reason the line is not one."""
    try:
        obj: Any = _loads(line)
    except _JSONDecodeError as exc:
        return f"not JSON: {exc}"
    # orjson makes exact dicts, lists and strs, so `type(...) is` checks are isinstance checks.
    if type(obj) is not dict:
        return "not a capture object"
    text = obj.get("body")
    if type(text) is str and obj.get("body_b64") is None:  # the text form: "the UTF-8 of this string"
        body = text.encode("utf-8", "surrogatepass")
    else:
        exact = _exact_body(obj)
        if isinstance(exact, str):
            return exact
        body = exact
    headers = obj.get("headers", {})
    if type(headers) is dict:
        for value in headers.values():
            if type(value) is not str:
                return _HEADERS_SHAPE
    else:
        headers = _header_pairs(headers)
        if headers is None:
            return _HEADERS_SHAPE
    received = obj.get("received_at")
    if type(received) is not str:
        return "`received_at` must be an ISO-8601 string"
    try:
        received_at = _fromisoformat(received)
    except ValueError:
        return _bad_time(received, "is not ISO-8601")
    if received_at.tzinfo is not _UTC:
        in_utc = _in_utc(received_at, received)
        if isinstance(in_utc, str):
            return in_utc
        received_at = in_utc
    return Capture(received_at, headers, body, source)


def _exact_body(obj: dict[str, Any]) -> bytes | str:
    """The body bytes of a line without a text `body`, or the reason there are none."""
    encoded = obj.get("body_b64")
    if encoded is None:
        return "`body` must be a string (or give the exact bytes as `body_b64`)"
    if obj.get("body") is not None:
        return "give `body` or `body_b64`, not both"
    if type(encoded) is not str:
        return "`body_b64` must be a base64 string"
    try:
        return b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return "`body_b64` is not valid base64"


def _header_pairs(headers: Any) -> Headers | None:
    """Pairs as given when a name repeats, else the same headers as an object; None when the
    value is neither shape."""
    if type(headers) is not list:
        return None
    for pair in headers:
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str or type(pair[1]) is not str:
            return None
    if len({name for name, _ in headers}) == len(headers):
        return dict(headers)  # no repeats: one stored form for the same headers, however given
    return headers


def _in_utc(received_at: datetime, received: str) -> datetime | str:
    """An aware time in UTC, or the reason it cannot be one."""
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        return _bad_time(received, "has no time zone (add `Z` or an offset such as `+00:00`)")
    try:
        return received_at.astimezone(_UTC)
    except OverflowError:  # the store holds UTC times of years 1..9999 (SQLite and PostgreSQL alike)
        return _bad_time(received, "is outside years 1..9999 in UTC")


def _bad_time(received: str, why: str) -> str:
    # Echoed in the bad-line message: short, and never a credential someone pasted there.
    shown = redact_text(received if len(received) <= 40 else received[:40] + "...")
    return f"`received_at` {shown!r} {why}"
