"""Redaction for everything displayed or exported: secrets never reach a screen or a file.

Keys that name secrets are masked whole; string values that look like credentials are masked
wherever they appear. Revealing a value is a separate, audited act.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

MASK = "[redacted]"

# In normal form (see _normal_key): lower case, words joined by underscores.
SENSITIVE_KEYS = frozenset({
    "authorization", "proxy_authorization", "cookie", "set_cookie", "x_api_key", "api_key",
    "apikey", "password", "passwd", "secret", "client_secret", "token", "access_token",
    "refresh_token", "id_token", "private_key", "signing_secret", "webhook_secret", "secret_key",
    "card_number", "cvc", "cvv", "iban", "account_number", "ssn",
})

# camelCase word boundaries: clientSecret -> client_Secret
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

# Credentials by shape: Stripe secret/restricted keys, webhook secrets, client secrets,
# bearer tokens, and long card-like digit runs.
SECRET_PATTERNS = re.compile(
    r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{8,}"
    r"|whsec_[A-Za-z0-9+/=]{8,}"
    r"|pi_[A-Za-z0-9]+_secret_[A-Za-z0-9]+"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|\b\d(?:[ -]?\d){12,18}\b"
)


def _normal_key(key: str) -> str:
    """Header, snake and camel spellings alike: X-Auth-Token, x_auth_token, xAuthToken."""
    return _CAMEL_BOUNDARY.sub("_", key).lower().replace("-", "_").replace(" ", "_")


@lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    normal = _normal_key(key)
    return normal in SENSITIVE_KEYS or normal.endswith(("_secret", "_token", "_password"))


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


def redact_headers(headers: Any) -> Any:
    """Stored headers, redacted: an object, or `[name, value]` pairs (where names repeat),
    whose values are masked by their header's name as an object's would be."""
    if isinstance(headers, list):
        return [[name, MASK if is_sensitive_key(name) and value else redact_text(value)] for name, value in headers]
    return redact(headers)
