"""Revealing one delivery's payload unredacted (the Payload screen's reveal key): the operator
role, and an audit entry `payload.reveal` naming the delivery (never the value) committed
before the body is handed back.

Headers come back as stored: credential headers were already replaced at ingest by what
ingest keeps of them, so there is nothing more to reveal there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from store.database import writing

from . import access, audit
from .context import ServiceContext
from .payload_crypto import NO_VAULTS, BodyReader, Vaults
from .timeline import read_delivery


@dataclass(frozen=True)
class RevealedPayload:
    delivery_id: str
    body: Any  # the parsed JSON, or the text (undecodable bytes replaced) when it is not JSON
    body_is_json: bool
    headers: Any


def reveal_payload(ctx: ServiceContext, delivery_id: str, vaults: Vaults = NO_VAULTS) -> RevealedPayload:
    """The unredacted body: an encrypted one needs its vault in `vaults`, a purged one is gone
    (PayloadLocked / BodyGone, and no audit entry: nothing was revealed)."""
    access.require(ctx, "reveal")
    with writing(ctx.engine) as conn:
        row = read_delivery(conn, delivery_id)
        body = BodyReader(vaults).plain(row)
        audit.append(conn, ctx, "payload.reveal", "delivery", row.id,
                     after={"connection_id": row.connection_id})
    try:
        return RevealedPayload(row.id, orjson.loads(body), True, row.headers)
    except orjson.JSONDecodeError:
        return RevealedPayload(row.id, body.decode("utf-8", errors="replace"), False, row.headers)
