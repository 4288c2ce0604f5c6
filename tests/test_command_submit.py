"""`workbench command submit`, on both backends: the command, its record (draft, the adapter's
kind) and its idempotency key in one transaction; intents and payloads checked against the
connection's adapter, refused in one line with nothing written."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from store.database import reading
from store.models import AuditEntry, Command, Record, Transition
from tests.support import table_counts
from workbench.cli.main import cli
from workbench.services import audit, command_submit, connections
from workbench.services.context import ServiceContext
from workbench.services.errors import InvalidArgument


@pytest.fixture(autouse=True)
def _release_engines() -> Iterator[None]:
    yield
    gc.collect(1)  # each invocation opened its own engine (in a reference cycle): close them


def run(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", db_url, *args], catch_exceptions=False)


def _rows(ctx: ServiceContext, table: Any) -> list[Any]:
    with reading(ctx.engine) as conn:
        return list(conn.execute(select(table)))


def test_submit_writes_command_record_and_key_and_prints_both_ids(ctx: ServiceContext, db_url: str) -> None:
    connections.add_connection(ctx, "shop", "stripe", "sandbox")
    result = run(db_url, "command", "submit", "shop", "payment.create", "--data",
                 '{"amount": 1250, "currency": "usd"}', "--json")
    assert result.exit_code == 0, result.output
    ids = orjson.loads(result.stdout)
    assert ids["created"] is True
    (command,) = _rows(ctx, Command.__table__)
    (record,) = _rows(ctx, Record.__table__)
    assert (command.id, command.record_id, record.id) == (ids["command"], ids["record"], ids["record"])
    assert (command.intent, command.status, command.payload) == ("payment.create", "pending",
                                                                  {"amount": 1250, "currency": "usd"})
    assert command.idempotency_key == command.id  # a key of its own: sent with every attempt
    assert (record.kind, record.status, record.version) == ("payment", "draft", 1)
    (transition,) = _rows(ctx, Transition.__table__)
    assert (transition.cause, transition.command_id, transition.to_status) == ("command", command.id, "draft")

    plain = run(db_url, "command", "submit", "shop", "payment.create", "--data", '{"amount": 1, "currency": "eur"}')
    assert plain.exit_code == 0 and plain.stdout.startswith("command cmd_") and " record rec_" in plain.stdout


def test_the_same_idempotency_key_returns_the_first_command(ctx: ServiceContext, db_url: str) -> None:
    connections.add_connection(ctx, "pay", "payroll", "sandbox")
    data = '{"employer": "acme", "pay_date": "2026-12-01", "amount": 250000, "currency": "eur"}'
    first = orjson.loads(run(db_url, "command", "submit", "pay", "payroll_run.submit", "--data", data,
                             "--idempotency-key", "run-2026-12", "--json").stdout)
    again = orjson.loads(run(db_url, "command", "submit", "pay", "payroll_run.submit", "--data", data,
                             "--idempotency-key", "run-2026-12", "--json").stdout)
    assert (again["command"], again["record"], again["created"]) == (first["command"], first["record"], False)
    assert len(_rows(ctx, Command.__table__)) == 1 and len(_rows(ctx, Record.__table__)) == 1
    (record,) = _rows(ctx, Record.__table__)
    assert record.kind == "payroll_run"


def test_an_existing_record_takes_a_follow_up_command(ctx: ServiceContext, db_url: str) -> None:
    connections.add_connection(ctx, "shop", "stripe", "sandbox")
    created = orjson.loads(run(db_url, "command", "submit", "shop", "payment.create", "--data",
                               '{"amount": 1250, "currency": "usd"}', "--json").stdout)
    cancel = run(db_url, "command", "submit", "shop", "payment.cancel", "--record", created["record"],
                 "--data", '{"payment_intent": "pi_123"}', "--json")
    assert orjson.loads(cancel.stdout)["record"] == created["record"]
    assert len(_rows(ctx, Record.__table__)) == 1 and len(_rows(ctx, Command.__table__)) == 2


def test_bad_intents_and_payloads_are_refused_in_one_line_with_nothing_written(ctx: ServiceContext,
                                                                               db_url: str) -> None:
    connections.add_connection(ctx, "shop", "stripe", "sandbox")
    before = table_counts(db_url)
    cases = [
        (["shop", "payroll_run.submit", "--data", "{}"], "stripe has no intent 'payroll_run.submit': one of payment.create"),
        (["shop", "payment.create", "--data", "{nope"], "--data: not JSON"),
        (["shop", "payment.create", "--data", "[1, 2]"], "--data: a JSON object"),
        (["shop", "payment.create", "--data", '{"amount": -5, "currency": "usd"}'], "--data: amount:"),
        (["shop", "payment.create", "--data", '{"amount": 5, "currency": "US Dollars"}'], "--data: currency:"),
        (["shop", "payment.capture", "--data", '{}'], "--data: payment_intent:"),
        (["shop", "payment.cancel", "--record", "rec_nope", "--data", '{"payment_intent": "pi_1"}'],
         "no record 'rec_nope'"),
        (["nope", "payment.create", "--data", '{"amount": 5, "currency": "usd"}'], "unknown connection 'nope'"),
    ]
    for args, expected in cases:
        result = run(db_url, "command", "submit", *args)
        assert result.exit_code in (1, 2), (args, result.output)
        assert expected in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert result.stdout == ""
    assert table_counts(db_url) == before


def test_submit_many_writes_each_command_like_submit_or_nothing(ctx: ServiceContext) -> None:
    connections.add_connection(ctx, "shop", "stripe", "sandbox")
    made = command_submit.submit_many(ctx, "shop", "payment.create",
                                      [{"amount": 100 + i, "currency": "usd"} for i in range(3)])
    commands = {c.id: c for c in _rows(ctx, Command.__table__)}
    assert sorted(commands) == sorted(m.command for m in made)
    assert all(commands[m.command].record_id == m.record and commands[m.command].status == "pending" for m in made)
    assert sorted(r.status for r in _rows(ctx, Record.__table__)) == ["draft"] * 3
    audited = [e for e in _rows(ctx, AuditEntry.__table__) if e.action == "command.submit"]
    assert sorted(e.target_id for e in audited) == sorted(commands)
    assert audit.verify(ctx).ok  # its checkpoint at the lot's last entry
    connections.add_connection(ctx, "later", "stripe", "sandbox")  # one audited the usual way, after the lot
    checked = audit.verify(ctx)  # the lot chained like entries appended one by one, its checkpoint the newest
    assert checked.ok and checked.anchored and checked.checked == len(_rows(ctx, AuditEntry.__table__))

    with pytest.raises(InvalidArgument, match="--data"):
        command_submit.submit_many(ctx, "shop", "payment.create", [{"amount": 1, "currency": "usd"}, {"amount": -1}])
    assert len(_rows(ctx, Command.__table__)) == 3  # the good one was not written either
