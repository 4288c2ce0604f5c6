"""A connection's client for its provider, on both backends: the base URL from its versioned
settings (`--base-url`, validated), the API key from its active reference through an unlocked
vault, and a clear one-line refusal when either is missing; the key never shown."""

from __future__ import annotations

import gc
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from adapters.stripe.client import STRIPE_API, StripeClient
from tests.stripe_servers import (
    API_KEY,
    StatusServer,
    card_payment_method,
    localstripe,
    localstripe_server,
    status_server,
)
from tests.support import acting_as, add_stripe
from workbench.cli.main import cli
from workbench.services import connections, provider_calls, secret_refs
from workbench.services.access import AccessDenied
from workbench.services.context import ServiceContext
from workbench.services.errors import InvalidArgument
from workbench.vault import KdfParams, UnlockedVault, create, vault_path

__all__ = ["localstripe", "localstripe_server", "status_server"]  # fixtures, imported to be found

PASS = "correct horse battery"
CHEAP = KdfParams(memory_kib=1024, iterations=1, lanes=1)


def _vault_with_key(ctx: ServiceContext, name: str = "acme") -> UnlockedVault:
    vault = create(vault_path("sandbox"), "sandbox", PASS, params=CHEAP)
    plan = secret_refs.plan_secret(ctx, name, "api_key", None)
    secret_refs.add_secret(ctx, vault, plan, API_KEY, "test key")
    return vault


def test_a_client_for_a_connection_calls_its_base_url_with_the_vaults_key(ctx: ServiceContext, localstripe: str) -> None:
    add_stripe(ctx)
    vault = _vault_with_key(ctx)
    info = provider_calls.set_base_url(ctx, "acme", localstripe + "/", "point at localstripe")
    assert info.settings["api"] == {"base_url": localstripe}  # stored without the trailing slash
    client = provider_calls.open_client(ctx, "acme", {"sandbox": vault}, timeout_s=5)
    try:
        result = client.send("payment.create", {"amount": 500, "currency": "eur",
                                                "payment_method": card_payment_method(localstripe)},
                             reference="cmd_service", idempotency_key="k")
        assert result.outcome.category is None and result.body is not None
        assert client.lookup("cmd_service").outcome.category is None
    finally:
        client.close()


def test_the_real_api_is_the_default(ctx: ServiceContext) -> None:
    add_stripe(ctx)
    vault = _vault_with_key(ctx)
    client = provider_calls.open_client(ctx, "acme", {"sandbox": vault})
    assert isinstance(client, StripeClient) and client.base_url == STRIPE_API
    client.close()


def test_no_key_a_locked_vault_or_no_role_is_one_clear_line(ctx: ServiceContext) -> None:
    add_stripe(ctx)
    with pytest.raises(provider_calls.ProviderUnavailable) as no_key:
        provider_calls.open_client(ctx, "acme", {})
    assert str(no_key.value) == ("acme has no active API key: add one with "
                                 "`workbench connection secret add acme --kind api_key`")
    _vault_with_key(ctx)
    with pytest.raises(provider_calls.ProviderUnavailable) as locked:
        provider_calls.open_client(ctx, "acme", {})
    assert "needs the sandbox vault" in str(locked.value) and "\n" not in str(locked.value)
    assert API_KEY not in str(locked.value)
    viewer = acting_as(ctx, "user:vic", "viewer")
    with pytest.raises(AccessDenied):
        provider_calls.open_client(viewer, "acme", {})


def test_the_key_is_never_in_an_outcome_even_when_the_server_echoes_it(ctx: ServiceContext,
                                                                       status_server: StatusServer) -> None:
    add_stripe(ctx)
    vault = _vault_with_key(ctx)
    provider_calls.set_base_url(ctx, "acme", f"{status_server.url}/status/401", "echoing server")
    client = provider_calls.open_client(ctx, "acme", {"sandbox": vault})
    result = client.retrieve("pi_1") if isinstance(client, StripeClient) else None
    client.close()
    assert result is not None and result.outcome.category is not None
    assert status_server.seen_headers[-1]["Authorization"] == f"Bearer {API_KEY}"  # it was sent...
    assert API_KEY not in repr(result.outcome)  # ...and is not repeated
    assert API_KEY not in repr(connections.get_connection(ctx, "acme").settings)


