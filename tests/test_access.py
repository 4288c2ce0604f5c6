"""Roles: each role allowed and refused for each kind of action, in the services and through
the CLI; a refusal is one line and an audit entry; a fresh store's first user is its admin
(one, however many race); the last admin cannot be revoked or demoted."""

from __future__ import annotations

import dataclasses
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from store.database import HEAD_REVISION, open_store, reading, writing
from store.models import AuditEntry, Connection as ConnectionRow, RoleBinding
from tests import test_vault
from tests.support import T0, acting_as, add_stripe, capture, make_context, pi_event
from workbench.cli.main import cli
from workbench.domain.failure_filter import FailureFilter
from workbench.receiver import stuck
from workbench.services import (
    access,
    alert_signals,
    alerts,
    audit,
    command_submit,
    connections,
    provider_calls,
    queries,
    reconcile,
    recovery,
    replay,
    retention,
    rewind,
    role_bindings,
    triage,
)
from workbench.services.access import AccessDenied
from workbench.services.capture_export import export_captures
from workbench.services.context import ServiceContext, default_actor
from workbench.services.errors import InvalidArgument, ServiceError
from workbench.services.ingest import ingest
from workbench.services.ingest_run import run_ingest

entries = AuditEntry.__table__
bindings = RoleBinding.__table__
ROLES = ("viewer", "operator", "admin")
ACTIONS = tuple(access.LEAST_ROLE)


def _denials(ctx: ServiceContext) -> list[dict[str, Any]]:
    with reading(ctx.engine) as conn:
        rows = conn.execute(select(entries).where(entries.c.action == "access.denied").order_by(entries.c.seq))
        return [{"actor": r.actor, "action": r.target_id, "after": r.after} for r in rows]


def _connections(ctx: ServiceContext) -> int:
    with reading(ctx.engine) as conn:
        return conn.execute(select(func.count()).select_from(ConnectionRow.__table__)).scalar_one()


@pytest.fixture
def stocked(ctx: ServiceContext) -> ServiceContext:
    """acme with a payment intent and one failure (a body that is not JSON), as user:tester (admin)."""
    add_stripe(ctx)
    ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_1", "processing", 1)), capture(b'{"id": "evt_broken"')])
    return ctx


def _failure_id(ctx: ServiceContext) -> str:
    return str(next(queries.iter_failures(ctx))["id"])


# One real use case per kind of action. Vault changes and retention runs are use cases other
# parts of issue 9 add (each calls require("vault") / require("retention")): here the check.
def _use_case(action: str, admin: ServiceContext) -> Callable[[ServiceContext], object]:
    failure = _failure_id(admin)
    cases: dict[str, Callable[[ServiceContext], object]] = {
        "read": lambda c: list(queries.iter_records(c)),
        "ingest": lambda c: run_ingest(c, "acme", [capture(pi_event("evt_2", "pi_2", "processing", 2))],
                                       source="test"),
        "triage": lambda c: triage.add_note(c, failure, "looked at it"),
        "replay": lambda c: replay.replay(c, connection="acme"),
        "pause": lambda c: connections.set_paused(c, "acme", True, "incident"),
        "reveal": lambda c: export_captures(c, "acme", io.BytesIO(), redacted=False),
        "config": lambda c: connections.add_connection(c, "globex", "stripe", "live"),
        "vault": lambda c: access.require(c, "vault"),
        "access": lambda c: role_bindings.grant(c, "carol", "viewer"),
        "retention": lambda c: retention.run_retention(c),
        "call": _open_provider_client,
        "command": lambda c: command_submit.submit(c, "acme", "payment.create", {"amount": 5, "currency": "usd"}),
        "reconcile": lambda c: reconcile.request_run(c, "acme"),
        "recover": lambda c: recovery.submit(c, recovery.plan(c, FailureFilter(connection="acme"))),
        "rewind": lambda c: rewind.apply_rewind(c, rewind.RewindPlan(
            "acme", connections.get_connection(admin, "acme").id, T0, None, None, None, 0)),
        "alerts": lambda c: alerts.acknowledge(c, _open_alert(admin), "on it"),
        "discard": _discard_stuck,
    }
    return cases[action]


def _open_alert(ctx: ServiceContext) -> str:
    acme = connections.get_connection(ctx, "acme")
    with writing(ctx.engine) as conn:
        alert_signals.emit(conn, ctx, alert_signals.Signal("breaker.opened", acme.id, "critical", "calls failing"))
    return str(alerts.list_alerts(ctx)[0]["id"])


