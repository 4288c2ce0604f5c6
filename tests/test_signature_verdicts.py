"""Signature verdicts in ingest of captures (and held deliveries): verified, failed (rejected,
no state change, a failure naming the secret tried) or unchecked, on both backends."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import orjson
import pytest
import stripe
from sqlalchemy import select

from store.database import reading
from store.models import Delivery, Failure, Record
from tests.support import T0, FixedClock, add_stripe, capture, pi_event
from workbench.services import connections, secret_refs
from workbench.services.context import ServiceContext
from workbench.services.ingest import ingest
from workbench.services.signatures import SignaturesLocked
from workbench.vault import KdfParams, UnlockedVault, create, vault_path

SECRET = "whsec_test_signing_secret_one"
CHEAP = KdfParams(memory_kib=1024, iterations=1, lanes=1)


@pytest.fixture
def clocked(ctx: ServiceContext) -> ServiceContext:
    return replace(ctx, clock=FixedClock(T0))


def make_vault() -> UnlockedVault:
    return create(vault_path("sandbox"), "sandbox", "pass phrase here", params=CHEAP)


def with_secret(ctx: ServiceContext, value: str = SECRET) -> tuple[UnlockedVault, str]:
    add_stripe(ctx)
    vault = make_vault()
    ref = secret_refs.add_secret(ctx, vault, secret_refs.plan_secret(ctx, "acme", "webhook_secret", None), value, "t")
    return vault, ref.name


def signed(event: dict, secret: str = SECRET, at=T0 + timedelta(minutes=5), signed_at=None):
    body = orjson.dumps(event)
    ts = int((signed_at or at).timestamp())
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=ts)
    return capture(body, at, headers={"Content-Type": "application/json", "Stripe-Signature": header})


def rows(ctx: ServiceContext) -> list[Any]:
    with reading(ctx.engine) as conn:
        return list(conn.execute(select(Delivery.__table__).order_by(Delivery.__table__.c.id)).all())


def test_verified_applies_and_a_bad_signature_is_rejected_without_a_state_change(clocked):
    vault, name = with_secret(clocked)
    genuine = signed(pi_event("evt_1", "pi_1", "processing", 1))
    forged = signed(pi_event("evt_2", "pi_1", "succeeded", 2), secret="whsec_attacker")
    report = ingest(clocked, "acme", [genuine, forged], vaults={"sandbox": vault})
    assert report.counts == {"applied": 1, "rejected": 1}
    stored = rows(clocked)
    assert [(r.signature_verdict, r.verdict) for r in stored] == [("verified", "applied"), ("failed", "rejected")]
    assert [r.signature_secret for r in stored] == [name, name]  # the secret that matched, the one tried
    assert name in stored[1].verdict_reason and SECRET not in stored[1].verdict_reason
    assert stored[1].record_id is None and stored[1].dedupe_key is None
    with reading(clocked.engine) as conn:
        assert conn.execute(select(Record.__table__.c.status)).scalars().all() == ["processing"]
        failures = conn.execute(select(Failure.__table__)).all()
    assert [(f.category, f.delivery_id) for f in failures] == [("authentication", stored[1].id)]
    assert name in failures[0].message and SECRET not in failures[0].message


def test_a_forged_copy_claims_no_event_so_the_genuine_one_still_applies(clocked):
    vault, _ = with_secret(clocked)
    event = pi_event("evt_1", "pi_1", "succeeded", 1)
    counts = ingest(clocked, "acme", [signed(event, secret="whsec_wrong"), signed(event)], vaults={"sandbox": vault}).counts
    assert counts == {"rejected": 1, "applied": 1}


def test_the_timestamp_is_judged_against_receipt_not_now(clocked):
    vault, _ = with_secret(clocked)
    long_ago = T0 - timedelta(days=30)  # captured a month ago, ingested now: still verified
    late = signed(pi_event("evt_1", "pi_1", "processing", 1), at=long_ago)
    replayed = signed(pi_event("evt_2", "pi_2", "processing", 1), at=long_ago, signed_at=long_ago - timedelta(minutes=6))
    assert ingest(clocked, "acme", [late, replayed], vaults={"sandbox": vault}).counts == {"applied": 1, "rejected": 1}
    assert "tolerance 300 s" in rows(clocked)[1].verdict_reason


def test_missing_header_fails_and_no_secret_means_unchecked(clocked):
    vault, _ = with_secret(clocked)
    plain = capture(pi_event("evt_1", "pi_1", "processing", 1))
    assert ingest(clocked, "acme", [plain], vaults={"sandbox": vault}).counts == {"rejected": 1}
    assert "no stripe-signature header" in rows(clocked)[0].verdict_reason
    connections.add_connection(clocked, "other", "stripe")
    assert ingest(clocked, "other", [plain]).counts == {"applied": 1}
    assert (rows(clocked)[-1].signature_verdict, rows(clocked)[-1].signature_secret) == ("unchecked", None)


def test_a_locked_vault_stops_before_anything_is_stored(clocked):
    with_secret(clocked)
    with pytest.raises(SignaturesLocked, match="vault, which is locked: set WORKBENCH_VAULT_PASSPHRASE"):
        ingest(clocked, "acme", [signed(pi_event("evt_1", "pi_1", "processing", 1))])
    assert rows(clocked) == []


def test_a_paused_connection_rejects_bad_signatures_at_once_and_keeps_verdicts_on_resume(clocked):
    vault, name = with_secret(clocked)
    connections.set_paused(clocked, "acme", True, "maintenance")
    good = signed(pi_event("evt_1", "pi_1", "processing", 1))
    bad = signed(pi_event("evt_2", "pi_1", "succeeded", 2), secret="whsec_wrong")
    assert ingest(clocked, "acme", [good, bad], vaults={"sandbox": vault}).counts == {"held": 1, "rejected": 1}
    connections.set_paused(clocked, "acme", False, "done")
    assert sorted((r.signature_verdict, r.verdict, r.signature_secret) for r in rows(clocked)) == [
        ("failed", "rejected", name), ("verified", "applied", name)]
    with reading(clocked.engine) as conn:
        assert conn.execute(select(Record.__table__.c.status)).scalars().all() == ["processing"]


def test_retrying_a_signature_failure_rejects_the_copy_again_and_changes_nothing(clocked):
    from workbench.services import triage

    vault, name = with_secret(clocked)
    forged = signed(pi_event("evt_9", "pi_9", "succeeded", 9), secret="whsec_attacker")
    ingest(clocked, "acme", [forged], vaults={"sandbox": vault})
    with reading(clocked.engine) as conn:
        failure_id = conn.execute(select(Failure.__table__.c.id)).scalar_one()
    triage.retry(clocked, [failure_id], "try again", vaults={"sandbox": vault})
    stored = rows(clocked)
    assert [(r.signature_verdict, r.verdict) for r in stored] == [("failed", "rejected"), ("failed", "rejected")]
    assert stored[1].replay_of == stored[0].id
    assert [r.signature_secret for r in stored] == [name, name]
    with reading(clocked.engine) as conn:
        assert conn.execute(select(Record.__table__)).all() == []



def test_the_timeline_and_the_payload_show_each_deliverys_signature_and_secret_name(clocked):
    from workbench.services import timeline

    vault, name = with_secret(clocked)
    connections.add_connection(clocked, "open", "stripe")
    ingest(clocked, "acme", [signed(pi_event("evt_1", "pi_1", "processing", 1)),
                             signed(pi_event("evt_2", "pi_1", "succeeded", 2), secret="whsec_attacker")],
           vaults={"sandbox": vault})
    ingest(clocked, "open", [capture(pi_event("evt_3", "pi_3", "processing", 3))])
    [verified] = [e for e in timeline.load_timeline(clocked, "pi_1").entries if e.kind == "delivery"]
    assert f"[applied] · sig verified ({name})" in verified.summary
    exported = timeline.load_timeline(clocked, "pi_1").as_dict()["entries"]
    assert [(e["detail"]["signature"], e["detail"]["signature_secret"]) for e in exported
            if e["kind"] == "delivery"] == [("verified", name)]
    [unchecked] = [e for e in timeline.load_timeline(clocked, "pi_3").entries if e.kind == "delivery"]
    assert unchecked.summary.endswith("[applied] · sig unchecked")
    assert (unchecked.detail["signature"], unchecked.detail["signature_secret"]) == ("unchecked", None)
    # The forged one belongs to no record: its payload view says which secret was tried.
    forged = next(r for r in rows(clocked) if r.signature_verdict == "failed")
    payload = timeline.delivery_payload(clocked, forged.id)
    assert (payload["signature"], payload["signature_secret"]) == ("failed", name)
    assert SECRET not in orjson.dumps(payload).decode()
