"""Redaction for everything displayed or exported: secrets never reach a screen or a file.

Keys that name secrets are masked whole; string values that look like credentials are masked
wherever they appear. Revealing a value is a separate, audited act.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

MASK = "[redacted]"

SENSITIVE_KEYS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api_key",
    "apikey", "password", "passwd", "secret", "client_secret", "token", "access_token",
    "refresh_token", "id_token", "private_key", "signing_secret", "webhook_secret",
    "card_number", "cvc", "cvv", "iban", "account_number", "ssn",
})

# Credentials by shape: Stripe secret/restricted keys, webhook secrets, client secrets,
# bearer tokens, and long card-like digit runs.
SECRET_PATTERNS = re.compile(
    r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{8,}"
    r"|whsec_[A-Za-z0-9+/=]{8,}"
    r"|pi_[A-Za-z0-9]+_secret_[A-Za-z0-9]+"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|\b(?:\d[ -]?){13,19}\b"
)


@lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    lowered = key.lower()
    return lowered in SENSITIVE_KEYS or lowered.endswith(("_secret", "_token", "_password"))


def redact_text(text: str) -> str:
    return SECRET_PATTERNS.sub(MASK, text)


def redact(value: Any) -> Any:
    """A redacted deep copy of a JSON-like value."""
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and is_sensitive_key(k) and v not in (None, "") else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
