"""Stripe-Signature verification, cross-checked against the official `stripe` package."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import stripe
from hypothesis import assume, given, settings, strategies as st

from adapters.protocol import SignatureVerifying, WebhookSecret
from adapters.registry import default_registry

ADAPTER = default_registry().get("stripe")
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
T = int(NOW.timestamp())
OLD = WebhookSecret("wh-old", "whsec_old_secret_value")
NEW = WebhookSecret("wh-new", "whsec_new_secret_value")


def header(body: bytes, secret: str, ts: int = T) -> str:
    return stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=ts)


def check(headers: dict[str, str], body: bytes = b'{"id":"evt_1"}', secrets=(OLD,), now: datetime = NOW, tolerance: int = 300):
    assert isinstance(ADAPTER, SignatureVerifying)
    return ADAPTER.verify_signature(headers, body, list(secrets), now, tolerance)


def test_stripe_declares_its_scheme():
    assert ADAPTER.capabilities.signature_scheme == "stripe-v1"


def test_a_signature_made_by_stripe_verifies_with_the_secret_that_made_it():
    body = b'{"id":"evt_1"}'
    result = check({"stripe-signature": header(body, NEW.value)}, body, secrets=(NEW, OLD))
    assert (result.verdict, result.secret, result.reason) == ("verified", "wh-new", None)


def test_any_active_secret_and_any_v1_may_match_during_a_roll():
    body = b'{"id":"evt_2"}'
    old_sig = header(body, OLD.value).split(",")[1]
    new_sig = header(body, NEW.value).split(",")[1]
    both = f"t={T},{new_sig},{old_sig},v0=ignored"
    assert check({"stripe-signature": both}, body, secrets=(OLD,)).verdict == "verified"
    assert check({"stripe-signature": both}, body, secrets=(NEW,)).secret == "wh-new"


@pytest.mark.parametrize(("headers", "reason"), [
    ({}, "no stripe-signature header"),
    ({"stripe-signature": "garbage"}, "no timestamp"),
    ({"stripe-signature": "t=abc,v1=00"}, "is not a number"),
    ({"stripe-signature": f"t={T}"}, "no v1 signature"),
    ({"stripe-signature": f"t={T},v1=" + "0" * 64}, "no v1 signature matches the active secret(s) wh-old"),
    ({"stripe-signature": "t=1,v1=" + "0" * 64 * 100}, "characters long"),
])
def test_an_unusable_or_wrong_header_fails_and_says_why(headers, reason):
    result = check(headers)
    assert result.verdict == "failed" and result.secret == "wh-old"
    assert reason in (result.reason or "")
    assert OLD.value not in repr(result)


def test_a_timestamp_outside_the_tolerance_fails_either_way():
    body = b'{"id":"evt_3"}'
    for offset in (301, -301):
        result = check({"stripe-signature": header(body, OLD.value, T - offset)}, body)
        assert result.verdict == "failed" and "tolerance 300 s" in (result.reason or "")
    assert check({"stripe-signature": header(body, OLD.value, T - 299)}, body).verdict == "verified"
    assert check({"stripe-signature": header(body, OLD.value, T - 1000)}, body, tolerance=2000).verdict == "verified"


def test_no_secret_means_unchecked():
    assert check({"stripe-signature": "t=1,v1=00"}, secrets=()).verdict == "unchecked"


@settings(max_examples=200, deadline=None)
@given(body=st.text(max_size=200), secret=st.text(min_size=1, max_size=40).filter(lambda s: s.strip()),
       signing=st.sampled_from(["same", "other"]), age=st.integers(min_value=0, max_value=600),
       tamper=st.booleans())
def test_our_verdict_agrees_with_the_official_verifier(body, secret, signing, age, tamper):
    # At exactly the tolerance the two disagree by the clock alone: the official verifier reads
    # time.time() (a fraction past our whole second) and finds it just over.
    assume(age != 300)
    now = int(time.time())
    raw = body.encode()
    sig = header(raw, secret if signing == "same" else secret + "x", now - age)
    sent = raw + b" " if tamper else raw
    try:
        stripe.WebhookSignature.verify_header(sent.decode(), sig, secret, tolerance=300)
        official = "verified"
    except stripe.SignatureVerificationError:
        official = "failed"
    ours = ADAPTER.verify_signature({"stripe-signature": sig}, sent, [WebhookSecret("s", secret)],
                                    datetime.fromtimestamp(now, UTC), 300)
    assert ours.verdict == official
