"""Writing a connection's stored deliveries back out as capture lines.

The exact form: `body` where the stored bytes are UTF-8 (the text form stores exactly those
bytes again), else `body_b64`; headers as stored (an object, or `[name, value]` pairs where
names repeat; credentials stay masked as stored). Ingesting the export stores the same bytes,
headers and receipt times; into the same connection, every line is `already_stored`. Copies made
by a retry are not exported: they repeat their original's capture.

Exports go through redaction like every display unless exact bytes are asked for
(`redacted=False`: the point of a capture file meant for re-ingest or replay elsewhere); either
way each export is an audited act, saying which it was.

Bodies encrypted at rest are exported as the plain bytes they were received as (the vault must
be unlocked; checked before anything is written). Bodies purged by retention are left out:
there is nothing to re-ingest; the audit entry counts them.
"""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any

import orjson
from sqlalchemy import select

from store.database import reading, writing
from store.models import Connection as ConnectionRow, Delivery
from workbench.domain.redaction import PathTree, redact, redact_headers, redact_text

from . import access, audit
from .connections import get_connection
from .context import ServiceContext
from .payload_crypto import NO_VAULTS, BodyReader, PayloadLocked, Vaults, locked_message
from .redaction_rules import provider_paths

deliveries = Delivery.__table__
connections = ConnectionRow.__table__

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
                    destination: str = "a stream", redacted: bool = False, vaults: Vaults = NO_VAULTS,
                    purged: Callable[[int], None] | None = None) -> int:
    """Write the connection's received deliveries as capture lines, in receipt order, and audit
    the export (`destination`: where they went, for the audit entry); returns how many.
    The exact bytes (not `redacted`) show what redaction hides: that is a reveal.
    Encrypted bodies need the connection's vault in `vaults` (PayloadLocked, nothing written);
    purged ones are left out, and `purged` is told how many."""
    access.require(ctx, "read" if redacted else "reveal")
    connection = get_connection(ctx, connection_name)
    query = (select(deliveries.c.id, deliveries.c.connection_id, deliveries.c.received_at, deliveries.c.headers,
                    deliveries.c.body, deliveries.c.body_key_version, deliveries.c.body_purged_at,
                    connections.c.environment)
             .join(connections, connections.c.id == deliveries.c.connection_id)
             .where(deliveries.c.connection_id == connection.id, deliveries.c.replay_of.is_(None))
             .order_by(deliveries.c.received_at, deliveries.c.id))
    paths = provider_paths(ctx, connection.provider) if redacted else None
    reader = BodyReader(vaults)
    written = left_out = 0
    with reading(ctx.engine) as conn:
        if conn.execute(select(deliveries.c.id).where(deliveries.c.connection_id == connection.id,
                                                      deliveries.c.body_key_version.is_not(None)).limit(1)).first() \
                and vaults.get(connection.environment) is None:
            raise PayloadLocked(f"{connection.name}'s bodies are encrypted: "
                                f"{locked_message(connection.environment).split(': ', 1)[1]}; nothing was exported")
        for partition in conn.execution_options(yield_per=PAGE).execute(query).partitions():
            lines = []
            for row in partition:
                body = reader.body(row)
                if body.data is None:
                    left_out += 1
                    continue
                lines.append(capture_line(row.received_at, row.headers, body.data, redacted=redacted, paths=paths))
            out.write(b"".join(lines))
            written += len(lines)
    with writing(ctx.engine) as conn:
        after: dict[str, Any] = {"deliveries": written, "destination": destination, "redacted": redacted}
        if left_out:
            after["purged_left_out"] = left_out
        audit.append(conn, ctx, "captures.export", "connection", connection.id, after=after)
    if purged is not None and left_out:
        purged(left_out)
    return written
