"""Resolving drift findings on both backends, each audited: accept (a transition with cause
reconciliation; a record made for an object we did not know), push (a command in the outbox
with the adapter's intent, or one line saying there is none), escalate (needs_review with an
open failure saying why). After accept or a dispatched push, reconciliation agrees."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from adapters.payroll.client import PayrollClient
from adapters.stripe.client import StripeClient
from store.database import reading
from store.models import AuditEntry, Command, Failure, ProviderRef, Record, Transition
from tests.payroll_servers import PAYROLL_KEY, payroll_sandbox, submit_run
from tests.stripe_servers import localstripe, localstripe_server
from tests.support import acting_as, add_stripe, capture
from tests.test_reconcile import intent_event, make_intents, stripe
from workbench.services import connections, drift, reconcile, timeline
from workbench.services.access import AccessDenied
from workbench.services.context import ServiceContext
from workbench.services.errors import InvalidArgument
from workbench.services.ingest import ingest

__all__ = ["localstripe", "localstripe_server", "payroll_sandbox", "stripe"]  # fixtures are used by name


def record_of(ctx: ServiceContext, provider_id: str) -> Any:
    refs, records = ProviderRef.__table__, Record.__table__
    with reading(ctx.engine) as conn:
        return conn.execute(select(records).join(refs, refs.c.record_id == records.c.id)
                            .where(refs.c.external_id == provider_id)).one()


def audited(ctx: ServiceContext, action: str) -> list[Any]:
    entries = AuditEntry.__table__
    with reading(ctx.engine) as conn:
        return list(conn.execute(select(entries).where(entries.c.action == action)))


def drifted(ctx: ServiceContext, stripe: StripeClient, url: str) -> tuple[str, dict[str, Any]]:
    """Two intents; the second cancelled at the provider behind our back, and reconciled."""
    add_stripe(ctx)
    made = make_intents(ctx, stripe, url, 2)
    victim = made[1]["id"]
    assert stripe.send("payment.cancel", {"payment_intent": victim}, reference="x",
                       idempotency_key=None).outcome.category is None
    reconcile.reconcile(ctx, "acme", client=stripe)
    return victim, {f["field"]: f for f in drift.list_findings(ctx, connection="acme")}


def test_accept_takes_the_providers_value_through_a_reconciliation_transition(
        ctx: ServiceContext, stripe: StripeClient, localstripe: str) -> None:
    victim, found = drifted(ctx, stripe, localstripe)
    assert set(found) == {"status", "provider_status"}
    result = drift.resolve(ctx, [found["status"]["id"]], "accept", "the customer cancelled by phone")
    assert result.done == [found["status"]["id"]] and not result.skipped
    record = record_of(ctx, victim)
    assert record.status == "cancelled" and record.fields["provider_status"] == "requires_confirmation"
    with reading(ctx.engine) as conn:
        last = conn.execute(select(Transition.__table__).where(Transition.__table__.c.record_id == record.id)
                            .order_by(Transition.__table__.c.version.desc())).first()
    assert last is not None and (last.cause, last.actor, last.to_status) == ("reconciliation", "user:tester", "cancelled")
    drift.resolve(ctx, [found["provider_status"]["id"]], "accept", "and its status text")
    assert record_of(ctx, victim).fields["provider_status"] == "canceled"
    entries = audited(ctx, "drift.accept")
    assert [e.after["finding"] for e in entries] == [found["status"]["id"], found["provider_status"]["id"]]
    assert {(e.target_type, e.target_id) for e in entries} == {("record", record.id)}
    assert "the customer cancelled by phone" in entries[0].reason
    shown = timeline.load_timeline(ctx, record.id).entries
    assert any(e.kind == "audit" and "drift.accept" in e.summary and "cancelled by phone" in e.summary for e in shown)
    resolved = drift.list_findings(ctx, state="resolved")
    assert {(f["resolution"], f["resolved_by"]) for f in resolved} == {("accept", "user:tester")}
    again = reconcile.reconcile(ctx, "acme", client=stripe)
    assert (again.findings, again.cleared) == (0, 0)
    twice = drift.resolve(ctx, [found["status"]["id"]], "accept", "again")
    assert twice.done == [] and "resolved already" in twice.skipped[0][1]


def test_push_puts_the_adapters_command_in_the_outbox_or_says_there_is_none(
        ctx: ServiceContext, stripe: StripeClient, localstripe: str) -> None:
    add_stripe(ctx)
    made = make_intents(ctx, stripe, localstripe, 1)
    pid = made[0]["id"]
    # We believe it cancelled (an event said so); the provider never heard.
    ingest(ctx, "acme", [capture(intent_event({**made[0], "status": "canceled", "created": made[0]["created"] + 5},
                                              "payment_intent.canceled"))], signatures=None)
    changed = intent_event({**made[0], "amount": 1, "status": "canceled", "created": made[0]["created"] + 9},
                           "payment_intent.canceled")
    ingest(ctx, "acme", [capture({**changed, "id": "evt_amount_changed"})], signatures=None)
    reconcile.reconcile(ctx, "acme", client=stripe)
    found = {f["field"]: f for f in drift.list_findings(ctx)}
    assert (found["status"]["ours"], found["status"]["theirs"]) == ("cancelled", "submitted")
    result = drift.resolve(ctx, [found["status"]["id"], found["amount"]["id"]], "push", "we cancelled it")
    assert result.done == [found["status"]["id"]]
    assert result.skipped == [(found["amount"]["id"], "the stripe adapter has no intent that sets amount to 1 at the "
                                                      "provider; accept or escalate instead")]
    commands = Command.__table__
    with reading(ctx.engine) as conn:
        command = conn.execute(select(commands)).one()
    assert (command.intent, command.payload, command.status) == ("payment.cancel", {"payment_intent": pid}, "pending")
    assert command.record_id == record_of(ctx, pid).id
    assert command.id in result.messages[found["status"]["id"]]
    # The engine's dispatcher (not on this branch) sends it; then the provider agrees.
    assert stripe.send(command.intent, command.payload, reference=command.operation_id,
                       idempotency_key=command.idempotency_key).outcome.category is None
    after = reconcile.reconcile(ctx, "acme", client=stripe)
    assert [f["field"] for f in drift.list_findings(ctx)] == ["amount"] and after.cleared == 1
    assert [e.after["finding"] for e in audited(ctx, "drift.push")] == [found["status"]["id"]]


def test_escalate_puts_the_record_in_review_with_an_open_failure(ctx: ServiceContext, stripe: StripeClient,
                                                                localstripe: str) -> None:
    victim, found = drifted(ctx, stripe, localstripe)
    result = drift.resolve(ctx, [found["status"]["id"]], "escalate", "cancelled without a ticket")
    assert result.done and "needs_review" in result.messages[found["status"]["id"]]
    record = record_of(ctx, victim)
    assert record.status == "needs_review"
    failures = Failure.__table__
    with reading(ctx.engine) as conn:
        failure = conn.execute(select(failures).where(failures.c.record_id == record.id)).one()
    assert failure.category == "business_rule_rejection" and failure.state == "needs_review"
    assert "ours 'submitted', the provider's 'cancelled'" in failure.message
    assert "cancelled without a ticket" in failure.message
    assert [(e.after["finding"], e.target_id) for e in audited(ctx, "drift.escalate")] == [
        (found["status"]["id"], record.id)]


def test_an_object_we_had_no_record_of_is_accepted_as_a_new_record(ctx: ServiceContext, stripe: StripeClient,
                                                                  localstripe: str) -> None:
    add_stripe(ctx)
    stranger = stripe.send("payment.create", {"amount": 77, "currency": "eur"}, reference="op_x", idempotency_key="kx")
    assert stranger.body is not None
    reconcile.reconcile(ctx, "acme", client=stripe)
    (finding,) = drift.list_findings(ctx)
    assert (finding["record"], finding["field"], finding["ours"]) == (None, "exists", False)
    result = drift.resolve(ctx, [finding["id"]], "accept", "made in the dashboard")
    record = record_of(ctx, stranger.body["id"])
    assert (record.status, record.fields["amount"]) == ("submitted", 77)
    assert record.id in result.messages[finding["id"]]
    assert reconcile.reconcile(ctx, "acme", client=stripe).findings == 0


def test_refusals_are_one_line_and_change_nothing(ctx: ServiceContext, stripe: StripeClient, localstripe: str) -> None:
    victim, found = drifted(ctx, stripe, localstripe)
    with pytest.raises(InvalidArgument):
        drift.resolve(ctx, [found["status"]["id"]], "accept", "  ")
    with pytest.raises(InvalidArgument):
        drift.resolve(ctx, [found["status"]["id"]], "ignore", "why not")
    viewer = acting_as(ctx, "user:vic", "viewer")
    with pytest.raises(AccessDenied):
        drift.resolve(viewer, [found["status"]["id"]], "accept", "looks right")
    missing = drift.resolve(ctx, ["drf_nope"], "escalate", "x")
    assert missing.skipped == [("drf_nope", "no drift finding 'drf_nope'")]
    assert record_of(ctx, victim).status == "submitted" and len(drift.list_findings(ctx)) == 2
    assert drift.matching_ids(ctx, connection="acme", field_name="status") == [found["status"]["id"]]


def test_payroll_push_cancels_the_run_at_the_sandbox(ctx: ServiceContext, payroll_sandbox: str) -> None:
    connections.add_connection(ctx, "pay", "payroll", "sandbox")
    run = submit_run(payroll_sandbox, f"{uuid.uuid4().hex[:8]}-push")
    # Our belief: cancelled (an operator's event); the provider never heard of it.
    ingest(ctx, "pay", [capture({"type": "payroll_run.updated", "occurred_at": "2026-11-29T10:00:00+00:00",
                                 "run": {**run, "status": "CANCELLED"}})], signatures=None)
    client = PayrollClient(base_url=payroll_sandbox, api_key=PAYROLL_KEY, timeout_s=5)
    try:
        reconcile.reconcile(ctx, "pay", client=client)
        status = next(f for f in drift.list_findings(ctx, connection="pay")
                      if f["field"] == "status" and f["provider_id"] == run["id"])
        assert (status["ours"], status["theirs"]) == ("cancelled", "submitted")
        assert drift.resolve(ctx, [status["id"]], "push", "payday was called off").done == [status["id"]]
        with reading(ctx.engine) as conn:
            command = conn.execute(select(Command.__table__)).one()
        assert (command.intent, command.payload) == ("payroll_run.cancel", {"run_id": run["id"]})
        sent = client.send(command.intent, command.payload, reference=command.operation_id, idempotency_key=None)
        assert sent.outcome.category is None
        cancelled = [e for e in httpx.get(f"{payroll_sandbox}/_admin/ledger").json()["entries"]
                     if e["action"] == "run.cancelled" and e["run_id"] == run["id"]]
        assert len(cancelled) == 1
        reconcile.reconcile(ctx, "pay", client=client)
    finally:
        client.close()
    assert [f for f in drift.list_findings(ctx, connection="pay") if f["provider_id"] == run["id"]] == []