@pytest.mark.parametrize("url", ["ftp://example.com", "http://user:sk_live_x@example.com", "example.com",
                                 "http://example.com:99999", "https://example.com/?a=1", "http://exa mple.com", ""])
def test_bad_base_urls_are_refused_and_nothing_changes(ctx: ServiceContext, url: str) -> None:
    add_stripe(ctx)
    with pytest.raises(InvalidArgument) as refused:
        provider_calls.set_base_url(ctx, "acme", url, "bad")
    assert str(refused.value).startswith("--base-url: ") and "sk_live_x" not in str(refused.value)
    assert connections.get_connection(ctx, "acme").version == 1


def test_base_url_changes_are_versions_and_resetting_restores_the_default(ctx: ServiceContext) -> None:
    add_stripe(ctx)
    assert provider_calls.set_base_url(ctx, "acme", "http://127.0.0.1:8420", "local").version == 2
    assert provider_calls.set_base_url(ctx, "acme", "http://127.0.0.1:8420", "same").version == 2  # no change
    info = provider_calls.set_base_url(ctx, "acme", None, "back to Stripe")
    assert info.version == 3 and "api" not in info.settings and provider_calls.base_url(info.settings) is None
    assert [entry["reason"] for entry in connections.history(ctx, "acme")][-2:] == ["local", "back to Stripe"]


# -- the command line -----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _release_engines():
    yield
    gc.collect(1)


def wb(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", db_url, *args], catch_exceptions=False)


def test_base_url_on_the_command_line(db_url: str, tmp_path: Path) -> None:
    assert wb(db_url, "db", "upgrade").exit_code == 0
    added = wb(db_url, "connection", "add", "acme", "--provider", "stripe", "--base-url", "http://127.0.0.1:8420/")
    assert added.exit_code == 0 and "API calls go to http://127.0.0.1:8420" in added.stdout
    shown = orjson.loads(wb(db_url, "connection", "show", "acme", "--json").stdout)
    assert shown["version"] == 1 and shown["settings"]["api"] == {"base_url": "http://127.0.0.1:8420"}

    moved = wb(db_url, "connection", "set", "acme", "--base-url", "https://stripe.internal.example", "--reason", "proxy")
    assert moved.exit_code == 0 and moved.stdout.strip() == (
        "acme set (version 2): API calls go to https://stripe.internal.example")
    back = wb(db_url, "connection", "set", "acme", "--real-api", "--reason", "live again")
    assert back.stdout.strip() == "acme set (version 3): API calls go to the provider's real API"

    for args in (["connection", "set", "acme", "--base-url", "ftp://x", "--reason", "r"],
                 ["connection", "add", "beta", "--provider", "stripe", "--base-url", "http://u:pw@h"]):
        refused = wb(db_url, *args)
        assert refused.exit_code != 0 and refused.stdout == ""
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --base-url: ") and "pw" not in lines[0]
    assert "beta" not in wb(db_url, "connection", "list").stdout
    both = wb(db_url, "connection", "set", "acme", "--base-url", "http://h", "--real-api", "--reason", "r")
    assert both.exit_code != 0 and "not both" in both.stderr

    # The setting travels with an export and imports back as "no changes".
    wb(db_url, "connection", "set", "acme", "--base-url", "http://127.0.0.1:9", "--reason", "r")
    exported = tmp_path / "acme.toml"
    assert wb(db_url, "connection", "export", "acme", "-o", str(exported)).exit_code == 0
    assert 'base_url = "http://127.0.0.1:9"' in exported.read_text()
    again = wb(db_url, "connection", "import", str(exported), "--yes")
    assert again.exit_code == 0, again.output
    assert orjson.loads(wb(db_url, "connection", "show", "acme", "--json").stdout)["version"] == 4
