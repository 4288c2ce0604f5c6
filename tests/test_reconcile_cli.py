"""`workbench reconcile` and `workbench drift` on both backends, against localstripe through the
connection's own client (base URL from its settings, API key from its vault)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from adapters.stripe.client import StripeClient
from tests.stripe_servers import API_KEY, localstripe, localstripe_server
from tests.support import add_stripe
from tests.test_reconcile import make_intents, stripe
from workbench.cli.main import cli
from workbench.services import provider_calls, secret_refs
from workbench.services.context import ServiceContext
from workbench.vault import KdfParams, create, vault_path

__all__ = ["localstripe", "localstripe_server", "stripe"]  # fixtures are used by name

PASS = "correct horse battery"


def wb(db_url: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--db", db_url, *args], input=stdin, catch_exceptions=False,
                              env={"WORKBENCH_VAULT_PASSPHRASE": PASS})


@pytest.fixture
def shop(ctx: ServiceContext, localstripe: str, stripe: StripeClient) -> list[dict[str, Any]]:
    """acme pointed at localstripe with its key in the vault, 3 intents, the last cancelled
    behind our back."""
    add_stripe(ctx)
    vault = create(vault_path("sandbox"), "sandbox", PASS, params=KdfParams(memory_kib=1024, iterations=1, lanes=1))
    secret_refs.add_secret(ctx, vault, secret_refs.plan_secret(ctx, "acme", "api_key", None), API_KEY, "test key")
    provider_calls.set_base_url(ctx, "acme", localstripe, "localstripe")
    made = make_intents(ctx, stripe, localstripe, 3)
    assert stripe.send("payment.cancel", {"payment_intent": made[2]["id"]}, reference="x",
                       idempotency_key=None).outcome.category is None
    return made


def test_reconcile_then_list_and_resolve_drift(db_url: str, shop: list[dict[str, Any]]) -> None:
    dry = wb(db_url, "reconcile", "acme", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    summary = orjson.loads(dry.stdout)
    assert (summary["dry_run"], summary["records_checked"], summary["findings"]) == (True, 3, 2)
    assert orjson.loads(wb(db_url, "drift", "--json").stdout) == []

    ran = wb(db_url, "reconcile", "acme")
    assert ran.exit_code == 0 and "3 records checked against 3 provider objects; 2 findings open (2 new)" in ran.stdout
    listed = orjson.loads(wb(db_url, "drift", "--connection", "acme", "--json").stdout)
    assert sorted((f["field"], f["ours"], f["theirs"], f["state"], f["connection"]) for f in listed) == [
        ("provider_status", "requires_confirmation", "canceled", "open", "acme"),
        ("status", "submitted", "cancelled", "open", "acme")]
    assert {"id", "connection", "record", "field", "ours", "theirs", "since", "state"} <= set(listed[0])
    text = wb(db_url, "drift")
    assert "provider_status" in text.stdout and "cancelled" in text.stdout
    status = next(f for f in listed if f["field"] == "status")

    pushed = wb(db_url, "drift", "resolve", status["id"], "--push", "--note", "we want it live")
    assert pushed.exit_code == 1 and "has no intent that sets status to 'submitted'" in pushed.stderr
    accepted = wb(db_url, "drift", "resolve", status["id"], "--accept", "--note", "cancelled by the customer")
    assert accepted.exit_code == 0 and accepted.stdout.startswith(f"{status['id']}: accepted the provider's status")

    refused = wb(db_url, "drift", "resolve", "--all", "--connection", "acme", "--escalate", "--note", "look")
    assert refused.exit_code == 2 and "1 open findings match" in refused.stderr and "--yes" in refused.stderr
    bulk = wb(db_url, "drift", "resolve", "--all", "--connection", "acme", "--accept", "--note", "all", "--yes")
    assert bulk.exit_code == 0 and "1 open findings match" in bulk.stderr
    assert orjson.loads(wb(db_url, "drift", "--json").stdout) == []
    assert len(orjson.loads(wb(db_url, "drift", "--resolved", "--json").stdout)) == 2
    clean = orjson.loads(wb(db_url, "reconcile", "acme", "--json").stdout)
    assert clean["findings"] == 0 and clean["status"] == "finished"


def test_now_records_a_request_and_usage_errors_are_one_line(db_url: str, shop: list[dict[str, Any]]) -> None:
    asked = wb(db_url, "reconcile", "acme", "--now")
    assert asked.exit_code == 0 and "requested; a running engine" in asked.stdout
    runs = orjson.loads(wb(db_url, "drift", "--runs", "--json").stdout)
    assert [(r["status"], r["connection"]) for r in runs] == [("requested", "acme")]
    for args, code in ((["reconcile", "nope"], 1), (["drift", "resolve", "drf_x", "--note", "n"], 2),
                       (["drift", "resolve", "--accept", "--note", "n"], 2),
                       (["drift", "resolve", "drf_x", "--accept", "--note", " "], 2),
                       (["reconcile", "acme", "--record", "rec_nope"], 1),
                       # A filter naming no connection is a mistake, said as such, not an empty list.
                       (["drift", "--connection", "nope"], 1), (["drift", "--runs", "--connection", "nope"], 1),
                       (["drift", "resolve", "--all", "--accept", "--note", "n", "--connection", "nope", "--yes"], 1)):
        result = wb(db_url, *args)
        assert result.exit_code == code, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
        assert API_KEY not in result.output
        if "nope" in args:
            assert "unknown connection 'nope'" in result.stderr, args


def test_a_locked_vault_is_one_line(db_url: str, shop: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(cli, ["--db", db_url, "reconcile", "acme"], env={"WORKBENCH_VAULT_PASSPHRASE": ""})
    assert result.exit_code == 1 and "needs the sandbox vault" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
