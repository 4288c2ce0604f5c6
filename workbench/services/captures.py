"""Reading capture files: JSON lines of `{"received_at", "headers", "body"}`, streamed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import orjson


@dataclass(frozen=True, slots=True)
class Capture:
    """One delivery as received: the raw body and headers, untouched."""

    received_at: datetime
    headers: dict[str, str]
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


def parse_capture_line(line: bytes, source: str = "file") -> Capture | str:
    """A Capture, or the reason the line is not one."""
    try:
        obj: Any = _loads(line)
    except _JSONDecodeError as exc:
        return f"not JSON: {exc}"
    # orjson makes exact dicts and strs, so `type(...) is` checks are isinstance checks.
    if type(obj) is not dict:
        return "not a capture object"
    body = obj.get("body")
    headers = obj.get("headers", {})
    received = obj.get("received_at")
    if type(body) is not str:
        return "`body` must be a string"
    if type(headers) is not dict:
        return "`headers` must be an object of strings"
    for value in headers.values():
        if type(value) is not str:
            return "`headers` must be an object of strings"
    if type(received) is not str:
        return "`received_at` must be an ISO-8601 string"
    try:
        received_at = _fromisoformat(received)
    except ValueError:
        return f"`received_at` {received!r} is not ISO-8601"
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=_UTC)
    return Capture(received_at, headers, body.encode("utf-8", "surrogatepass"), source)
