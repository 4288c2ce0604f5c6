"""Printing for the CLI: JSON for scripts (streamed), aligned columns for people."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any

import click
import orjson


def json_array(items: Iterable[dict[str, Any]]) -> None:
    """Stream a JSON array without holding the whole list in memory."""
    out = sys.stdout.buffer
    out.write(b"[")
    first = True
    for item in items:
        out.write(b"\n" if first else b",\n")
        out.write(orjson.dumps(item))
        first = False
    out.write(b"\n]\n" if not first else b"]\n")
    out.flush()


def json_value(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str], widths: Sequence[int] | None = None) -> None:
    materialised = [["" if v is None else str(v) for v in row] for row in rows]
    if widths is None:
        widths = [max([len(h)] + [len(r[i]) for r in materialised]) for i, h in enumerate(headers)]
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths))
    click.echo(line.rstrip())
    for row in materialised:
        click.echo("  ".join(_clip(v, w).ljust(w) for v, w in zip(row, widths)).rstrip())


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def progress_line(message: str) -> None:
    """Progress on stderr, only when a person is watching."""
    if sys.stderr.isatty():
        sys.stderr.write("\r" + message)
        sys.stderr.flush()


def end_progress() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\n")
