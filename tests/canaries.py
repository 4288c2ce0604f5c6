"""Canaries: recognisable secrets of every shape the detectors know, placed in every field a
provider controls, so a test can assert none of them reaches any output."""

from __future__ import annotations

from typing import Any

import orjson

from tests.support import T0, capture, pi_event
from workbench.services.captures import Capture

SK_LIVE = "sk_live_51CanaryKeyAbCdEf0123"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlY2FuYXJ5"
EMAIL = "canary.person@example.org"
CARD = "4242 4242 4242 4242"  # Luhn-valid
BEARER_TOKEN = "canaryTok3nValue99"
BASIC_CREDENTIAL = "Y2FuYXJ5OnBhc3N3b3Jk"  # canary:password
CANARIES = (SK_LIVE, JWT, EMAIL, CARD, f"Bearer {BEARER_TOKEN}")
# What must never show: each canary's secret part (a bearer token without its scheme word), and
# a name the adapter declares personal (Stripe's billing_details.name).
SECRETS = (SK_LIVE, JWT, "eyJzdWIiOiJjYW5hcnkifQ", EMAIL, CARD, CARD.replace(" ", ""), BEARER_TOKEN,
           BASIC_CREDENTIAL, "Canary Person")
FIELDS = ("event_id", "event_type", "object_id", "status")


def canary_event(field: str, canary: str, index: int) -> dict[str, Any]:
    """A payment_intent event with `canary` in `field`, and every canary in its body too: in a
    free-text field, nested deep in lists and objects, and in fields the adapter declares."""
    created = int(T0.timestamp()) + index
    event = pi_event(f"evt_{field}_{index}", f"pi_{field}_{index}", "succeeded", created)
    obj = event["data"]["object"]
    if field == "event_id":
        event["id"] = canary
    elif field == "event_type":
        event["type"] = f"payment_intent.{canary}"
    elif field == "object_id":
        obj["id"] = canary
    else:  # an unknown status: the verdict reason and the failure message quote it
        obj["status"] = canary
    obj["description"] = "customer wrote: " + " ".join(CANARIES)
    obj["billing_details"] = {"email": EMAIL, "name": "Canary Person"}
    obj["metadata"] = {"deep": [{"er": {"still": [canary, {"note": f"see {canary}"}]}}], canary: "as a key"}
    return event


def canary_headers(canary: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "authorization ": f"Bearer {BEARER_TOKEN}",
            "X-Auth": f"Basic {BASIC_CREDENTIAL}", f"X-Note-{SK_LIVE}": canary, "X-Plain": canary}


def _deliveries() -> list[tuple[dict[str, str], bytes]]:
    out = [(canary_headers(canary), orjson.dumps(canary_event(field, canary, index)))
           for index, (field, canary) in enumerate((f, c) for c in CANARIES for f in FIELDS)]
    not_json = "not json: " + " ".join(CANARIES) + f" Authorization: Basic {BASIC_CREDENTIAL}"
    return [*out, ({}, not_json.encode())]


def canary_captures() -> list[Capture]:
    return [capture(body, T0, headers=headers) for headers, body in _deliveries()]


def canary_lines() -> bytes:
    """A capture file: one delivery per (field, canary), and a non-JSON body holding them all."""
    return b"".join(orjson.dumps({"received_at": T0.isoformat(), "headers": headers, "body": body.decode()}) + b"\n"
                    for headers, body in _deliveries())


def assert_no_canary(text: str, where: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"{where} shows {leaked}"
