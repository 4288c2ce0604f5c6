"""Canaries in every field a provider controls never reach any output: every CLI listing,
detail, timeline, diff, export and triage message (the TUI's screens: tests/tui/test_redaction_screens.py)."""

from __future__ import annotations

import gc

import orjson
import pytest
from click.testing import CliRunner, Result

from tests.canaries import SECRETS, assert_no_canary, canary_captures, canary_lines
from tests.support import add_stripe
from workbench.cli.main import cli
from workbench.domain.redaction import MASK
from workbench.services import queries, views
from workbench.services.ingest import ingest


@pytest.fixture(autouse=True)
def _release_engines():
    yield
    gc.collect(1)  # each invocation opened its own engine (in a reference cycle): close them


def wb(db_url: str, *args: str, input: bytes | None = None) -> Result:
    result = CliRunner().invoke(cli, ["--db", db_url, *args], input=input, catch_exceptions=False)
    assert_no_canary(result.output, " ".join(args))
    return result


@pytest.fixture
def canary_store(db_url: str) -> str:
    assert wb(db_url, "db", "upgrade").exit_code == 0
    assert wb(db_url, "connection", "add", "acme", "--provider", "stripe").exit_code == 0
    result = wb(db_url, "ingest", "acme", "-", input=canary_lines())
    assert result.exit_code == 0, result.output
    return db_url


def _ids(db_url: str, *listing: str) -> list[str]:
    result = wb(db_url, *listing, "--json")
    assert result.exit_code == 0
    return [item["id"] for item in orjson.loads(result.stdout)]


def test_no_canary_reaches_any_cli_output(canary_store: str) -> None:
    db = canary_store
    events = orjson.loads(wb(db, "events", "--json").stdout)
    assert len(events) == 21
    # Each provider-controlled field held a canary somewhere, and shows masked, not dropped.
    for key in ("provider_event_id", "event_type", "verdict_reason"):
        assert any(MASK in (event[key] or "") for event in events), key
    records = orjson.loads(wb(db, "records", "--json").stdout)
    assert any(ref["external_id"] == MASK for record in records for ref in record["provider_refs"])
    failures = _ids(db, "failures")
    assert failures  # unknown statuses and the non-JSON body
    wb(db, "failures", "groups")
    shown = [wb(db, "failures", "show", failure) for failure in failures]
    assert all(result.exit_code == 0 for result in shown)
    assert sum(MASK in result.output for result in shown) == 5  # one a canary status
    for record in [r["id"] for r in records]:
        assert wb(db, "timeline", record).exit_code == 0
        assert wb(db, "timeline", record, "--json").exit_code == 0
    retried = wb(db, "failures", "retry", *failures, "--note", f"customer sent {SECRETS[0]}")
    assert retried.exit_code in (0, 1) and "retry:" in retried.output
    exported = wb(db, "events", "--connection", "acme", "--captures")
    assert exported.exit_code == 0 and exported.stdout.count("\n") == 21
    assert wb(db, "audit", "export").exit_code == 0
    # An error quoting a provider's value is a one-line error without the secret.
    refused = wb(db, "timeline", SECRETS[0])
    assert refused.exit_code != 0 or MASK in refused.output


def test_a_16_digit_order_id_that_fails_luhn_stays_readable(db_url: str) -> None:
    assert wb(db_url, "db", "upgrade").exit_code == 0
    assert wb(db_url, "connection", "add", "acme", "--provider", "stripe").exit_code == 0
    line = orjson.dumps({"received_at": "2026-11-01T12:00:00+00:00", "headers": {},
                         "body": orjson.dumps({"id": "evt_1", "object": "event", "type": "payment_intent.succeeded",
                                               "created": 1793534400, "data": {"object": {
                                                   "id": "pi_1", "object": "payment_intent", "amount": 1,
                                                   "currency": "usd", "status": "succeeded",
                                                   "description": "order 1234 5678 1234 5678"}}}).decode()})
    assert wb(db_url, "ingest", "acme", "-", input=line + b"\n").exit_code == 0
    exported = wb(db_url, "events", "--connection", "acme", "--captures").stdout
    assert "order 1234 5678 1234 5678" in orjson.loads(orjson.loads(exported)["body"])["data"]["object"]["description"]


def test_no_canary_reaches_the_diff_views(ctx) -> None:
    add_stripe(ctx)
    ingest(ctx, "acme", canary_captures())
    events = list(queries.iter_events(ctx))
    pairs = [views.deliveries_pair(ctx, left["id"], right["id"]) for left, right in zip(events, events[1:], strict=False)]
    for event in events:
        if event["verdict"] == "applied":
            pairs.append(views.delivery_against_state(ctx, event["id"], event["record_id"]))
    for pair in pairs:
        for side in (pair.left, pair.right):
            assert_no_canary(side.title + views.pretty_json(side.value), f"diff side {side.ref}")


def test_skipped_capture_lines_are_reported_without_their_secrets(db_url: str) -> None:
    assert wb(db_url, "db", "upgrade").exit_code == 0
    assert wb(db_url, "connection", "add", "acme", "--provider", "stripe").exit_code == 0
    lines = b"".join(orjson.dumps(line) + b"\n" for line in (
        {"received_at": SECRETS[0], "headers": {}, "body": "x"},
        {"received_at": f"2026-11-01T12:00:00Z {SECRETS[3]}", "headers": {}, "body": "x"},
        {"received_at": "2026-11-01T12:00:00Z", "headers": {SECRETS[4]: 1}, "body": "x"},
    ))
    result = wb(db_url, "ingest", "acme", "-", input=lines + f'{{"a": {SECRETS[0]}}}\n'.encode())
    assert result.exit_code == 3 and result.output.count("skipped") == 4
