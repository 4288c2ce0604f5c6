"""The provider's current view through the adapters (Reconciling): Stripe against localstripe,
payroll against its sandbox's run list. Statuses come back in OUR canonical terms."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from adapters.payroll.client import PayrollClient
from adapters.protocol import Calling, Reconciling
from adapters.registry import default_registry
from adapters.stripe.client import StripeClient
from tests.payroll_servers import PAYROLL_KEY, advance_run, payroll_sandbox, submit_run
from tests.stripe_servers import API_KEY, card_payment_method, localstripe, localstripe_server
from workbench.domain.statuses import Status
from workbench.domain.taxonomy import Category

__all__ = ["localstripe", "localstripe_server", "payroll_sandbox"]  # fixtures are used by name


def test_both_adapters_say_they_reconcile_through_a_list() -> None:
    registry = default_registry()
    for provider in ("stripe", "payroll"):
        adapter = registry.get(provider)
        assert adapter.capabilities.reconcile_by == "list"
        assert isinstance(adapter, Calling)
        client = adapter.client(base_url="http://127.0.0.1:9", api_key="k")
        try:
            assert isinstance(client, Reconciling)
        finally:
            client.close()


@pytest.fixture
def stripe(localstripe: str) -> Iterator[StripeClient]:
    client = StripeClient(base_url=localstripe, api_key=API_KEY, timeout_s=5)
    yield client
    client.close()


def test_stripe_lists_every_intent_in_pages_with_our_reference_and_status(stripe: StripeClient, localstripe: str) -> None:
    made = {}
    for i in range(5):
        result = stripe.send("payment.create", {"amount": 1000 + i, "currency": "usd",
                                                "payment_method": card_payment_method(localstripe)},
                             reference=f"op_{i}", idempotency_key=f"k{i}")
        assert result.body is not None
        made[result.body["id"]] = i
    cancelled = next(iter(made))
    assert stripe.send("payment.cancel", {"payment_intent": cancelled}, reference="op_c",
                       idempotency_key=None).outcome.category is None
    seen, cursor, pages = {}, None, 0
    while True:
        page = stripe.list_current(cursor, limit=2)
        assert page.call.outcome.category is None and not page.unreadable
        pages += 1
        seen.update({obj.provider_id: obj for obj in page.objects})
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3 and set(seen) == set(made)
    for provider_id, i in made.items():
        obj = seen[provider_id]
        assert obj.kind == "payment" and obj.reference == f"op_{i}" and obj.fields["amount"] == 1000 + i
        assert obj.status is (Status.CANCELLED if provider_id == cancelled else Status.SUBMITTED)
    fetched = stripe.fetch_current(cancelled)
    assert fetched.found is not None and fetched.found.provider_status == "canceled"


def test_stripe_fetch_of_an_unknown_intent_is_missing(stripe: StripeClient) -> None:
    fetched = stripe.fetch_current("pi_doesnotexist")
    assert fetched.found is None and fetched.call.outcome.category is Category.MISSING_DEPENDENCY


@pytest.fixture
def payroll(payroll_sandbox: str) -> Iterator[PayrollClient]:
    client = PayrollClient(base_url=payroll_sandbox, api_key=PAYROLL_KEY, timeout_s=5)
    yield client
    client.close()


def test_payroll_lists_runs_by_offset_and_sees_a_change_behind_our_back(payroll: PayrollClient,
                                                                          payroll_sandbox: str) -> None:
    tag = uuid.uuid4().hex[:8]
    runs = [submit_run(payroll_sandbox, f"{tag}-{i}", amount=100 + i) for i in range(3)]
    advance_run(payroll_sandbox, runs[1]["id"], "ERROR", "FUNDING_REJECTED")
    seen, cursor = {}, None
    while True:
        page = payroll.list_current(cursor, limit=2)
        assert page.call.outcome.category is None and not page.unreadable
        seen.update({obj.provider_id: obj for obj in page.objects})
        cursor = page.next_cursor
        if cursor is None:
            break
    ours = {run["id"]: seen[run["id"]] for run in runs}
    assert [obj.reference for obj in ours.values()] == [f"{tag}-{i}" for i in range(3)]
    assert [obj.status for obj in ours.values()] == [Status.SUBMITTED, Status.FAILED, Status.SUBMITTED]
    assert ours[runs[1]["id"]].fields["error_code"] == "FUNDING_REJECTED"
    found = payroll.fetch_current(runs[2]["id"]).found
    assert found is not None and found.fields["amount"] == 102 and found.kind == "payroll_run"
    missing = payroll.fetch_current("run_nope")
    assert missing.found is None and missing.call.outcome.category is Category.MISSING_DEPENDENCY


def test_payroll_run_list_refuses_a_bad_window(payroll_sandbox: str) -> None:
    response = httpx.get(f"{payroll_sandbox}/v1/payroll_runs", params={"limit": "0"},
                         headers={"Authorization": f"Bearer {PAYROLL_KEY}"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_param"
    unauthorised = httpx.get(f"{payroll_sandbox}/v1/payroll_runs")
    assert unauthorised.status_code == 401
