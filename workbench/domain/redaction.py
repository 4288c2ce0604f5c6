"""Redaction for everything displayed or exported: secrets never reach a screen or a file.

Three layers, all applied by `redact`:
- keys that name secrets (`is_sensitive_key`, by pattern, not exact name) are masked whole;
- a provider's own field paths (declared by its adapter, compiled with `compile_paths`) are
  masked whole, e.g. `data.object.billing_details.email`;
- string values anywhere are scanned by the detectors (`redact_text`): provider keys, JWTs,
  bearer and basic credentials, `name=value` / `Name: value` credentials in text, e-mail
  addresses and card numbers (13 to 19 digits passing Luhn, so order IDs stay readable).

Publishable keys (`pk_live_`, `pk_test_`) are public by design (they sit in web pages), so they
are shown. Numbers stored as JSON numbers are not scanned: cards arrive as strings.
Revealing a value is a separate, audited act.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import orjson

MASK = "[redacted]"

# In normal form (see _normal_key): lower case, words joined by underscores.
SENSITIVE_KEYS = frozenset({
    "authorization", "proxy_authorization", "cookie", "set_cookie", "x_api_key", "api_key",
    "apikey", "password", "passwd", "secret", "client_secret", "token", "access_token",
    "refresh_token", "id_token", "private_key", "signing_secret", "webhook_secret", "secret_key",
    "card_number", "cvc", "cvv", "iban", "account_number", "ssn",
})
# Any of these words anywhere in a key names a credential: X-Auth, X-Authorization,
# Authentication, X-Auth-Token, Proxy-Authorization, session_cookie, db_password, ...
_SENSITIVE_WORDS = frozenset({
    "auth", "authorization", "authentication", "authn", "cookie", "cookies", "password", "passwd",
    "passphrase", "secret", "token", "apikey", "credential", "credentials",
})
# `<word>_key` names a credential for these words (api_key, Api-Key, x-access-key); other keys
# (idempotency_key, publishable_key) are identifiers.
_KEY_QUALIFIERS = frozenset({"api", "private", "secret", "access", "signing", "encryption", "master",
                             "session", "auth"})

# camelCase word boundaries: clientSecret -> client_Secret
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")

# Every detector in one pattern, so a value is scanned once; the callback decides the close
# calls (Luhn, plain words after "basic"/"bearer", names that are not credentials).
_DETECTORS = re.compile(
    # provider keys: Stripe secret/restricted/ephemeral keys, webhook secrets, client secrets;
    # GitHub, Slack and AWS access keys
    r"(?P<key>(?:sk|rk|ek)_(?:live|test)_[A-Za-z0-9]{8,}"
    r"|whsec_[A-Za-z0-9+/=]{8,}"
    r"|(?:pi|seti|src)_[A-Za-z0-9]++_secret_[A-Za-z0-9]+"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"
    r"|\bAKIA[0-9A-Z]{16}\b)"
    # JWTs: base64url header (`{"` is `eyJ`), payload, signature (empty for alg "none")
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)"
    # credentials by scheme, in any text
    r"|(?P<scheme>\b(?i:bearer|basic|token|digest)\s+)(?P<cred>[A-Za-z0-9._~+/=-]{8,})"
    # `name: value` and `name=value` (header lines, form and query strings, broken JSON): the
    # callback masks the value when the name names a credential. A value stops at the next `:`
    # or `=`, so the callback's second look at it is shallow (never a chain of pairs).
    r"|(?P<name>(?<![A-Za-z0-9_.-])[A-Za-z][A-Za-z0-9_.-]{0,40}+ ?)(?P<sep>\"?\s*[:=]\s*\"?)"
    r"(?P<value>(?:(?i:bearer|basic|token|digest)\s+)?[^\s\"&,;:=]+)"
    # e-mail addresses (starting only where a run of address characters starts: linear time)
    r"|(?P<email>(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]++@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"
    # card numbers: 13 to 19 digits, single spaces or dashes between them
    r"|(?P<card>\b\d(?:[ -]?\d){12,18}\b)"
)


def _normal_key(key: str) -> str:
    """Header, snake and camel spellings alike: X-Auth-Token, x_auth_token, xAuthToken,
    `authorization ` (a trailing space)."""
    return _NON_WORD.sub("_", _CAMEL_BOUNDARY.sub("_", key).lower()).strip("_")


@lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    """Whether a key (JSON field, header or form name) names a credential or card data."""
    normal = _normal_key(key)
    if normal in SENSITIVE_KEYS:
        return True
    words = normal.split("_")
    if not _SENSITIVE_WORDS.isdisjoint(words):
        return True
    return len(words) > 1 and words[-1] == "key" and words[-2] in _KEY_QUALIFIERS


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _plain_word(token: str) -> bool:
    """`Basic settings`, `Token Expired`: a word, not a credential."""
    return token.isalpha() and token[1:].islower()


_DIGIT_GROUP = re.compile(r"\d+")


def _mask_card(text: str) -> str:
    """A run of 13 to 19 digits, masked if it passes Luhn. A grouped run that fails may be a
    card with a stray group before or after it ("4242 4242 4242 4242 12/34"): its windows of
    whole groups are tried too (only for runs of 2 to 8 groups: cards are grouped so; a run
    of single digits is not a card, and would cost too much)."""
    if luhn_valid(text.replace(" ", "").replace("-", "")):
        return MASK
    groups = [(m.start(), m.end()) for m in _DIGIT_GROUP.finditer(text)]
    if not 2 <= len(groups) <= 8:
        return text
    for first in range(len(groups)):
        for last in range(len(groups) - 1, first, -1):
            start, end = groups[first][0], groups[last][1]
            digits = text[start:end].replace(" ", "").replace("-", "")
            if 13 <= len(digits) <= 19 and luhn_valid(digits):
                return text[:start] + MASK + text[end:]
    return text


def _substitute(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind == "card":
        return _mask_card(match.group())
    if kind == "cred":
        return match.group() if _plain_word(match.group("cred")) else match.group("scheme") + MASK
    if kind == "value":
        name, value = match.group("name"), match.group("value")
        shown = _DETECTORS.sub(_substitute, name)  # a name may itself hold a secret
        if is_sensitive_key(name):
            return f"{shown}{match.group('sep')}{MASK}"
        # Not a credential's name: its value may still hold one.
        return f"{shown}{match.group('sep')}{_DETECTORS.sub(_substitute, value)}"
    return MASK


# Most strings shown (event types, IDs, statuses, reasons, descriptions) hold nothing any
# detector finds, and the one-pass scan costs about a microsecond per ten characters: a string
# is scanned only when it holds something a match needs. Each detector's words are looked for
# only when a character the detector needs with them is there (plain `in` tests: the cheapest).
# Provider keys, AWS keys and long digit runs (identifiers hold nothing else a detector finds).
_KEY_HINT = re.compile(r"_(?:live|test|secret)_|whsec_|gh[pousr]_|AKIA|\d{13}").search
# In a credential's name (see is_sensitive_key), for `name: value` and `name=value`.
_NAME_HINT = re.compile(r"auth|cookie|pass|secret|key|token|credential|card|cvc|cvv|iban|account|ssn").search
_DIGIT_RUN = re.compile(r"\d[\d -]{12}").search
_IDENTIFIER = re.compile(r"[A-Za-z0-9_]*").fullmatch


def _could_hold_secret(text: str) -> bool:
    if _IDENTIFIER(text):
        return _KEY_HINT(text) is not None
    if "@" in text or "AKIA" in text or ("_" in text and _KEY_HINT(text)):
        return True
    lower = text.lower()
    if ("eyj" in lower and "." in text) or ("xox" in lower and "-" in text):
        return True
    if (":" in text or "=" in text) and _NAME_HINT(lower):
        return True
    if ("bearer" in lower or "basic" in lower or "token" in lower or "digest" in lower) and (
            " " in text or "\t" in text or "\n" in text):
        return True
    return _DIGIT_RUN(text) is not None


def redact_text(text: str) -> str:
    return _DETECTORS.sub(_substitute, text) if _could_hold_secret(text) else text


# For labels that repeat on thousands of rows (event types, verdict and transition reasons,
# failure messages): `redact_text`, remembered. Unique strings (IDs) go to `redact_text`.
redact_label = lru_cache(maxsize=8192)(redact_text)


@lru_cache(maxsize=4096)
def _key_view(key: str) -> tuple[str, bool]:
    """A JSON key as shown (the provider's too: one shaped like a secret is masked like a value),
    and whether it names a credential. Keys repeat in every object of a list: remembered."""
    return redact_text(key), is_sensitive_key(key)


# -- provider field paths ------------------------------------------------------------------------

PathTree = Mapping[str, Any]
_END = ""  # marks a path's last key in a PathTree (no JSON key path segment is empty)
_ANY = "*"


def compile_paths(paths: Iterable[str]) -> PathTree:
    """Dotted field paths (`data.object.billing_details.email`; `*` matches any one key; lists
    on the way are looked through) as a tree `redact` walks alongside the value."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for part in path.split("."):
            node = node.setdefault(part, {})
        node[_END] = True
    return tree


_NO_PATHS: tuple[PathTree, ...] = ()


def redact(value: Any, paths: PathTree | None = None) -> Any:
    """A redacted deep copy of a JSON-like value (`paths`: a provider's fields to mask whole)."""
    return _redact(value, (paths,) if paths else _NO_PATHS)


def _children(nodes: tuple[PathTree, ...], key: str) -> tuple[PathTree, ...]:
    found: tuple[PathTree, ...] = ()
    for node in nodes:
        for child in (node.get(key), node.get(_ANY)):
            if child is not None:
                found += (child,)
    return found


def _redact(value: Any, nodes: tuple[PathTree, ...]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            below = _children(nodes, k) if nodes else _NO_PATHS
            shown, sensitive = _key_view(k) if isinstance(k, str) else (k, False)
            if (sensitive or (below and any(_END in node for node in below))) and v not in (None, ""):
                out[shown] = MASK
            else:
                out[shown] = _redact(v, below)
        return out
    if isinstance(value, list):
        return [_redact(item, nodes) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_body(body: bytes, paths: PathTree | None = None) -> tuple[Any, bool]:
    """A raw body redacted for display: (the parsed JSON, True), or (its text, False) when it
    is not JSON (masked by the detectors alone)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return redact_text(body.decode("utf-8", errors="replace")), False
    return redact(parsed, paths), True


def redact_headers(headers: Any) -> Any:
    """Stored headers, redacted: an object, or `[name, value]` pairs (where names repeat),
    whose values are masked by their header's name as an object's would be."""
    if isinstance(headers, list):
        return [[redact_text(name), MASK if is_sensitive_key(name) and value else redact_text(value)]
                for name, value in headers]
    if isinstance(headers, dict):
        return {redact_text(name): MASK if is_sensitive_key(name) and value else redact(value)
                for name, value in headers.items()}
    return redact(headers)
