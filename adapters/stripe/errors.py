"""Classifying Stripe API outcomes into the canonical failure taxonomy.

Stripe's error `type` and `code` values stay here; only categories leave the adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.protocol import ClassifiedOutcome
from workbench.domain.taxonomy import Category

# What classify_response reads as "slow down" (declared in the adapter's capabilities).
RATE_LIMIT_SIGNALS = frozenset({"status:429", "header:retry-after"})


def classify_response(
    status_code: int | None,
    body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    timed_out: bool = False,
) -> ClassifiedOutcome:
    if timed_out:
        # The request may have reached Stripe: whether it acted is unknown until looked up.
        return ClassifiedOutcome(Category.TIMEOUT, "timeout", "no response before the deadline")
    if status_code is None:  # nothing was sent: the connection itself failed
        return ClassifiedOutcome(Category.PROVIDER_OUTAGE, "unreachable", "could not connect to the provider")
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):  # an error page from a proxy, or no body at all
        error = {}
    err_type = str(error.get("type", ""))
    code = str(error.get("code", "")) or f"http_{status_code}"
    message = str(error.get("message", "")) or f"HTTP {status_code}"
    if 200 <= status_code < 300:
        return ClassifiedOutcome(None, "ok", "ok")
    if status_code >= 500:  # the status decides: localstripe says "invalid_request_error" on its 500s
        return ClassifiedOutcome(Category.PROVIDER_OUTAGE, code, message)
    if status_code == 401:
        return ClassifiedOutcome(Category.AUTHENTICATION, code, message)
    if status_code == 403:
        return ClassifiedOutcome(Category.AUTHORIZATION, code, message)
    if status_code == 429:
        retry_after = _retry_after((headers or {}).get("retry-after") or (headers or {}).get("Retry-After"))
        return ClassifiedOutcome(Category.RATE_LIMIT, code, message, retry_after)
    if status_code == 409 and code in {"idempotency_key_in_use", "idempotency_error"} or err_type == "idempotency_error":
        return ClassifiedOutcome(Category.DUPLICATE, code, message)
    if status_code == 404:  # the object a call refers to (an intent, a customer) does not exist
        return ClassifiedOutcome(Category.MISSING_DEPENDENCY, code, message)
    if status_code == 409:  # the object is in a state that conflicts with the call
        return ClassifiedOutcome(Category.BUSINESS_RULE_REJECTION, code, message)
    if status_code == 402 or err_type == "card_error":
        return ClassifiedOutcome(Category.BUSINESS_RULE_REJECTION, code, message)
    if code == "payment_intent_unexpected_state":
        return ClassifiedOutcome(Category.STALE_DATA, code, message)
    if status_code in (400, 422) or err_type == "invalid_request_error":
        return ClassifiedOutcome(Category.VALIDATION, code, message)
    if not 400 <= status_code < 500:  # 1xx or 3xx: not an answer Stripe's API gives
        return ClassifiedOutcome(Category.CONTRACT_MISMATCH, f"http_{status_code}", f"unexpected HTTP {status_code}")
    return ClassifiedOutcome(Category.UNKNOWN, code, message)


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
