"""The payroll adapter offline: parsing (no event IDs), the versioned status mapping, error
classification, capabilities, and Standard Webhooks signatures cross-checked against the
`standardwebhooks` reference package."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings, strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from adapters.payroll.signature import BadSecret, secret_key, sign, signed_headers
from adapters.protocol import Calling, Pagination, SignatureVerifying, WebhookSecret
from adapters.registry import default_registry
from workbench.domain.canonical import BoundaryProblem, MappedEvent, NotCovered
from workbench.domain.statuses import Status
from workbench.domain.taxonomy import Category

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(b"payroll-test-secret-0123456789ab").decode()
OTHER = "whsec_" + base64.b64encode(b"another-secret-entirely-98765432").decode()


@pytest.fixture(scope="module")
def adapter() -> Any:
    return default_registry().get("payroll")


def run_event(status: str | None, error_code: str | None = None, **run: Any) -> bytes:
    obj = {"id": "run_1", "object": "payroll_run", "reference": "op_1", "employer": "acme", "pay_date": "2026-12-01",
           "amount": 123456, "currency": "eur", "status": status, "error_code": error_code, **run}
    return orjson.dumps({"type": "payroll_run.updated", "occurred_at": NOW.isoformat(), "run": obj})


# -- parsing and mapping ------------------------------------------------------------------------

def test_events_have_no_id_so_the_core_dedupes_them_by_payload_hash(adapter):
    parsed = adapter.parse(run_event("SENT"))
    assert parsed.provider_event_id is None
    assert (parsed.event_type, parsed.occurred_at) == ("payroll_run.updated", NOW)


@pytest.mark.parametrize("status, code, expected", [
    ("SENT", None, Status.SUBMITTED),
    ("ACKNOWLEDGED", None, Status.PROCESSING),
    ("COMPLETE", None, Status.COMPLETED),
    ("CANCELLED", None, Status.CANCELLED),
    ("ERROR", "INVALID_BANK_ACCOUNT", Status.NEEDS_REVIEW),  # a person can correct it
    ("ERROR", "MISSING_TAX_ID", Status.NEEDS_REVIEW),
    ("ERROR", "FUNDING_REJECTED", Status.FAILED),  # nothing to correct: the run failed
    ("ERROR", "DEADLINE_MISSED", Status.FAILED),
])
def test_each_status_maps_deliberately(adapter, status, code, expected):
    mapped = adapter.map(adapter.parse(run_event(status, code)))
    assert isinstance(mapped, MappedEvent)
    assert (mapped.kind, mapped.external_id, mapped.status) == ("payroll_run", "run_1", expected)
    assert mapped.mapping_version == adapter.mapping_version == "payroll.run/1"
    assert mapped.fields["error_code"] == code and mapped.fields["amount"] == 123456
    assert mapped.fields["reference"] == "op_1"


def test_an_unknown_status_or_error_code_is_not_guessed(adapter):
    drifted = adapter.map(adapter.parse(run_event("ON_HOLD")))
    assert isinstance(drifted, MappedEvent) and drifted.status is None and drifted.provider_status == "ON_HOLD"
    unknown_code = adapter.map(adapter.parse(run_event("ERROR", "BANK_ON_FIRE")))
    assert isinstance(unknown_code, MappedEvent) and unknown_code.status is None
    assert unknown_code.provider_status == "ERROR:BANK_ON_FIRE"


def test_other_event_types_are_not_covered(adapter):
    body = orjson.dumps({"type": "employer.updated", "occurred_at": NOW.isoformat(), "employer": {}})
    assert isinstance(adapter.map(adapter.parse(body)), NotCovered)


@pytest.mark.parametrize("body, category, code", [
    (b"not json", Category.VALIDATION, "body_not_json"),
    (b"[1]", Category.CONTRACT_MISMATCH, "event_not_object"),
    (b'{"occurred_at": "2026-11-01T12:00:00+00:00"}', Category.CONTRACT_MISMATCH, "event_missing_type"),
    (b'{"type": "payroll_run.updated"}', Category.CONTRACT_MISMATCH, "event_missing_occurred_at"),
    (b'{"type": "payroll_run.updated", "occurred_at": "yesterday"}', Category.VALIDATION, "event_bad_occurred_at"),
    (b'{"type": "payroll_run.updated", "occurred_at": "2026-11-01T12:00:00"}', Category.VALIDATION,
     "event_bad_occurred_at"),
])
def test_bad_events_are_boundary_problems(adapter, body, category, code):
    with pytest.raises(BoundaryProblem) as caught:
        adapter.parse(body)
    assert (caught.value.category, caught.value.code) == (category, code)


@pytest.mark.parametrize("body, category, code", [
    (orjson.dumps({"type": "payroll_run.updated", "occurred_at": NOW.isoformat()}), Category.CONTRACT_MISMATCH,
     "event_missing_run"),
    (run_event("SENT", id=""), Category.CONTRACT_MISMATCH, "run_missing_id"),
    (run_event(None), Category.CONTRACT_MISMATCH, "run_missing_status"),
    (run_event("SENT", amount=-1), Category.VALIDATION, "invalid_amount"),
    (run_event("SENT", currency="EURO"), Category.VALIDATION, "invalid_currency"),
])
def test_bad_runs_are_boundary_problems(adapter, body, category, code):
    with pytest.raises(BoundaryProblem) as caught:
        adapter.map(adapter.parse(body))
    assert (caught.value.category, caught.value.code) == (category, code)


def test_a_renamed_field_is_a_contract_mismatch(adapter):
    event = orjson.loads(run_event("SENT"))
    event["run"]["gross_amount"] = event["run"].pop("amount")
    with pytest.raises(BoundaryProblem) as caught:
        adapter.map(adapter.parse(orjson.dumps(event)))
    assert (caught.value.category, caught.value.code) == (Category.CONTRACT_MISMATCH, "run_missing_amount")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)  # orjson's integer range
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
run_like = st.fixed_dictionaries({"type": st.sampled_from(["payroll_run.updated", "x"]) | st.text(max_size=5),
                                  "occurred_at": st.sampled_from([NOW.isoformat(), "2026-01-01", "x"]) | json_values,
                                  "run": st.dictionaries(st.sampled_from(
                                      ["id", "status", "error_code", "amount", "currency", "reference", "pay_date"]),
                                      json_values) | json_values})


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=64), json_values.map(orjson.dumps), run_like.map(orjson.dumps)))
def test_any_body_is_an_event_or_a_boundary_problem_never_a_crash(body):
    adapter = default_registry().get("payroll")
    try:
        result = adapter.map(adapter.parse(body))
    except BoundaryProblem as problem:
        assert isinstance(problem.category, Category) and problem.code
    else:
        assert isinstance(result, MappedEvent | NotCovered)


# -- what it declares ---------------------------------------------------------------------------

def test_capabilities_say_how_unlike_stripe_it_is(adapter):
    caps = adapter.capabilities
    assert (caps.webhooks, caps.polling_cursor, caps.lookup_by_reference) == (True, True, True)
    assert caps.idempotency_keys is False
    assert caps.pagination is Pagination.OFFSET
    assert caps.signature_scheme == "standard-webhooks"
    assert isinstance(adapter, SignatureVerifying) and isinstance(adapter, Calling)
    for signal in caps.rate_limit_signals:
        kind, _, value = signal.partition(":")
        outcome = adapter.classify_response(int(value), {}) if kind == "status" else \
            adapter.classify_response(429, {}, {value: "7"})
        assert outcome.category is Category.RATE_LIMIT


@pytest.mark.parametrize("status, code, category", [
    (200, None, None),
    (201, None, None),
    (400, "body_not_json", Category.VALIDATION),
    (401, "invalid_api_key", Category.AUTHENTICATION),
    (403, "key_not_permitted", Category.AUTHORIZATION),
    (404, "run_not_found", Category.MISSING_DEPENDENCY),
    (409, "run_not_cancellable", Category.BUSINESS_RULE_REJECTION),
    (409, "duplicate_reference", Category.DUPLICATE),
    (422, "invalid_field", Category.VALIDATION),
    (429, "rate_limited", Category.RATE_LIMIT),
    (500, None, Category.PROVIDER_OUTAGE),
    (503, "provider_unavailable", Category.PROVIDER_OUTAGE),
    (418, None, Category.UNKNOWN),
    (None, None, Category.TIMEOUT),
])
def test_classification(adapter, status, code, category):
    body = {"error": {"code": code, "message": "m"}} if code else None
    outcome = adapter.classify_response(status, body, {"Retry-After": "3"}, timed_out=status is None)
    assert outcome.category is category
    if category is Category.RATE_LIMIT:
        assert outcome.retry_after_s == 3.0
    if code:
        assert outcome.code == code


# -- signatures, against the reference implementation -------------------------------------------

def test_our_signature_is_the_reference_packages():
    body = run_event("COMPLETE")
    stamp = int(NOW.timestamp())
    assert sign(SECRET, "msg_1", stamp, body) == Webhook(SECRET).sign("msg_1", NOW, body.decode())
    # and the reference package accepts what we send (it checks against the real clock)
    now = datetime.now(UTC)
    Webhook(SECRET).verify(body, signed_headers(SECRET, "msg_1", int(now.timestamp()), body))
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(body, signed_headers(SECRET, "msg_1", int(now.timestamp()), body))


def reference_headers(secret: str, body: bytes, when: datetime = NOW, msg_id: str = "msg_1") -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode())}


def test_what_the_reference_package_signs_verifies(adapter):
    body = run_event("COMPLETE")
    check = adapter.verify_signature(reference_headers(SECRET, body), body, [WebhookSecret("wh_v1", SECRET)], NOW)
    assert (check.verdict, check.secret) == ("verified", "wh_v1")


def test_a_rotated_secret_and_its_predecessor_both_verify(adapter):
    body = run_event("COMPLETE")
    secrets = [WebhookSecret("old", OTHER), WebhookSecret("new", SECRET)]
    assert adapter.verify_signature(reference_headers(SECRET, body), body, secrets, NOW).secret == "new"
    assert adapter.verify_signature(reference_headers(OTHER, body), body, secrets, NOW).secret == "old"
    # several signatures in one header (a sender mid-rotation): any one may match
    both = reference_headers(OTHER, body)
    both["webhook-signature"] = "v1,AAAA " + both["webhook-signature"]
    assert adapter.verify_signature(both, body, [WebhookSecret("old", OTHER)], NOW).verdict == "verified"


def test_unpadded_and_prefixless_secrets_read_as_the_reference_does():
    raw = b"sixteen byte key"
    padded = base64.b64encode(raw + b"x").decode()
    assert padded.endswith("=")
    assert secret_key("whsec_" + padded.rstrip("=")) == secret_key(padded) == raw + b"x"
    with pytest.raises(BadSecret):
        secret_key("whsec_not base64!")


@pytest.mark.parametrize("change, reason", [
    (lambda h, b: (h, b + b" "), "no active secret matched"),  # body tampered
    (lambda h, b: ({**h, "webhook-id": "msg_2"}, b), "no active secret matched"),  # id swapped
    (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b), "missing header webhook-signature"),
    (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "missing header webhook-id"),
    (lambda h, b: ({**h, "webhook-timestamp": "soon"}, b), "not a whole number"),
    (lambda h, b: ({**h, "webhook-signature": "v2,abc"}, b), "no v1 signature"),
])
def test_what_fails_and_why(adapter, change, reason):
    body = run_event("COMPLETE")
    headers, body = change(reference_headers(SECRET, body), body)
    check = adapter.verify_signature(headers, body, [WebhookSecret("wh_v1", SECRET)], NOW)
    assert check.verdict == "failed" and reason in (check.reason or "")
    assert SECRET not in repr(check)


def test_timestamps_outside_the_tolerance_fail_either_way(adapter):
    body = run_event("COMPLETE")
    secrets = [WebhookSecret("wh_v1", SECRET)]
    for skew in (timedelta(seconds=301), timedelta(seconds=-301)):
        headers = reference_headers(SECRET, body, NOW + skew)
        check = adapter.verify_signature(headers, body, secrets, NOW)
        assert check.verdict == "failed" and "tolerance" in (check.reason or "")
    assert adapter.verify_signature(reference_headers(SECRET, body, NOW - timedelta(seconds=299)), body, secrets,
                                    NOW).verdict == "verified"
    assert adapter.verify_signature(reference_headers(SECRET, body, NOW - timedelta(seconds=100)), body, secrets, NOW,
                                    tolerance_s=60).verdict == "failed"


def test_no_secret_is_unchecked_and_a_wrong_one_is_named(adapter):
    body = run_event("COMPLETE")
    assert adapter.verify_signature(reference_headers(SECRET, body), body, [], NOW).verdict == "unchecked"
    check = adapter.verify_signature(reference_headers(SECRET, body), body, [WebhookSecret("wrong", OTHER)], NOW)
    assert (check.verdict, check.secret) == ("failed", "wrong")
