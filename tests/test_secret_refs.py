"""Secret references through the service layer, on both backends: the vault holds the value,
the connection a reference on a new version; active_secrets and secret_values are what the
webhook receiver and the sync engine call."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from tests.support import T0, FixedClock, add_stripe
from workbench.domain.connection_config import SecretRef
from workbench.domain.durations import BadDuration, parse_duration
from workbench.domain.redaction import redact_text
from workbench.services import audit, connection_config, connections, secret_refs, vault as vault_service
from workbench.services.context import ServiceContext
from workbench.services.errors import InvalidArgument, NotFound, ServiceError
from workbench.vault import KdfParams, UnlockedVault, create, vault_path

PASS = "correct horse battery"
CHEAP = KdfParams(memory_kib=1024, iterations=1, lanes=1)  # the header records them; unlock follows it


def make_vault(environment: str = "sandbox") -> UnlockedVault:
    return create(vault_path(environment), environment, PASS, params=CHEAP)


@pytest.fixture
def clocked(ctx: ServiceContext) -> ServiceContext:
    """The store's context with a clock starting at T0 and ticking a second per reading."""
    from dataclasses import replace

    return replace(ctx, clock=FixedClock(T0))


def add(ctx: ServiceContext, vault: UnlockedVault, kind: str = "webhook_secret", value: str = "whsec_value_one",
        expires_in: str | None = None, name: str = "acme") -> SecretRef:
    plan = secret_refs.plan_secret(ctx, name, kind, expires_in)
    return secret_refs.add_secret(ctx, vault, plan, value, "test")


@pytest.mark.parametrize(("text", "expected"), [
    ("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
    ("2w", timedelta(weeks=2)), ("45s", timedelta(seconds=45)), ("P30D", timedelta(days=30)),
    ("PT12H", timedelta(hours=12)), ("p1dt2h", timedelta(days=1, hours=2)), (" 7D ", timedelta(days=7)),
])
def test_durations_in_every_accepted_form(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "0d", "-1d", "1x", "P", "Pxyz", "1.5d", "P99999D", "99999999w", "90 days"])
def test_durations_refused_say_what_is_accepted(text: str) -> None:
    with pytest.raises(BadDuration) as refused:
        parse_duration(text)
    assert "\n" not in str(refused.value)


def test_add_stores_the_value_in_the_vault_and_a_reference_on_a_new_version(clocked: ServiceContext) -> None:
    add_stripe(clocked)
    vault = make_vault()
    ref = add(clocked, vault, expires_in="90d")
    assert ref.name.startswith("acme-webhook-secret-20261101-") and ref.environment == "sandbox"
    long_name = "c" * 64
    connections.add_connection(clocked, long_name, "stripe")
    assert len(add(clocked, vault, "webhook_secret", "whsec_x", name=long_name).name) == 64
    assert ref.expires_at == ref.added_at + timedelta(days=90)
    assert vault.read().current(ref.name).value == "whsec_value_one"
    info = connections.get_connection(clocked, "acme")
    assert info.version == 2 and info.settings["secrets"] == [ref.as_settings()]
    assert "whsec_value_one" not in repr(info.settings)
    last = connections.history(clocked, "acme")[-1]
    assert (last["version"], last["actor"], last["reason"]) == (2, "user:tester", "test")
    assert audit.search(clocked)[0]["action"] == "connection.secret.add"


def test_generated_names_are_never_masked_by_redaction() -> None:
    # Shown in lists, diffs and exports: a name redaction masks would break an export's import.
    for connection_name in ("acme", "shop-4242424242", "c" * 64, "9" * 64):
        for kind in ("api_key", "webhook_secret"):
            for _ in range(500):
                name = secret_refs.new_secret_name(connection_name, kind, T0)
                assert len(name) <= 64 and redact_text(name) == name, name


def test_refusals_before_the_vault_is_touched(clocked: ServiceContext) -> None:
    add_stripe(clocked)
    with pytest.raises(InvalidArgument, match="unknown secret kind 'password'"):
        secret_refs.plan_secret(clocked, "acme", "password", None)
    with pytest.raises(InvalidArgument, match="--expires-in: '3 fortnights' is not a duration"):
        secret_refs.plan_secret(clocked, "acme", "api_key", "3 fortnights")
    with pytest.raises(NotFound, match="unknown connection 'nope'"):
        secret_refs.plan_secret(clocked, "nope", "api_key", None)
    with pytest.raises(InvalidArgument, match="an expiry must be after now"):
        secret_refs.plan_secret(clocked, "acme", "api_key", timedelta(0))
    live = make_vault("live")
    with pytest.raises(InvalidArgument, match="the sandbox vault, not the live one"):
        secret_refs.add_secret(clocked, live, secret_refs.plan_secret(clocked, "acme", "api_key", None), "sk_x")
    assert live.read().secrets == {}
    assert connections.get_connection(clocked, "acme").version == 1


