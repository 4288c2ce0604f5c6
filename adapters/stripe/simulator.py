"""Realistic Stripe webhook captures for demos, tests and benchmarks.

Produces payment_intent lifecycles as Stripe would deliver them: mostly in order, some late and
out of order, some delivered twice, occasional events the mapping does not cover, a status
added by a newer API version (contract drift) and truncated bodies. Streaming, constant memory.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

DEMO_SIGNING_SECRET = b"simulator-signing-key-not-a-secret"

# Each lifecycle is a legal walk: (event type, object status).
LIFECYCLES: list[tuple[float, list[tuple[str, str]]]] = [
    (0.40, [("payment_intent.created", "requires_payment_method"), ("payment_intent.processing", "processing"),
            ("payment_intent.succeeded", "succeeded")]),
    (0.15, [("payment_intent.created", "requires_payment_method"), ("payment_intent.requires_action", "requires_action"),
            ("payment_intent.processing", "processing"), ("payment_intent.succeeded", "succeeded")]),
    (0.10, [("payment_intent.created", "requires_payment_method"),
            ("payment_intent.payment_failed", "requires_payment_method"),
            ("payment_intent.processing", "processing"), ("payment_intent.succeeded", "succeeded")]),
    (0.08, [("payment_intent.created", "requires_payment_method"),
            ("payment_intent.payment_failed", "requires_payment_method"), ("payment_intent.canceled", "canceled")]),
    (0.07, [("payment_intent.created", "requires_payment_method"),
            ("payment_intent.amount_capturable_updated", "requires_capture"), ("payment_intent.succeeded", "succeeded")]),
    (0.10, [("payment_intent.created", "requires_payment_method"), ("payment_intent.processing", "processing")]),
    (0.10, [("payment_intent.created", "requires_payment_method"), ("payment_intent.requires_action", "requires_action")]),
]

FAILURE_CODES = ["card_declined", "insufficient_funds", "expired_card", "incorrect_cvc", "processing_error"]
CURRENCIES = ["usd", "eur", "gbp", "usd", "usd", "eur"]
UNCOVERED_TYPES = ["charge.succeeded", "customer.created", "invoice.paid", "payout.paid"]
DRIFT_STATUS = "requires_review"  # a status from a newer API version our mapping does not know


@dataclass(frozen=True)
class SimulatorSettings:
    intents: int = 1000
    seed: int = 7
    start: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    duplicate_rate: float = 0.05
    reorder_rate: float = 0.08
    drift_rate: float = 0.004
    garbage_rate: float = 0.002
    uncovered_rate: float = 0.02
    mismatch_rate: float = 0.001
    livemode: bool = False


def _rand_id(rng: random.Random, prefix: str, n: int = 24) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(rng.choices(alphabet, k=n))


def _pick_lifecycle(rng: random.Random) -> list[tuple[str, str]]:
    roll = rng.random()
    for weight, steps in LIFECYCLES:
        roll -= weight
        if roll <= 0:
            return steps
    return LIFECYCLES[0][1]


def intent_events(rng: random.Random, settings: SimulatorSettings, created: int) -> list[dict[str, Any]]:
    """One payment intent's events, in the order they happened."""
    pi_id = _rand_id(rng, "pi_3", 21)
    customer = _rand_id(rng, "cus_", 14)
    amount = rng.choice([500, 1299, 2000, 4999, 15000, 99900]) + rng.randrange(0, 100)
    currency = rng.choice(CURRENCIES)
    order_id = f"ord_{rng.randrange(10**7):07d}"
    steps = list(_pick_lifecycle(rng))
    if rng.random() < settings.drift_rate:
        steps.append(("payment_intent.updated", DRIFT_STATUS))
    events = []
    ts = created
    for event_type, status in steps:
        error = None
        if event_type == "payment_intent.payment_failed":
            code = rng.choice(FAILURE_CODES)
            error = {"type": "card_error", "code": code, "message": f"Your card was declined ({code})."}
        obj = {
            "id": pi_id, "object": "payment_intent", "amount": amount,
            "amount_capturable": amount if status == "requires_capture" else 0,
            "amount_received": amount if status == "succeeded" else 0,
            "capture_method": "automatic", "client_secret": f"{pi_id}_secret_{_rand_id(rng, '', 25)}",
            "confirmation_method": "automatic", "created": created, "currency": currency,
            "customer": customer, "description": f"Order {order_id}",
            "last_payment_error": error, "livemode": settings.livemode,
            "metadata": {"order_id": order_id}, "payment_method": _rand_id(rng, "pm_", 24),
            "payment_method_types": ["card"], "status": status,
        }
        events.append({
            "id": _rand_id(rng, "evt_3", 21), "object": "event", "api_version": "2024-06-20",
            "created": ts, "data": {"object": obj}, "livemode": settings.livemode,
            "pending_webhooks": 1,
            "request": {"id": _rand_id(rng, "req_", 14), "idempotency_key": _rand_id(rng, "", 32)},
            "type": event_type,
        })
        ts += rng.choice([1, 1, 2, 3, 5, 30, 120])
    return events


