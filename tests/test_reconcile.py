"""Reconciliation runs on both backends: records built by ingest, compared with localstripe and
the payroll sandbox through their list endpoints; findings field by field, kept while true,
cleared when the sides agree again; a dry run writes none; a request waits for an engine."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from adapters.payroll.adapter import PayrollAdapter
from adapters.payroll.client import PayrollClient
from adapters.registry import AdapterRegistry
from adapters.stripe.client import StripeClient
from store.database import reading
from store.models import AuditEntry, DriftFinding, ReconcileRun
from tests.payroll_servers import PAYROLL_KEY, advance_run, payroll_sandbox, set_chaos, submit_run
from tests.stripe_servers import API_KEY, card_payment_method, localstripe, localstripe_server
from tests.support import add_stripe, capture
from workbench.services import connections, reconcile
from workbench.services.context import ServiceContext
from workbench.services.errors import NotFound
from workbench.services.ingest import ingest

__all__ = ["localstripe", "localstripe_server", "payroll_sandbox"]  # fixtures are used by name

findings_table = DriftFinding.__table__


def intent_event(obj: dict[str, Any], event_type: str = "payment_intent.created") -> dict[str, Any]:
    """The intent as the API returned it, as its webhook would carry it (localstripe sends none)."""
    return {"id": f"evt_{obj['id']}_{obj['status']}", "object": "event", "type": event_type,
            "created": obj["created"], "data": {"object": obj}, "livemode": False}


def open_findings(ctx: ServiceContext) -> list[Any]:
    with reading(ctx.engine) as conn:
        return list(conn.execute(select(findings_table).where(findings_table.c.state == "open")
                                 .order_by(findings_table.c.field)))


@pytest.fixture
def stripe(localstripe: str) -> Iterator[StripeClient]:
    client = StripeClient(base_url=localstripe, api_key=API_KEY, timeout_s=5)
    yield client
    client.close()


def make_intents(ctx: ServiceContext, stripe: StripeClient, url: str, count: int) -> list[dict[str, Any]]:
    made = []
    method = card_payment_method(url)
    for i in range(count):
        result = stripe.send("payment.create", {"amount": 1250 + i, "currency": "usd", "payment_method": method},
                             reference=f"op_{i}", idempotency_key=f"key_{i}")
        assert result.outcome.category is None and result.body is not None
        made.append(dict(result.body))
    report = ingest(ctx, "acme", [capture(intent_event(obj)) for obj in made], signatures=None)
    assert report.counts.get("applied") == count, report
    return made


def test_twenty_intents_reconciled_find_no_drift(ctx: ServiceContext, stripe: StripeClient, localstripe: str) -> None:
    add_stripe(ctx)
    make_intents(ctx, stripe, localstripe, 20)
    seen: list[tuple[int, int]] = []
    report = reconcile.reconcile(ctx, "acme", client=stripe, page_size=7, progress=lambda a, b: seen.append((a, b)))
    assert (report.status, report.records_checked, report.provider_objects, report.findings) == ("finished", 20, 20, 0)
    assert seen[-1] == (20, 20) and len(seen) >= 3
    assert open_findings(ctx) == []
    runs = reconcile.latest_runs(ctx, connection="acme")
    assert [(r["status"], r["records_checked"], r["findings"]) for r in runs] == [("finished", 20, 0)]


def test_a_cancel_behind_our_back_is_a_finding_until_the_sides_agree(ctx: ServiceContext, stripe: StripeClient,
                                                                      localstripe: str) -> None:
    add_stripe(ctx)
    made = make_intents(ctx, stripe, localstripe, 3)
    victim = made[1]["id"]
    cancelled = stripe.send("payment.cancel", {"payment_intent": victim}, reference="x", idempotency_key=None)
    assert cancelled.outcome.category is None and cancelled.body is not None
    dry = reconcile.reconcile(ctx, "acme", client=stripe, dry_run=True)
    assert dry.findings == 2 and open_findings(ctx) == []  # counted, not written
    first = reconcile.reconcile(ctx, "acme", client=stripe)
    found = open_findings(ctx)
    assert [(f.field, f.ours, f.theirs, f.provider_id) for f in found] == [
        ("provider_status", "requires_confirmation", "canceled", victim), ("status", "submitted", "cancelled", victim)]
    assert first.new_findings == 2 and found[0].run_id == first.run_id
    again = reconcile.reconcile(ctx, "acme", client=stripe)  # still true: kept, since the first run
    assert (again.findings, again.new_findings, again.cleared) == (2, 0, 0)
    assert [f.id for f in open_findings(ctx)] == [f.id for f in found]
    # The webhook we missed arrives after all: the sides agree, the findings clear.
    ingest(ctx, "acme", [capture(intent_event(dict(cancelled.body), "payment_intent.canceled"))], signatures=None)
    cleared = reconcile.reconcile(ctx, "acme", client=stripe)
    assert (cleared.findings, cleared.cleared) == (0, 2) and open_findings(ctx) == []
    with reading(ctx.engine) as conn:
        resolved = list(conn.execute(select(findings_table.c.resolution, findings_table.c.note)))
        audited = list(conn.execute(select(AuditEntry.__table__.c.action)
                                    .where(AuditEntry.__table__.c.action == "reconcile.run")).scalars())
    assert {r.resolution for r in resolved} == {"cleared"} and all(cleared.run_id in r.note for r in resolved)
    assert len(audited) == 4


def test_records_the_provider_does_not_know_and_objects_we_have_no_record_of(ctx: ServiceContext, stripe: StripeClient,
                                                                              localstripe: str) -> None:
    add_stripe(ctx)
    make_intents(ctx, stripe, localstripe, 2)
    ghost = {"id": "pi_ghost", "object": "payment_intent", "amount": 5, "currency": "usd", "status": "processing",
             "created": 1_700_000_000, "customer": None, "description": None, "last_payment_error": None}
    ingest(ctx, "acme", [capture(intent_event(ghost))], signatures=None)
    stranger = stripe.send("payment.create", {"amount": 77, "currency": "eur"}, reference="op_x", idempotency_key="kx")
    assert stranger.body is not None
    report = reconcile.reconcile(ctx, "acme", client=stripe)
    assert (report.records_checked, report.provider_objects, report.findings) == (3, 3, 2)
    by_id = {f.provider_id: f for f in open_findings(ctx)}
    assert by_id["pi_ghost"].field == "exists" and (by_id["pi_ghost"].ours, by_id["pi_ghost"].theirs) == (True, False)
    unknown = by_id[stranger.body["id"]]
    assert unknown.record_id is None and (unknown.field, unknown.ours) == ("exists", False)
    assert unknown.theirs["status"] == "submitted" and unknown.theirs["fields"]["amount"] == 77


def test_one_record_only_and_a_provider_that_cannot_be_read(ctx: ServiceContext, stripe: StripeClient,
                                                           localstripe: str) -> None:
    add_stripe(ctx)
    made = make_intents(ctx, stripe, localstripe, 2)
    stripe.send("payment.cancel", {"payment_intent": made[0]["id"]}, reference="x", idempotency_key=None)
    stripe.send("payment.cancel", {"payment_intent": made[1]["id"]}, reference="y", idempotency_key=None)
    with reading(ctx.engine) as conn:
        from store.models import ProviderRef
        refs = ProviderRef.__table__
        record = conn.execute(select(refs.c.record_id).where(refs.c.external_id == made[0]["id"])).scalar_one()
    one = reconcile.reconcile(ctx, "acme", client=stripe, record_id=record)
    assert (one.records_checked, one.findings) == (1, 2) and {f.record_id for f in open_findings(ctx)} == {record}
    with pytest.raises(NotFound):
        reconcile.reconcile(ctx, "acme", client=stripe, record_id="rec_nope")
    down = StripeClient(base_url="http://127.0.0.1:9", api_key=API_KEY, timeout_s=2)
    try:
        with pytest.raises(reconcile.ReconcileFailed) as failed:
            reconcile.reconcile(ctx, "acme", client=down)
    finally:
        down.close()
    assert "\n" not in str(failed.value) and API_KEY not in str(failed.value)
    assert reconcile.latest_runs(ctx)[0]["status"] == "failed"


def test_a_request_waits_for_an_engine_which_runs_it_once(ctx: ServiceContext, stripe: StripeClient,
                                                         localstripe: str) -> None:
    info = add_stripe(ctx)
    make_intents(ctx, stripe, localstripe, 2)
    run_id = reconcile.request_run(ctx, "acme")
    assert reconcile.latest_runs(ctx)[0]["status"] == "requested"
    done = reconcile.run_requested(ctx, info.id, client=stripe)
    assert [(r.run_id, r.status, r.records_checked) for r in done] == [(run_id, "finished", 2)]
    assert reconcile.run_requested(ctx, info.id, client=stripe) == []
    with reading(ctx.engine) as conn:
        assert conn.execute(select(ReconcileRun.__table__.c.status)).scalars().all() == ["finished"]


def test_payroll_runs_advanced_behind_our_back(ctx: ServiceContext, payroll_sandbox: str) -> None:
    connections.add_connection(ctx, "pay", "payroll", "sandbox")
    tag = uuid.uuid4().hex[:8]
    runs = [submit_run(payroll_sandbox, f"{tag}-{i}") for i in range(3)]
    events = [{"type": "payroll_run.updated", "occurred_at": f"2026-11-29T10:00:0{i}+00:00", "run": run}
              for i, run in enumerate(runs)]
    assert ingest(ctx, "pay", [capture(event) for event in events], signatures=None).counts.get("applied") == 3
    advance_run(payroll_sandbox, runs[2]["id"], "COMPLETE")
    client = PayrollClient(base_url=payroll_sandbox, api_key=PAYROLL_KEY, timeout_s=5)
    try:
        report = reconcile.reconcile(ctx, "pay", client=client)
    finally:
        client.close()
    ours = [f for f in open_findings(ctx) if f.record_id is not None]
    assert [(f.field, f.ours, f.theirs) for f in ours] == [("provider_status", "SENT", "COMPLETE"),
                                                            ("status", "submitted", "completed")]
    assert report.records_checked == 3
    # Runs other tests made in this module's sandbox are objects we have no record of.
    assert all(f.field == "exists" for f in open_findings(ctx) if f.record_id is None)


def test_schema_drift_at_the_provider_is_reported_not_taken_for_missing_records(ctx: ServiceContext,
                                                                               payroll_sandbox: str) -> None:
    connections.add_connection(ctx, "pay", "payroll", "sandbox")
    tag = uuid.uuid4().hex[:8]
    run = submit_run(payroll_sandbox, f"{tag}-drift")
    ingest(ctx, "pay", [capture({"type": "payroll_run.updated", "occurred_at": "2026-11-29T10:00:00+00:00",
                                 "run": run})], signatures=None)
    set_chaos(payroll_sandbox, drift="field")  # `amount` renamed `gross_amount` in every answer
    client = PayrollClient(base_url=payroll_sandbox, api_key=PAYROLL_KEY, timeout_s=5)
    try:
        report = reconcile.reconcile(ctx, "pay", client=client)
    finally:
        client.close()
        set_chaos(payroll_sandbox, drift=None)
    assert report.status == "finished" and report.unreadable_total >= 1
    assert f"{run['id']}: payroll run has no `amount`" in report.unreadable
    assert [f for f in open_findings(ctx) if f.record_id is not None] == []  # not "unknown to them"


class LookupOnlyPayroll(PayrollAdapter):
    """The payroll adapter declaring no list endpoint: reconciliation must fetch run by run."""

    capabilities = dataclasses.replace(PayrollAdapter.capabilities, reconcile_by="lookup")


def test_a_provider_without_a_list_is_reconciled_one_lookup_per_record(ctx: ServiceContext,
                                                                      payroll_sandbox: str) -> None:
    lookup_ctx = dataclasses.replace(ctx, adapters=AdapterRegistry({"payroll": LookupOnlyPayroll()}))
    connections.add_connection(lookup_ctx, "pay", "payroll", "sandbox")
    tag = uuid.uuid4().hex[:8]
    runs = [submit_run(payroll_sandbox, f"{tag}-{i}") for i in range(3)]
    gone = {**runs[0], "id": "run_never_made", "reference": f"{tag}-gone"}
    ingest(lookup_ctx, "pay", [capture({"type": "payroll_run.updated", "occurred_at": f"2026-11-29T10:00:0{i}+00:00",
                                        "run": run}) for i, run in enumerate([*runs, gone])], signatures=None)
    advance_run(payroll_sandbox, runs[1]["id"], "ACKNOWLEDGED")
    client = PayrollClient(base_url=payroll_sandbox, api_key=PAYROLL_KEY, timeout_s=5)
    try:
        report = reconcile.reconcile(lookup_ctx, "pay", client=client, page_size=2)
    finally:
        client.close()
    # Only our 4 records are looked at: the sandbox's other runs are not listed, so not seen.
    assert (report.records_checked, report.provider_objects) == (4, 3)
    assert sorted((f.provider_id, f.field, f.ours, f.theirs) for f in open_findings(ctx)) == [
        (runs[1]["id"], "provider_status", "SENT", "ACKNOWLEDGED"), (runs[1]["id"], "status", "submitted", "processing"),
        ("run_never_made", "exists", True, False)]


def test_a_run_stopped_half_way_is_recorded_failed_not_left_running(ctx: ServiceContext, stripe: StripeClient,
                                                                    localstripe: str) -> None:
    add_stripe(ctx)
    make_intents(ctx, stripe, localstripe, 3)

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reconcile.reconcile(ctx, "acme", client=stripe, page_size=1, progress=interrupt)
    [run] = reconcile.latest_runs(ctx)
    assert (run["status"], run["error"]) == ("failed", "stopped by KeyboardInterrupt")


def test_a_record_made_while_the_list_is_read_is_not_called_unknown(ctx: ServiceContext, stripe: StripeClient,
                                                                  localstripe: str) -> None:
    add_stripe(ctx)
    make_intents(ctx, stripe, localstripe, 2)
    late = {"id": "pi_late", "object": "payment_intent", "amount": 5, "currency": "usd", "status": "processing",
            "created": 1_700_000_000, "customer": None, "description": None, "last_payment_error": None}

    def webhook_meanwhile(done: int, total: int) -> None:  # after the first page: a webhook lands
        if done == 1:
            ingest(ctx, "acme", [capture(intent_event(late))], signatures=None)

    report = reconcile.reconcile(ctx, "acme", client=stripe, page_size=1, progress=webhook_meanwhile)
    assert report.findings == 0 and open_findings(ctx) == []
    assert reconcile.reconcile(ctx, "acme", client=stripe).findings == 1  # the next run sees it
