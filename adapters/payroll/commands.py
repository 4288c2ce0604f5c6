"""Our payroll-run intents as commands: what each needs in its payload, and what the
provider's answer (a payroll run) means for the command's record."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from workbench.domain.canonical import BoundaryProblem, MappedEvent, NotCovered, ParsedEvent

from . import mapping
from .client import INTENTS

__all__ = ["INTENTS", "check_command", "command_result"]

CURRENCY = re.compile(r"[a-z]{3}")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def check_command(intent: str, payload: Mapping[str, Any]) -> str | None:
    if intent == "payroll_run.submit":
        employer = payload.get("employer")
        if not isinstance(employer, str) or not employer:
            return "employer: the employer's ID at the provider"
        pay_date = payload.get("pay_date")
        if not isinstance(pay_date, str) or not DATE.fullmatch(pay_date):
            return "pay_date: a date as YYYY-MM-DD"
        amount = payload.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            return "amount: the run's total, a whole number of minor units greater than 0"
        currency = payload.get("currency")
        if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
            return "currency: three lower-case letters (an ISO 4217 code such as eur)"
        return None
    run_id = payload.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        return f"run_id: {intent} needs the provider's run ID"
    return None


def command_result(intent: str, body: Mapping[str, Any]) -> MappedEvent | None:
    event = ParsedEvent(None, mapping.EVENT_PREFIX + "updated", None, {"run": dict(body)})
    try:
        mapped = mapping.map_event(event)
    except BoundaryProblem:
        return None
    return mapped if not isinstance(mapped, NotCovered) else None
