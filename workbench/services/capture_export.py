"""Writing a connection's stored deliveries back out as capture lines.

The exact form: `body` where the stored bytes are UTF-8 (the text form stores exactly those
bytes again), else `body_b64`; headers as stored (an object, or `[name, value]` pairs where
names repeat; credentials stay masked as stored). Ingesting the export stores the same bytes,
headers and receipt times; into the same connection, every line is `already_stored`. Copies made
by a retry are not exported: they repeat their original's capture.

Exports go through redaction like every display unless exact bytes are asked for
(`redacted=False`: the point of a capture file meant for re-ingest or replay elsewhere); either
way each export is an audited act, saying which it was.
"""

from __future__ import annotations

from base64 import b64encode
from datetime import datetime
from typing import IO, Any

import orjson
from sqlalchemy import select

from store.database import reading, writing
from store.models import Delivery
from workbench.domain.redaction import PathTree, redact, redact_headers, redact_text

from . import access, audit
from .connections import get_connection
from .context import ServiceContext
from .redaction_rules import provider_paths

deliveries = Delivery.__table__

PAGE = 1000


def redacted_body(body: bytes, paths: PathTree | None = None) -> bytes:
    """`body` with secrets masked: JSON by key, by the provider's field paths and by pattern,
    anything else by pattern (bytes that are not UTF-8 kept as they were around the masks)."""
    try:
        return orjson.dumps(redact(orjson.loads(body), paths))
    except orjson.JSONDecodeError:
        return redact_text(body.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


def capture_line(received_at: datetime, headers: Any, body: bytes, *, redacted: bool = False,
                 paths: PathTree | None = None) -> bytes:
    """One capture line (with its newline) in the exact form; `redacted` masks secrets first
    (`paths`: the provider's fields to mask whole)."""
    if redacted:
        headers, body = redact_headers(headers), redacted_body(body, paths)
    line: dict[str, Any] = {"received_at": received_at.isoformat(timespec="microseconds"), "headers": headers}
    try:
        line["body"] = body.decode("utf-8")  # strict: the text's UTF-8 is these bytes again
    except UnicodeDecodeError:
        line["body_b64"] = b64encode(body).decode("ascii")
    return orjson.dumps(line) + b"\n"


def export_captures(ctx: ServiceContext, connection_name: str, out: IO[bytes], *,
                    destination: str = "a stream", redacted: bool = False) -> int:
    """Write the connection's received deliveries as capture lines, in receipt order, and audit
    the export (`destination`: where they went, for the audit entry); returns how many.
    The exact bytes (not `redacted`) show what redaction hides: that is a reveal."""
    access.require(ctx, "read" if redacted else "reveal")
    connection = get_connection(ctx, connection_name)
    query = (select(deliveries.c.received_at, deliveries.c.headers, deliveries.c.body)
             .where(deliveries.c.connection_id == connection.id, deliveries.c.replay_of.is_(None))
             .order_by(deliveries.c.received_at, deliveries.c.id))
    paths = provider_paths(ctx, connection.provider) if redacted else None
    written = 0
    with reading(ctx.engine) as conn:
        for partition in conn.execution_options(yield_per=PAGE).execute(query).partitions():
            out.write(b"".join(capture_line(row.received_at, row.headers, row.body, redacted=redacted, paths=paths)
                               for row in partition))
            written += len(partition)
    with writing(ctx.engine) as conn:
        audit.append(conn, ctx, "captures.export", "connection", connection.id,
                     after={"deliveries": written, "destination": destination, "redacted": redacted})
    return written