def uncovered_event(rng: random.Random, ts: int, livemode: bool) -> dict[str, Any]:
    event_type = rng.choice(UNCOVERED_TYPES)
    prefix = {"charge": "ch_3", "customer": "cus_", "invoice": "in_1", "payout": "po_1"}[event_type.split(".")[0]]
    return {
        "id": _rand_id(rng, "evt_3", 21), "object": "event", "api_version": "2024-06-20", "created": ts,
        "data": {"object": {"id": _rand_id(rng, prefix, 21), "object": event_type.split(".")[0]}},
        "livemode": livemode, "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def signature_header(body: bytes, ts: int, secret: bytes = DEMO_SIGNING_SECRET) -> str:
    signed = f"{ts}.".encode() + body
    return f"t={ts},v1={hmac.new(secret, signed, hashlib.sha256).hexdigest()}"


def to_capture(body: bytes, received: datetime) -> dict[str, Any]:
    ts = int(received.timestamp())
    return {
        "received_at": received.isoformat().replace("+00:00", "Z"),
        "headers": {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": signature_header(body, ts),
        },
        "body": body.decode("utf-8", errors="replace"),
    }


def captures(settings: SimulatorSettings) -> Iterator[dict[str, Any]]:
    """Capture objects (`received_at`, `headers`, `body`), streamed in delivery order."""
    rng = random.Random(settings.seed)
    clock = int(settings.start.timestamp())
    # (deliver at, tie-breaker, body): a heap of late and repeated deliveries, bounded by the
    # longest delay, so memory stays constant however many intents are generated.
    pending: list[tuple[int, int, bytes]] = []
    seq = 0
    for _ in range(settings.intents):
        clock += rng.choice([0, 1, 1, 2, 3])
        bodies: list[tuple[int, bytes]] = []
        for event in intent_events(rng, settings, clock):
            body = orjson.dumps(event)
            delay = rng.randrange(5, 400) if rng.random() < settings.reorder_rate else 0
            bodies.append((event["created"] + delay, body))
            if rng.random() < settings.duplicate_rate:
                bodies.append((event["created"] + delay + rng.randrange(1, 3600), body))
        if rng.random() < settings.uncovered_rate:
            bodies.append((clock, orjson.dumps(uncovered_event(rng, clock, settings.livemode))))
        if rng.random() < settings.mismatch_rate:
            bodies.append((clock, orjson.dumps(mismatched_object_event(rng, clock))))
        if rng.random() < settings.garbage_rate:
            good = orjson.dumps(uncovered_event(rng, clock, settings.livemode))
            bodies.append((clock, good[: rng.randrange(5, len(good) - 5)]))
        for due, body in bodies:
            seq += 1
            heapq.heappush(pending, (due, seq, body))
        while pending and pending[0][0] <= clock:
            yield _deliver(heapq.heappop(pending), rng)
    while pending:
        yield _deliver(heapq.heappop(pending), rng)


def _deliver(item: tuple[int, int, bytes], rng: random.Random) -> dict[str, Any]:
    due, _, body = item
    received = datetime.fromtimestamp(due, tz=UTC) + timedelta(milliseconds=rng.randrange(50, 900))
    return to_capture(body, received)


def write_jsonl(path: str, settings: SimulatorSettings) -> int:
    count = 0
    with open(path, "wb") as out:
        for capture in captures(settings):
            out.write(orjson.dumps(capture) + b"\n")
            count += 1
    return count


# Responses the Stripe API gives, as (weight, HTTP status or None for a timeout, body, headers),
# for demo command attempts: every way a call can end, so every failure category shows up.
API_OUTCOMES: list[tuple[int, int | None, dict[str, Any], dict[str, str]]] = [
    (40, 200, {"id": "pi_x", "object": "payment_intent", "status": "succeeded"}, {}),
    (3, 401, {"error": {"type": "invalid_request_error", "code": "api_key_expired",
                        "message": "Expired API Key provided: sk_live_****1234"}}, {}),
    (3, 403, {"error": {"type": "invalid_request_error", "code": "secret_key_required",
                        "message": "This API call cannot be made with a restricted key."}}, {}),
    (4, 400, {"error": {"type": "invalid_request_error", "code": "parameter_invalid_integer",
                        "message": "Invalid integer: amount", "param": "amount"}}, {}),
    (5, 429, {"error": {"type": "rate_limit_error", "code": "rate_limit",
                        "message": "Too many requests hit the API too quickly."}}, {"Retry-After": "2"}),
    (5, None, {}, {}),
    (3, 409, {"error": {"type": "idempotency_error", "code": "idempotency_key_in_use",
                        "message": "There is currently another in-progress request using this Idempotent Key."}}, {}),
    (3, 400, {"error": {"type": "invalid_request_error", "code": "payment_intent_unexpected_state",
                        "message": "This PaymentIntent's amount could not be updated because it has a status of succeeded."}}, {}),
    (3, 404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                        "message": "No such customer: 'cus_missing'", "param": "customer"}}, {}),
    (4, 503, {"error": {"type": "api_error", "code": "api_error",
                        "message": "An unexpected error occurred; we are looking into it."}}, {}),
    (4, 402, {"error": {"type": "card_error", "code": "card_declined", "decline_code": "do_not_honor",
                        "message": "Your card was declined."}}, {}),
    (2, 418, {"error": {"type": "api_error", "code": "", "message": "I'm a teapot"}}, {}),
]


def api_outcome(rng: random.Random) -> tuple[int | None, dict[str, Any], dict[str, str]]:
    """One simulated API response (None status: the call timed out)."""
    total = sum(weight for weight, *_ in API_OUTCOMES)
    roll = rng.randrange(total)
    for weight, status, body, headers in API_OUTCOMES:
        roll -= weight
        if roll < 0:
            return status, body, headers
    raise AssertionError("unreachable")


def mismatched_object_event(rng: random.Random, ts: int) -> dict[str, Any]:
    """A payment_intent event whose object is not a payment intent (seen after API upgrades)."""
    event = uncovered_event(rng, ts, False)
    event["type"] = "payment_intent.succeeded"
    event["data"]["object"] = {"id": _rand_id(rng, "ch_3", 21), "object": "charge", "status": "succeeded",
                               "amount": 1000, "currency": "usd"}
    return event