def _discard_stuck(ctx: ServiceContext) -> None:
    # Past the role check it finds no such stuck delivery: that refusal means "allowed".
    with pytest.raises(InvalidArgument, match="no stuck delivery batch-1"):
        stuck.discard(ctx, ["batch-1"], "damaged")


def _open_provider_client(ctx: ServiceContext) -> None:
    # Past the role check it needs an API key `acme` does not have: that refusal means "allowed".
    with pytest.raises(provider_calls.ProviderUnavailable, match="no active API key"):
        provider_calls.open_client(ctx, "acme", {})


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_allowed_or_refused_each_action(stocked, role, action):
    as_ana = acting_as(stocked, "user:ana", role)
    use = _use_case(action, stocked)
    may = access.RANK[access.Role(role)] >= access.RANK[access.LEAST_ROLE[action]]
    assert access.allowed(as_ana, action) is may
    before = _connections(stocked)
    if may:
        use(as_ana)
        assert _denials(stocked) == []
        return
    with pytest.raises(AccessDenied) as refused:
        use(as_ana)
    message = str(refused.value)
    assert "\n" not in message and "user:ana is " + role in message
    assert f"{action} needs the {access.LEAST_ROLE[action]} role" in message
    assert _denials(stocked) == [{"actor": "user:ana", "action": action,
                                  "after": {"action": action, "role": role, "needs": str(access.LEAST_ROLE[action])}}]
    assert _connections(stocked) == before
    assert audit.verify(stocked).ok


def test_the_operator_role_covers_what_the_issue_gives_it(stocked):
    """viewer (read), operator (triage, replay, pause, reveal, call, command, reconcile, recover, rewind),
    admin (config, vault, roles, retention, discarding stuck deliveries)."""
    def least(role: str) -> set[str]:
        return {a for a, r in access.LEAST_ROLE.items() if r == role}
    assert least("viewer") == {"read"}
    assert least("operator") == {"ingest", "triage", "replay", "pause", "reveal", "call", "command", "reconcile",
                                 "recover", "rewind", "alerts"}
    assert least("admin") == {"config", "vault", "access", "retention", "discard"}


def test_an_actor_with_no_role_is_told_how_to_get_one_and_the_refusal_is_audited(stocked):
    nobody = stocked.as_actor("user:bob")
    with pytest.raises(AccessDenied) as refused:
        connections.list_connections(nobody)
    assert str(refused.value).startswith("user:bob has no role on this store")
    assert "ask an admin to run `workbench access grant bob viewer`" in str(refused.value)
    assert _denials(stocked) == [{"actor": "user:bob", "action": "read",
                                  "after": {"action": "read", "role": None, "needs": "viewer"}}]
    assert access.allowed(nobody, "read") is False


def test_a_refused_bulk_triage_writes_nothing_but_the_refusal(stocked):
    viewer = acting_as(stocked, "user:vic", "viewer")
    failure = _failure_id(stocked)
    before = triage.failure_detail(stocked, failure)
    with pytest.raises(AccessDenied):
        triage.resolve(viewer, [failure], "done")
    assert triage.failure_detail(stocked, failure) == before
    assert [e["action"] for e in audit.search(stocked, limit=2)] == ["access.denied", "access.grant"]


# -- the first user -------------------------------------------------------------------------------------

@pytest.fixture
def bare(engine: Any) -> ServiceContext:
    """A store nobody has acted on: no bindings at all."""
    return ServiceContext(engine=engine, actor="user:ana")


def test_the_first_user_of_a_fresh_store_is_its_admin_and_the_next_has_no_role(bare):
    assert connections.list_connections(bare) == []
    assert access.role_of(bare) == access.Role.ADMIN
    [binding] = role_bindings.list_bindings(bare)
    assert (binding.actor, binding.role, binding.granted_by) == ("user:ana", "admin", "user:ana")
    [entry] = audit.search(bare, "access.grant")
    assert (entry["actor"], entry["target_id"], entry["after"]) == ("user:ana", "user:ana", {"role": "admin"})
    with pytest.raises(AccessDenied, match="user:bob has no role"):
        connections.list_connections(bare.as_actor("user:bob"))
    assert access.role_of(bare.as_actor("user:bob")) is None


def test_a_system_actor_never_becomes_the_first_admin(bare):
    engine = bare.as_actor("system:engine")
    with pytest.raises(AccessDenied, match="system:engine has no role"):
        connections.list_connections(engine)
    assert access.role_of(bare) == access.Role.ADMIN  # a person still can
    role_bindings.grant(bare, "system:engine", "operator", "the sync engine")
    assert access.allowed(engine, "ingest") and not access.allowed(engine, "config")


