"""Classifying payroll API outcomes into the canonical failure taxonomy.

The provider's error codes stay here; only categories leave the adapter.
Errors come as `{"error": {"code": "...", "message": "..."}}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.protocol import ClassifiedOutcome
from workbench.domain.taxonomy import Category

RATE_LIMIT_SIGNALS = frozenset({"status:429", "header:retry-after"})

# 409 codes: our reference is already taken (the run exists: a duplicate, not a rejection).
DUPLICATE_CODES = frozenset({"duplicate_reference"})


def classify_response(
    status_code: int | None,
    body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    timed_out: bool = False,
) -> ClassifiedOutcome:
    if timed_out or status_code is None:
        return ClassifiedOutcome(Category.TIMEOUT, "timeout", "no response before the deadline")
    error = (body or {}).get("error")
    error = error if isinstance(error, Mapping) else {}
    code = str(error.get("code") or f"http_{status_code}")
    message = str(error.get("message") or f"HTTP {status_code}")
    if 200 <= status_code < 300:
        return ClassifiedOutcome(None, "ok", "ok")
    if status_code == 401:
        return ClassifiedOutcome(Category.AUTHENTICATION, code, message)
    if status_code == 403:
        return ClassifiedOutcome(Category.AUTHORIZATION, code, message)
    if status_code == 429:
        lowered = {k.lower(): v for k, v in (headers or {}).items()}
        return ClassifiedOutcome(Category.RATE_LIMIT, code, message, _retry_after(lowered.get("retry-after")))
    if status_code == 409:
        category = Category.DUPLICATE if code in DUPLICATE_CODES else Category.BUSINESS_RULE_REJECTION
        return ClassifiedOutcome(category, code, message)
    if status_code == 404:
        return ClassifiedOutcome(Category.MISSING_DEPENDENCY, code, message)
    if status_code in (400, 422):
        return ClassifiedOutcome(Category.VALIDATION, code, message)
    if status_code >= 500:
        return ClassifiedOutcome(Category.PROVIDER_OUTAGE, code, message)
    return ClassifiedOutcome(Category.UNKNOWN, code, message)


def contract_mismatch(what: str) -> ClassifiedOutcome:
    """A 2xx whose body is not the shape the adapter relies on."""
    return ClassifiedOutcome(Category.CONTRACT_MISMATCH, "unexpected_shape", what)


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
