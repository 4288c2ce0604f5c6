"""Versioned mapping rules: Stripe payment_intent status -> internal status.

Bump MAPPING_VERSION whenever a rule changes: every transition records the version that made it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from adapters.protocol import CurrentObject
from workbench.domain.canonical import BoundaryProblem, MappedEvent, NotCovered, ParsedEvent, PaymentFields
from workbench.domain.statuses import Status
from workbench.domain.taxonomy import Category

MAPPING_VERSION = "stripe.payment_intent/1"
KIND = "payment"

STATUS_MAP: dict[str, Status] = {
    "requires_payment_method": Status.SUBMITTED,
    "requires_confirmation": Status.SUBMITTED,
    "requires_action": Status.SUBMITTED,
    "processing": Status.PROCESSING,
    "requires_capture": Status.PROCESSING,
    "succeeded": Status.COMPLETED,
    "canceled": Status.CANCELLED,
}

# Whatever the object's status says, this event type means the attempt failed.
FAILED_EVENT_TYPE = "payment_intent.payment_failed"


_validate_fields = PaymentFields.__pydantic_validator__.validate_python


def map_event(event: ParsedEvent) -> MappedEvent | NotCovered:
    event_type = event.event_type or ""
    if not event_type.startswith("payment_intent."):
        return _not_covered(event_type)
    obj = _data_object(event.payload)
    if obj.get("object", "payment_intent") != "payment_intent":
        # The event type promises a payment intent but carries something else: our rules
        # cannot say what it means, so an engineer must look.
        raise BoundaryProblem(
            Category.MAPPING_FAILURE, f"object_type:{obj.get('object')}",
            f"{event_type} carries a {obj.get('object')!r} object, not a payment_intent",
        )
    external_id = obj.get("id")
    if not isinstance(external_id, str) or not external_id:
        raise BoundaryProblem(
            Category.CONTRACT_MISMATCH, "object_missing_id", "payment_intent object has no `id`"
        )
    provider_status = obj.get("status")
    if not isinstance(provider_status, str):
        raise BoundaryProblem(
            Category.CONTRACT_MISMATCH, "object_missing_status", "payment_intent object has no `status`"
        )
    status = Status.FAILED if event_type == FAILED_EVENT_TYPE else STATUS_MAP.get(provider_status)
    fields = _canonical_fields(obj, provider_status)
    return MappedEvent(KIND, external_id, provider_status, status, fields, MAPPING_VERSION)


def current_object(obj: dict[str, Any], reference: str | None) -> CurrentObject:
    """A payment intent as the API shows it now, in our terms (the same rules as its events;
    a failed attempt shows as requires_payment_method with a last_payment_error: failed)."""
    external_id = obj.get("id")
    if obj.get("object") != "payment_intent" or not isinstance(external_id, str) or not external_id:
        raise BoundaryProblem(Category.CONTRACT_MISMATCH, "not_a_payment_intent", "not a payment_intent object with an `id`")
    provider_status = obj.get("status")
    if not isinstance(provider_status, str):
        raise BoundaryProblem(Category.CONTRACT_MISMATCH, "object_missing_status", "payment_intent object has no `status`")
    fields = _canonical_fields(obj, provider_status)
    status = Status.FAILED if fields["failure_code"] and provider_status == "requires_payment_method" \
        else STATUS_MAP.get(provider_status)
    return CurrentObject(KIND, external_id, reference, provider_status, status, dict(fields), MAPPING_VERSION)


@lru_cache(maxsize=1024)
def _not_covered(event_type: str) -> NotCovered:
    # One result per event type: a busy stream repeats a few uncovered types endlessly.
    return NotCovered(f"event type {event_type!r} is not covered by {MAPPING_VERSION}")


def _data_object(payload: Any) -> dict[str, Any]:
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise BoundaryProblem(
            Category.CONTRACT_MISMATCH, "event_missing_object", "event has no `data.object`"
        )
    return obj


def _canonical_fields(obj: dict[str, Any], provider_status: str) -> dict[str, Any]:
    error = obj.get("last_payment_error")
    failure_code = error.get("code") if isinstance(error, dict) else None
    try:
        # PaymentFields' own validator, fed a dict: the same rules, coercions and errors as
        # PaymentFields(...), without the keyword-argument call; its field values are the dump
        # (every field is a scalar, so model_dump() would copy them unchanged).
        fields = _validate_fields({
            "amount": obj.get("amount"),
            "currency": obj.get("currency"),
            "customer": obj.get("customer"),
            "description": obj.get("description"),
            "provider_status": provider_status,
            "failure_code": failure_code,
        })
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BoundaryProblem(
            Category.VALIDATION, f"invalid_{where}", f"payment_intent {where}: {first['msg']}"
        ) from None
    result: dict[str, Any] = fields.__dict__
    return result