def test_two_first_users_at_once_give_one_admin(db_url):
    engines = [open_store(db_url, auto_upgrade=True) for _ in range(2)]
    try:
        people = [ServiceContext(engine=e, actor=f"user:first{n}") for n, e in enumerate(engines)]
        start = threading.Barrier(2)
        roles: dict[str, access.Role | None] = {}

        def act(ctx: ServiceContext) -> None:
            start.wait()
            roles[ctx.actor] = access.role_of(ctx)

        threads = [threading.Thread(target=act, args=(ctx,)) for ctx in people]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(map(str, roles.values())) == ["None", "admin"]
        with reading(engines[0]) as conn:
            assert conn.execute(select(bindings.c.actor, bindings.c.role)).all() == [
                (actor, "admin") for actor, role in roles.items() if role]
    finally:
        for engine in engines:
            engine.dispose()


def test_the_unique_founding_flag_admits_one_first_admin(engine):
    """What makes the race safe on PostgreSQL: a second founding binding fails on the key."""
    with writing(engine) as conn:
        conn.execute(bindings.insert().values(actor="user:a", role="admin", granted_by="user:a", granted_at=T0,
                                              founding=True))
    with pytest.raises(IntegrityError), writing(engine) as conn:
        conn.execute(bindings.insert().values(actor="user:b", role="admin", granted_by="user:b", granted_at=T0,
                                              founding=True))


def test_a_read_only_store_allows_reads_and_binds_nobody(bare):
    reader = dataclasses.replace(bare, read_only=True)
    assert connections.list_connections(reader) == []
    assert access.allowed(reader, "read") and not access.allowed(reader, "triage")
    with reading(bare.engine) as conn:
        assert conn.execute(select(func.count()).select_from(bindings)).scalar_one() == 0


# -- managing roles ------------------------------------------------------------------------------------

def test_the_last_admin_cannot_be_revoked_or_demoted(bare):
    connections.list_connections(bare)  # ana: the first user, the only admin
    for change in (lambda: role_bindings.revoke(bare, "ana"), lambda: role_bindings.grant(bare, "ana", "operator")):
        with pytest.raises(ServiceError, match="user:ana is the last admin: grant another admin first"):
            change()
    assert access.role_of(bare) == access.Role.ADMIN
    role_bindings.grant(bare, "bob", "admin", "second admin")
    assert role_bindings.revoke(bare, "ana", "moved team") == "admin"
    with pytest.raises(AccessDenied, match="user:ana has no role"):
        connections.list_connections(bare)
    bob = bare.as_actor("user:bob")
    with pytest.raises(ServiceError, match="last admin"):
        role_bindings.revoke(bob, "bob")
    actions = [(e["action"], e["target_id"]) for e in audit.search(bob, "access.")]
    assert ("access.revoke", "user:ana") in actions and ("access.grant", "user:bob") in actions


def test_a_revoke_made_elsewhere_stops_the_next_write_at_once(stocked, db_url):
    operator = acting_as(stocked, "user:ana", "operator")
    connections.set_paused(operator, "acme", True, "incident")
    other = open_store(db_url)
    try:
        role_bindings.revoke(make_context(other), "ana", "left the team")
    finally:
        other.dispose()
    with pytest.raises(AccessDenied, match="user:ana has no role"):
        connections.set_paused(operator, "acme", False, "over")


def test_grant_refuses_unknown_roles_and_names(stocked):
    with pytest.raises(ServiceError, match="unknown role 'root'"):
        role_bindings.grant(stocked, "ana", "root")
    with pytest.raises(ServiceError, match="is not a user"):
        role_bindings.grant(stocked, "ana; rm -rf /", "viewer")


# -- through the CLI -------------------------------------------------------------------------------------
# The CLI acts as the OS account running it (never a name from the environment or the command
# line), so these tests bind that account to each role, as user:tester (an admin), and run the
# real command.

ME = default_actor()


