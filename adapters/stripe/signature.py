"""Stripe-Signature: `t=<unix seconds>,v1=<hex>[,v1=<hex>...]` (other schemes, such as `v0=`,
ignored), each v1 an HMAC-SHA256 of "{t}.{body}" under a webhook signing secret (whsec_...).
Stripe sends one v1 per active secret while a secret is being rolled, so any v1 matching any
of the connection's active secrets verifies the delivery."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime

from adapters.protocol import SignatureCheck, WebhookSecret

SCHEME = "stripe-v1"
HEADER = "stripe-signature"
_MAX_HEADER = 4096  # a real header is ~100 characters per v1; a longer one is not Stripe's


def _parse(header: str) -> tuple[int, list[str]] | str:
    """The timestamp and v1 signatures of a header, or why it is unusable."""
    if len(header) > _MAX_HEADER:
        return f"{HEADER} header is {len(header)} characters long (not Stripe's form)"
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return f"{HEADER} timestamp t={value[:20]!r} is not a number"
        elif key == "v1":
            signatures.append(value.strip())
    if timestamp is None:
        return f"{HEADER} header has no timestamp (t=)"
    if not signatures:
        return f"{HEADER} header has no v1 signature"
    return timestamp, signatures


def verify(headers: Mapping[str, str], body: bytes, secrets: Sequence[WebhookSecret], now: datetime,
           tolerance_s: int = 300) -> SignatureCheck:
    """The verdict on one delivery (see adapters.protocol.SignatureVerifying)."""
    if not secrets:
        return SignatureCheck("unchecked")
    last = secrets[-1].name
    header = headers.get(HEADER)
    if header is None:
        return SignatureCheck("failed", last, f"no {HEADER} header")
    parsed = _parse(header)
    if isinstance(parsed, str):
        return SignatureCheck("failed", last, parsed)
    timestamp, signatures = parsed
    age = now.timestamp() - timestamp
    if abs(age) > tolerance_s:
        return SignatureCheck("failed", last, f"timestamp is {int(abs(age))} s {'old' if age > 0 else 'in the future'}"
                                              f" (tolerance {tolerance_s} s): a replayed or delayed delivery")
    signed = b"%d." % timestamp + body
    wanted = [s.encode("ascii", "replace") for s in signatures]
    for secret in secrets:
        expected = hmac.digest(secret.value.encode(), signed, "sha256").hex().encode()  # one-shot: the C path
        # compare_digest on every candidate: no early exit reveals which prefix matched
        if any([hmac.compare_digest(expected, candidate) for candidate in wanted]):
            return SignatureCheck("verified", secret.name)
    names = ", ".join(secret.name for secret in secrets)
    return SignatureCheck("failed", last, f"no v1 signature matches the active secret(s) {names}")
