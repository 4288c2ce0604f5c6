"""Versioned mapping rules: payroll run status (and error code) -> internal status.

Bump MAPPING_VERSION whenever a rule changes: every transition records the version that made it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.protocol import CurrentObject
from workbench.domain.canonical import BoundaryProblem, MappedEvent, NotCovered, ParsedEvent
from workbench.domain.statuses import Status
from workbench.domain.taxonomy import Category

MAPPING_VERSION = "payroll.run/1"
KIND = "payroll_run"
EVENT_PREFIX = "payroll_run."

STATUS_MAP: dict[str, Status] = {
    "SENT": Status.SUBMITTED,  # handed over, not yet taken on: an internal detail for us
    "ACKNOWLEDGED": Status.PROCESSING,
    "COMPLETE": Status.COMPLETED,
    "CANCELLED": Status.CANCELLED,
}

# ERROR codes a person can fix (data we sent) put the run in review; the rest are final failures.
CORRECTABLE_ERRORS = frozenset({"INVALID_BANK_ACCOUNT", "MISSING_TAX_ID", "INVALID_EMPLOYEE_DATA",
                                "PAY_DATE_IN_PAST"})
FATAL_ERRORS = frozenset({"FUNDING_REJECTED", "EMPLOYER_SUSPENDED", "DEADLINE_MISSED"})


class PayrollRunFields(BaseModel):
    """Canonical fields of a payroll run record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reference: str | None = None
    employer: str | None = None
    pay_date: str | None = None
    amount: int = Field(ge=0, description="minor units, the run's total")
    currency: str = Field(pattern=r"^[a-z]{3}$")
    provider_status: str
    error_code: str | None = None


_validate_fields = PayrollRunFields.__pydantic_validator__.validate_python


def map_event(event: ParsedEvent) -> MappedEvent | NotCovered:
    event_type = event.event_type or ""
    if not event_type.startswith(EVENT_PREFIX):
        return _not_covered(event_type)
    run = event.payload.get("run")
    if not isinstance(run, dict):
        raise BoundaryProblem(Category.CONTRACT_MISMATCH, "event_missing_run", "event has no `run` object")
    run_id, shown_status, status, fields = _read_run(run)
    return MappedEvent(KIND, run_id, shown_status, status, fields, MAPPING_VERSION)


def current_object(run: dict[str, Any]) -> CurrentObject:
    """A run as the API shows it now, in our terms (the same rules as its events)."""
    run_id, shown_status, status, fields = _read_run(run)
    return CurrentObject(KIND, run_id, fields["reference"], shown_status, status, dict(fields), MAPPING_VERSION)


def _read_run(run: dict[str, Any]) -> tuple[str, str, Status | None, dict[str, Any]]:
    """A run object's ID, its status as the provider shows it, ours (None: an ERROR whose code
    we do not know) and its canonical fields: the same rules for events and current views."""
    run_id = run.get("id")
    if not isinstance(run_id, str) or not run_id:
        raise BoundaryProblem(Category.CONTRACT_MISMATCH, "run_missing_id", "payroll run has no `id`")
    provider_status = run.get("status")
    if not isinstance(provider_status, str):
        raise BoundaryProblem(Category.CONTRACT_MISMATCH, "run_missing_status", "payroll run has no `status`")
    error_code = run.get("error_code")
    status = internal_status(provider_status, error_code if isinstance(error_code, str) else None)
    # An ERROR is recorded with its code, so an unknown code opens its own failure group.
    shown_status = f"ERROR:{error_code}" if provider_status == "ERROR" and status is None else provider_status
    return run_id, shown_status, status, _canonical_fields(run, provider_status)


def internal_status(provider_status: str, error_code: str | None) -> Status | None:
    """Our status for a run's; None when the rules do not know it (a status or an ERROR code
    they have never seen: an engineer decides, nothing is guessed)."""
    if provider_status == "ERROR":
        if error_code in CORRECTABLE_ERRORS:
            return Status.NEEDS_REVIEW
        if error_code in FATAL_ERRORS:
            return Status.FAILED
        return None
    return STATUS_MAP.get(provider_status)


@lru_cache(maxsize=1024)
def _not_covered(event_type: str) -> NotCovered:
    return NotCovered(f"event type {event_type!r} is not covered by {MAPPING_VERSION}")


def _canonical_fields(run: dict[str, Any], provider_status: str) -> dict[str, Any]:
    if "amount" not in run:
        raise BoundaryProblem(Category.CONTRACT_MISMATCH, "run_missing_amount", "payroll run has no `amount`")
    try:
        fields = _validate_fields({
            "reference": run.get("reference"),
            "employer": run.get("employer"),
            "pay_date": run.get("pay_date"),
            "amount": run.get("amount"),
            "currency": run.get("currency"),
            "provider_status": provider_status,
            "error_code": run.get("error_code"),
        })
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BoundaryProblem(Category.VALIDATION, f"invalid_{where}", f"payroll run {where}: {first['msg']}") from None
    result: dict[str, Any] = fields.__dict__
    return result
