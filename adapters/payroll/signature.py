"""Standard Webhooks signatures (https://www.standardwebhooks.com): `webhook-id`,
`webhook-timestamp` (Unix seconds) and `webhook-signature` (space-separated `v1,<base64>`), each
an HMAC-SHA256 over "{id}.{timestamp}.{body}" keyed with the secret's bytes: a `whsec_` prefix
and base64 (a secret without the prefix is read as base64 too, as the reference libraries do)."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime

from adapters.protocol import SignatureCheck, WebhookSecret

SCHEME = "standard-webhooks"
PREFIX = "whsec_"


class BadSecret(ValueError):
    """A secret that is not `whsec_` + base64 (the message never quotes it)."""


def secret_key(secret: str) -> bytes:
    text = secret.removeprefix(PREFIX).rstrip("=")
    try:  # padding is optional, as the reference libraries read it
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BadSecret("the webhook secret is not whsec_ followed by base64") from None
    if not key:
        raise BadSecret("the webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for one message (one `v1,` entry)."""
    digest = hmac.digest(secret_key(secret), _signed_content(msg_id, timestamp, body), "sha256")
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, body)}


def _signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def verify_signature(headers: Mapping[str, str], body: bytes, secrets: Sequence[WebhookSecret],
                     now: datetime, tolerance_s: int = 300) -> SignatureCheck:
    if not secrets:
        return SignatureCheck("unchecked")
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    header = headers.get("webhook-signature")
    missing = [name for name, value in (("webhook-id", msg_id), ("webhook-timestamp", stamp),
                                        ("webhook-signature", header)) if not value]
    last = secrets[-1].name
    if missing or msg_id is None or stamp is None or header is None:
        return SignatureCheck("failed", last, f"missing header {', '.join(missing)}")
    try:
        timestamp = int(stamp)
    except ValueError:
        return SignatureCheck("failed", last, "webhook-timestamp is not a whole number of seconds")
    if abs(now.timestamp() - timestamp) > tolerance_s:
        return SignatureCheck("failed", last, f"timestamp outside the tolerance of {tolerance_s} s")
    offered = [entry[3:].encode() for entry in header.split(" ") if entry.startswith("v1,")]
    if not offered:
        return SignatureCheck("failed", last, "no v1 signature in webhook-signature")
    content = _signed_content(msg_id, timestamp, body)
    tried: str | None = None
    for secret in secrets:
        try:
            key = secret_key(secret.value)
        except BadSecret:
            continue  # one malformed secret must not hide a good one
        tried = secret.name
        expected = base64.b64encode(hmac.digest(key, content, "sha256"))
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return SignatureCheck("verified", secret.name)
    if tried is None:
        return SignatureCheck("failed", last, "no secret is whsec_ followed by base64")
    return SignatureCheck("failed", tried, "no active secret matched the signature")
