"""Printing for the CLI: JSON for scripts, aligned columns for people.

A listing prints whole or not at all: JSON is spooled (in memory up to a few megabytes, then
to a temporary file) and copied to stdout only once complete, so a store error half-way
leaves no half array for a script to misread, and memory stays bounded."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from itertools import islice
from typing import IO, Any

import click
import orjson

SPOOL_IN_MEMORY = 8 << 20
COPY_CHUNK = 1 << 20


@contextmanager
def spooled_stdout() -> Iterator[IO[bytes]]:
    """A binary stream that reaches stdout only if the block completes."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        yield spool
        spool.seek(0)
        shutil.copyfileobj(spool, sys.stdout.buffer, COPY_CHUNK)
    sys.stdout.flush()


@contextmanager
def atomic_output(path: str | None) -> Iterator[IO[bytes]]:
    """A binary stream to `path` (stdout when None) that lands only if the block completes: a
    file is written beside its destination, synced, then renamed over it; on error it is removed."""
    if path is None:
        with spooled_stdout() as out:
            yield out
        return
    target = os.path.abspath(path)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".workbench-", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def json_array(items: Iterable[dict[str, Any]]) -> None:
    """A JSON array, one item per line, without holding the whole list in memory."""
    dumps = orjson.dumps
    with spooled_stdout() as out:
        out.write(b"[")
        empty = True
        # A thousand items per write: the spool's cost per write is more than orjson's per item.
        iterator = iter(items)
        while batch := list(islice(iterator, 1000)):
            out.write((b",\n" if not empty else b"\n") + b",\n".join([dumps(item) for item in batch]))
            empty = False
        out.write(b"]\n" if empty else b"\n]\n")


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
