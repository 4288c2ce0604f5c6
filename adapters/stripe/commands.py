"""Our payment intents as commands: what each needs in its payload, and what Stripe's answer
(a payment_intent object) means for the command's record."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from workbench.domain.canonical import BoundaryProblem, MappedEvent, NotCovered, ParsedEvent

from . import mapping
from .client import _ACTIONS

INTENTS: tuple[str, ...] = tuple(_ACTIONS)
CURRENCY = re.compile(r"[a-z]{3}")


def check_command(intent: str, payload: Mapping[str, Any]) -> str | None:
    if intent == "payment.create":
        amount = payload.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            return "amount: a whole number of minor units greater than 0 (1250 is 12.50)"
        currency = payload.get("currency")
        if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
            return "currency: three lower-case letters (an ISO 4217 code such as usd)"
        return None
    intent_id = payload.get("payment_intent")
    if not isinstance(intent_id, str) or not intent_id.startswith("pi_"):
        return f"payment_intent: {intent} needs the Stripe ID (pi_...) that payment.create made"
    return None


def command_result(intent: str, body: Mapping[str, Any]) -> MappedEvent | None:
    # The answer is the payment intent itself: read it as an update event about it would be.
    event = ParsedEvent(None, "payment_intent.updated", None, {"data": {"object": dict(body)}})
    try:
        mapped = mapping.map_event(event)
    except BoundaryProblem:
        return None
    return mapped if not isinstance(mapped, NotCovered) else None