def test_active_secrets_leave_out_expired_and_retired_ones(clocked: ServiceContext) -> None:
    add_stripe(clocked)
    vault = make_vault()
    old = add(clocked, vault, value="whsec_old", expires_in="1h")
    new = add(clocked, vault, value="whsec_new")
    retired = add(clocked, vault, value="whsec_retired")
    key = add(clocked, vault, kind="api_key", value="sk_test_key")
    secret_refs.retire_secret(clocked, "acme", retired.name, "leaked")
    now = clocked.clock()
    assert [r.name for r in secret_refs.active_secrets(clocked, "acme", "webhook_secret", now)] == [new.name, old.name]
    later = old.added_at + timedelta(hours=1)
    assert [r.name for r in secret_refs.active_secrets(clocked, "acme", "webhook_secret", later)] == [new.name]
    assert [r.name for r in secret_refs.active_secrets(clocked, "acme", "api_key", later)] == [key.name]
    states = {r.name: r.state(later) for r in secret_refs.list_secrets(clocked, "acme")}
    assert states == {old.name: "expired", new.name: "active", retired.name: "retired", key.name: "active"}
    values = secret_refs.active_secret_values(clocked, vault, "acme", "webhook_secret", now)
    assert [v.value for v in values] == ["whsec_new", "whsec_old"]
    assert "whsec_new" not in repr(values)
    with pytest.raises(InvalidArgument, match="unknown secret kind"):
        secret_refs.active_secrets(clocked, "acme", "password", now)


def test_secret_values_name_a_reference_the_vault_lost(clocked: ServiceContext) -> None:
    add_stripe(clocked)
    vault = make_vault()
    ref = add(clocked, vault)
    vault_service.remove_secret(clocked, vault, ref.name)
    with pytest.raises(NotFound, match=f"no secret '{ref.name}'"):
        secret_refs.active_secret_values(clocked, vault, "acme", "webhook_secret", clocked.clock())


def test_retire_refusals(clocked: ServiceContext) -> None:
    add_stripe(clocked)
    ref = add(clocked, make_vault())
    with pytest.raises(NotFound, match="has no secret 'nope'"):
        secret_refs.retire_secret(clocked, "acme", "nope", "why")
    with pytest.raises(NotFound, match="unknown connection"):
        secret_refs.retire_secret(clocked, "ghost", ref.name, "why")
    secret_refs.retire_secret(clocked, "acme", ref.name, "rotated")
    with pytest.raises(ServiceError, match="was retired at"):
        secret_refs.retire_secret(clocked, "acme", ref.name, "again")
    assert connections.get_connection(clocked, "acme").version == 3
    assert connections.history(clocked, "acme")[-1]["reason"] == "rotated"


def test_a_failed_version_removes_the_value_from_the_vault(clocked: ServiceContext, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    add_stripe(clocked)
    vault = make_vault()
    plan = secret_refs.plan_secret(clocked, "acme", "api_key", None)
    # A real failure after the vault write: the audit entry of the new version cannot be
    # written (its key file's directory is a regular file), so the version rolls back.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("WORKBENCH_AUDIT_KEY_FILE", str(blocker / "audit.key"))
    with pytest.raises(ServiceError) as failed:
        secret_refs.add_secret(clocked, vault, plan, "sk_test_dangling", "test")
    message = str(failed.value)
    assert "the audit key" in message and "its value was removed from the vault again" in message
    assert vault.read().secrets == {}
    assert connections.get_connection(clocked, "acme").version == 1


def test_a_value_the_vault_keeps_after_a_failed_version_is_named(clocked: ServiceContext, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    add_stripe(clocked)
    vault = make_vault()
    plan = secret_refs.plan_secret(clocked, "acme", "api_key", None)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("WORKBENCH_AUDIT_KEY_FILE", str(blocker / "audit.key"))
    # And the vault goes away between the two steps (moved by someone else), so the value
    # cannot be removed either: the message must name what is left and how to remove it.
    original = vault_service.remove_secret

    def remove_then_fail(ctx: ServiceContext, unlocked: UnlockedVault, name: str) -> int:
        os.replace(unlocked.path, unlocked.path.with_suffix(".moved"))  # the vault is gone
        return original(ctx, unlocked, name)

    monkeypatch.setattr(vault_service, "remove_secret", remove_then_fail)
    with pytest.raises(secret_refs.SecretLeftInVault) as failed:
        secret_refs.add_secret(clocked, vault, plan, "sk_test_dangling", "test")
    assert "referenced by nothing: `workbench vault remove acme-api-key-" in str(failed.value)
    assert "sk_test_dangling" not in str(failed.value)


def test_an_import_planned_before_another_change_is_refused(clocked: ServiceContext) -> None:
    add_stripe(clocked)
    exported = connection_config.export_toml(clocked, "acme").text
    file = connection_config.read_import(exported.replace(b"interval_s = 300", b"interval_s = 60"), "acme.toml")
    plan = connection_config.plan_import(clocked, file, "acme.toml")
    assert [c.as_line() for c in plan.changes] == ["~ settings.sync.interval_s: 300 -> 60"]
    add(clocked, make_vault())  # someone adds a secret meanwhile: the diff shown is stale
    with pytest.raises(ServiceError, match="changed since the diff was shown"):
        connection_config.apply_import(clocked, plan, "stale")
    assert connections.get_connection(clocked, "acme").settings["sync"]["interval_s"] == 300
    fresh = connection_config.plan_import(clocked, file, "acme.toml")
    # The file has no secrets: importing it as it is would drop the new reference, and says so.
    assert sorted((c.dotted, c.change) for c in fresh.changes) == [("settings.secrets", "removed"),
                                                                   ("settings.sync.interval_s", "changed")]
    assert connection_config.apply_import(clocked, fresh, "fresh").version == 3
