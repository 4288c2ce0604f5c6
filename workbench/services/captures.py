"""Reading capture files: JSON lines of `{"received_at", "headers", "body"}`, streamed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
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
        for line_no, line in enumerate(self.stream, start=1):
            if not line.strip():
                continue
            capture = parse_capture_line(line, self.source)
            if isinstance(capture, str):
                self.bad_lines.append(BadLine(line_no, capture))
            else:
                yield capture


def parse_capture_line(line: bytes, source: str = "file") -> Capture | str:
    """A Capture, or the reason the line is not one."""
    try:
        obj: Any = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    if not isinstance(obj, dict):
        return "not a capture object"
    body = obj.get("body")
    headers = obj.get("headers", {})
    received = obj.get("received_at")
    if not isinstance(body, str):
        return "`body` must be a string"
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        return "`headers` must be an object of strings"
    if not isinstance(received, str):
        return "`received_at` must be an ISO-8601 string"
    try:
        received_at = datetime.fromisoformat(received)
    except ValueError:
        return f"`received_at` {received!r} is not ISO-8601"
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=timezone.utc)
    return Capture(received_at, headers, body.encode("utf-8", errors="surrogatepass"), source)