def wb(db_url: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--db", db_url, *args], catch_exceptions=False, env=env)


def _cli_command(action: str, failure: str, capture_file: Path) -> list[str] | None:
    return {
        "read": ["records", "--json"],
        "ingest": ["ingest", "acme", str(capture_file)],
        "triage": ["failures", "note", failure, "looked at it"],
        "replay": ["replay", "--connection", "acme"],
        "pause": ["connection", "pause", "acme", "--reason", "incident"],
        "reveal": ["events", "--captures", "--exact", "--connection", "acme"],
        "config": ["connection", "add", "globex", "--provider", "stripe"],
        "access": ["access", "grant", "carol", "viewer"],
        "retention": ["retention", "run"],
    }.get(action)


# The other configuration commands: each needs the admin role through the CLI as well.
CONFIG_COMMANDS = [
    ["connection", "set", "acme", "--retain-raw", "30", "--reason", "policy"],
    ["connection", "secret", "retire", "acme", "acme-api-key-x", "--reason", "rotated"],
    ["connection", "rotate-payload-key", "acme", "--reason", "yearly"],
]


@pytest.mark.parametrize("role", ROLES)
def test_each_role_through_the_cli(stocked, db_url, tmp_path, role):
    if role != "admin":  # the OS account is an admin of test stores; the last admin stays user:tester
        role_bindings.grant(stocked, ME, role, "test")
    capture_file = tmp_path / "one.jsonl"
    capture_file.write_bytes(b'{"received_at": "2026-11-01T12:00:00+00:00", "headers": {}, '
                             b'"body": "{\\"id\\": \\"evt_9\\", \\"object\\": \\"event\\"}"}\n')
    failure = _failure_id(stocked)
    checked = 0
    for action in ACTIONS:
        command = _cli_command(action, failure, capture_file)
        if command is None:
            continue
        checked += 1
        result = wb(db_url, *command)
        if access.RANK[access.Role(role)] >= access.RANK[access.LEAST_ROLE[action]]:
            assert result.exit_code in (0, 3), (action, result.output)  # 3: a capture line skipped
            continue
        assert result.exit_code == 1, (action, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {ME} is {role} here; {action} needs the "), lines
        assert "Traceback" not in result.stderr
        assert _denials(stocked)[-1]["actor"] == ME and _denials(stocked)[-1]["action"] == action
    assert checked == 9


@pytest.mark.parametrize("command", CONFIG_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_configuration_commands_refuse_an_operator(stocked, db_url, command):
    role_bindings.grant(stocked, ME, "operator", "test")
    versions = connections.get_connection(stocked, "acme").version
    result = wb(db_url, *command)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: {ME} is operator here; config needs the admin role")
    assert _denials(stocked)[-1] == {"actor": ME, "action": "config",
                                     "after": {"action": "config", "role": "operator", "needs": "admin"}}
    assert connections.get_connection(stocked, "acme").version == versions


def test_cli_access_grant_list_revoke(stocked, db_url):
    assert wb(db_url, "access", "grant", "ana", "operator", "--reason", "on call").stdout == "user:ana is operator\n"
    listed = wb(db_url, "access", "list", "--json")
    assert listed.exit_code == 0
    rows = {row["actor"]: row for row in orjson.loads(listed.stdout)}
    assert rows["user:ana"]["role"] == "operator" and rows["user:ana"]["user"] == "ana"
    assert rows["user:ana"]["granted_by"] == ME
    table = wb(db_url, "access", "list")
    assert table.exit_code == 0 and "user:ana" in table.stdout and "operator" in table.stdout
    assert wb(db_url, "access", "revoke", "ana").stdout == "user:ana is no longer operator\n"
    unknown = wb(db_url, "access", "revoke", "ana")
    assert unknown.exit_code == 1 and unknown.stderr == "error: user:ana has no role to revoke\n"
    bad_role = wb(db_url, "access", "grant", "ana", "root")
    assert bad_role.exit_code == 2 and "root" in bad_role.stderr


def test_cli_last_admin_is_protected(tmp_path):
    db = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert wb(db, "db", "upgrade").exit_code == 0
    assert wb(db, "access", "whoami").stdout == f"{ME}: admin\n"  # the first user
    result = wb(db, "access", "revoke", ME.removeprefix("user:"))
    assert result.exit_code == 1
    assert result.stderr == f"error: {ME} is the last admin: grant another admin first\n"


def test_the_cli_actor_is_the_os_account_not_an_environment_variable(stocked, db_url):
    role_bindings.grant(stocked, "mallory", "admin", "test")
    role_bindings.grant(stocked, ME, "viewer", "test")
    spoofed = {"USER": "mallory", "LOGNAME": "mallory", "LNAME": "mallory", "USERNAME": "mallory"}
    assert wb(db_url, "access", "whoami", env=spoofed).stdout == f"{ME}: viewer\n"
    refused = wb(db_url, "connection", "add", "globex", "--provider", "stripe", env=spoofed)
    assert refused.exit_code == 1 and f"{ME} is viewer here" in refused.stderr


def test_one_person_starting_twice_at_once_is_admin_in_both(db_url):
    engines = [open_store(db_url, auto_upgrade=True) for _ in range(2)]
    try:
        start = threading.Barrier(2)
        roles: list[access.Role | None] = []

        def act(engine: Any) -> None:
            start.wait()
            roles.append(access.role_of(ServiceContext(engine=engine, actor="user:ana")))

        threads = [threading.Thread(target=act, args=(engine,)) for engine in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert roles == [access.Role.ADMIN, access.Role.ADMIN]
    finally:
        for engine in engines:
            engine.dispose()


def test_a_store_from_before_roles_upgrades_and_its_first_user_becomes_admin(db_url):
    from alembic import command

    from store.database import _alembic_config, current_revision, make_engine

    plain = make_engine(db_url)
    try:
        command.upgrade(_alembic_config(plain), "0003")
        ctx = ServiceContext(engine=plain, actor="user:ana")
        with writing(plain) as conn:  # a connection made before roles existed
            conn.execute(ConnectionRow.__table__.insert().values(
                id="con_old", name="acme", provider="stripe", environment="sandbox", paused=False, version=1,
                settings={}, created_at=T0, updated_at=T0))
        command.upgrade(_alembic_config(plain), "head")
        assert current_revision(plain) == HEAD_REVISION
        assert [c.name for c in connections.list_connections(ctx)] == ["acme"]  # ana: the first user, admin
        assert [(b.actor, b.role) for b in role_bindings.list_bindings(ctx)] == [("user:ana", "admin")]
    finally:
        plain.dispose()


def test_two_admins_revoking_each_other_at_once_leave_one_admin(db_url):
    engines = [open_store(db_url, auto_upgrade=True) for _ in range(2)]
    try:
        ana, bob = ServiceContext(engine=engines[0], actor="user:ana"), ServiceContext(engine=engines[1], actor="user:bob")
        connections.list_connections(ana)  # the first user: admin
        role_bindings.grant(ana, "bob", "admin")
        start = threading.Barrier(2)
        outcomes: dict[str, str] = {}

        def revoke(ctx: ServiceContext, other: str) -> None:
            start.wait()
            try:
                outcomes[ctx.actor] = role_bindings.revoke(ctx, other)
            except ServiceError as exc:
                outcomes[ctx.actor] = str(exc)

        threads = [threading.Thread(target=revoke, args=args) for args in ((ana, "bob"), (bob, "ana"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes.values())[0] == "admin"  # one revoke went through
        assert "last admin" in sorted(outcomes.values())[1] or "no role" in sorted(outcomes.values())[1]
        with reading(engines[0]) as conn:
            assert len(conn.execute(select(bindings.c.actor).where(bindings.c.role == "admin")).all()) == 1
    finally:
        for engine in engines:
            engine.dispose()


def test_vault_reveal_needs_the_operator_role(stocked, db_url):
    test_vault.ok(test_vault.wb("--db", db_url, "vault", "init"))
    test_vault.ok(test_vault.wb("--db", db_url, "vault", "set", "stripe-key", input="sk_test_first\n"))
    role_bindings.grant(stocked, ME, "viewer", "test")
    refused = test_vault.wb("--db", db_url, "vault", "reveal", "stripe-key")
    line = test_vault.one_line_error(refused, f"{ME} is viewer here; reveal needs the operator role")
    assert "sk_test_first" not in refused.output and "sk_test_first" not in line
    assert _denials(stocked)[-1]["action"] == "reveal" and not audit.search(stocked, "vault.reveal")
    role_bindings.grant(stocked, ME, "operator", "test")
    assert test_vault.ok(test_vault.wb("--db", db_url, "vault", "reveal", "stripe-key")) == "sk_test_first\n"
    assert [e["actor"] for e in audit.search(stocked, "vault.reveal")] == [ME]


def test_cli_without_a_role_says_how_to_get_one(stocked, db_url):
    role_bindings.revoke(stocked, ME, "test")
    result = wb(db_url, "records", "--json")
    assert result.exit_code == 1 and result.stdout == ""
    name = ME.removeprefix("user:")
    assert result.stderr == (f"error: {ME} has no role on this store, so may not read; ask an admin to run "
                             f"`workbench access grant {name} viewer`\n")
    assert _denials(stocked)[-1] == {"actor": ME, "action": "read",
                                     "after": {"action": "read", "role": None, "needs": "viewer"}}
