"""The `workbench` command as scripts use it: words, JSON keys and exit codes, on both backends.

Most tests drive the real click entry point in-process (CliRunner); a few run the installed
`workbench` executable to check stdin, exit statuses and stdout/stderr end to end.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from store.database import open_store, writing
from tests.support import T0, capture_line, pi_event, table_counts
from workbench.cli.main import cli
from workbench.domain.taxonomy import Category

CREATED = int(T0.timestamp())
WORKBENCH = Path(sys.executable).with_name("workbench")
VERDICTS = {"applied", "duplicate", "stale", "invalid", "ignored", "rejected", "failed"}


@pytest.fixture(autouse=True)
def _release_engines():
    yield
    gc.collect(1)  # each invocation opened its own engine (in a reference cycle): close them


def wb(db_url: str, *args: str, input: bytes | str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--db", db_url, *args], input=input, catch_exceptions=False)


def js(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def one_line_error(result: Result, *words: str) -> None:
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


counts = table_counts


def lines(*items: dict[str, Any] | bytes | str) -> bytes:
    """A capture file: events become capture lines; bytes and str are written as they are."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            out.append(capture_line(item, T0 + timedelta(seconds=i)))
        else:
            out.append(item if isinstance(item, bytes) else item.encode())
    return b"\n".join(out) + b"\n"


def raw_capture(body: str, received: str = "2026-11-01T12:00:00Z", headers: dict[str, str] | None = None) -> bytes:
    return orjson.dumps({"received_at": received, "headers": headers or {}, "body": body})


# One delivery of each verdict (in this order: applied x3, duplicate, stale, invalid, ignored,
# rejected, failed).
EVERY_VERDICT = [
    pi_event("evt_1", "pi_1", "processing", CREATED),
    pi_event("evt_2", "pi_1", "succeeded", CREATED + 10),
    pi_event("evt_2", "pi_1", "succeeded", CREATED + 10),  # redelivered: duplicate
    pi_event("evt_0", "pi_1", "requires_payment_method", CREATED - 10),  # older: stale
    b"",  # placeholder for the non-JSON body, see below
    {"id": "evt_c", "object": "event", "type": "customer.created", "created": CREATED, "data": {"object": {"id": "cus_1"}}},
    pi_event("evt_3", "pi_1", "processing", CREATED + 20),  # completed -> processing: rejected
    pi_event("evt_4", "pi_2", "requires_review", CREATED, "payment_intent.updated"),  # unknown status: failed
    pi_event("evt_5", "pi_3", "requires_action", CREATED),
]


def every_verdict_file(tmp_path: Path) -> Path:
    items: list[Any] = list(EVERY_VERDICT)
    items[4] = raw_capture('{"id": "evt_x", "type": "payment_intent.succ')  # truncated body: invalid
    path = tmp_path / "captures.jsonl"
    path.write_bytes(lines(*items))
    return path


@pytest.fixture
def store(db_url: str) -> str:
    """An upgraded store with connection `acme` (Stripe, sandbox)."""
    result = wb(db_url, "db", "upgrade")
    assert result.exit_code == 0 and "up to date" in result.stdout
    assert wb(db_url, "connection", "add", "acme", "--provider", "stripe").exit_code == 0
    return db_url


@pytest.fixture
def loaded(store: str, tmp_path: Path) -> str:
    result = wb(store, "ingest", "acme", str(every_verdict_file(tmp_path)))
    assert result.exit_code == 0, result.output
    return store


# -- db and connections ------------------------------------------------------------------------------

def test_no_command_without_a_terminal_prints_help(tmp_path):
    """`workbench` opens the TUI only on a terminal; from a script or a pipe it shows the help."""
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{tmp_path / 'none.db'}"], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stdout.startswith("Usage: ") and "records" in result.stdout and "db" in result.stdout
    assert not (tmp_path / "none.db").exists()



def test_db_upgrade_twice_is_fine(db_url):
    for _ in range(2):
        result = wb(db_url, "db", "upgrade")
        assert result.exit_code == 0 and "is up to date" in result.stdout
    assert js(wb(db_url, "records", "--json")) == []


def test_connection_add_list_pause_resume(store):
    result = wb(store, "connection", "add", "globex", "--provider", "stripe", "--environment", "live",
                "--reason", "new tenant")
    assert result.exit_code == 0 and "added connection globex (stripe, live)" in result.stdout
    listed = js(wb(store, "connection", "list", "--json"))
    assert [(c["name"], c["provider"], c["environment"], c["paused"], c["version"]) for c in listed] == [
        ("acme", "stripe", "sandbox", False, 1), ("globex", "stripe", "live", False, 1)]
    assert wb(store, "connection", "pause", "globex", "--reason", "incident").exit_code == 0
    assert wb(store, "connection", "resume", "globex", "--reason", "over").exit_code == 0
    assert js(wb(store, "connection", "list", "--json"))[1]["version"] == 3
    exported = [orjson.loads(line) for line in wb(store, "audit", "export").stdout_bytes.splitlines()]
    # The store's first user (the OS user, acting through the CLI) was made its admin first.
    assert [e["action"] for e in exported] == ["access.grant", "connection.add", "connection.add",
                                               "connection.pause", "connection.resume"]
    assert exported[0]["reason"] == "the first user of this store is its admin"
    assert exported[2]["reason"] == "new tenant" and exported[3]["reason"] == "incident"
    table = wb(store, "connection", "list")
    assert table.exit_code == 0 and "globex" in table.stdout and "live" in table.stdout


def test_connection_add_errors(store):
    before = counts(store)
    one_line_error(wb(store, "connection", "add", "acme", "--provider", "stripe"), "already exists")
    one_line_error(wb(store, "connection", "add", "x", "--provider", "paypal"), "unknown provider")
    assert wb(store, "connection", "add", "x", "--provider", "stripe", "--environment", "staging").exit_code == 2
    assert wb(store, "connection", "add", "x").exit_code == 2  # --provider is required
    assert counts(store) == before


# -- ingest -------------------------------------------------------------------------------------------

def test_ingest_prints_counts_per_verdict(store, tmp_path):
    result = wb(store, "ingest", "acme", str(every_verdict_file(tmp_path)))
    assert result.exit_code == 0, result.output
    printed = dict(line.split("\t") for line in result.stdout.splitlines())
    assert printed == {"applied": "3", "duplicate": "1", "stale": "1", "invalid": "1", "ignored": "1",
                       "rejected": "1", "failed": "1", "total": "9"}
    assert result.stderr == ""


def test_a_body_that_is_not_json_is_stored_as_invalid(store):
    result = wb(store, "ingest", "acme", "-", input=raw_capture("this is <b>not</b> json") + b"\n")
    assert result.exit_code == 0 and "invalid\t1" in result.stdout
    [event] = js(wb(store, "events", "--json"))
    assert event["verdict"] == "invalid" and event["provider_event_id"] is None and event["record_id"] is None
    [failure] = js(wb(store, "failures", "--json"))
    assert failure["category"] == "validation" and failure["event_id"] == event["id"]


def test_bad_lines_are_reported_with_numbers_skipped_and_exit_non_zero(store, tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(lines(
        pi_event("evt_1", "pi_1", "processing", CREATED),                              # 1 ok
        "this line is not json",                                                       # 2
        "[1, 2, 3]",                                                                   # 3 not an object
        raw_capture("x").replace(b'"body":"x"', b'"body":{"id":1}'),                   # 4 body not a string
        orjson.dumps({"received_at": "yesterday", "headers": {}, "body": "{}"}),       # 5 bad time
        "",                                                                            # 6 blank: ignored
        pi_event("evt_2", "pi_1", "succeeded", CREATED + 5),                           # 7 ok
    ))
    result = wb(store, "ingest", "acme", str(path))
    assert result.exit_code not in (0, 1)  # partial: neither success nor "nothing written"
    assert "applied\t2" in result.stdout and "total\t2" in result.stdout
    reported = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert [line.split(":")[0] for line in reported] == ["line 2", "line 3", "line 4", "line 5"]
    assert all("skipped" in line for line in reported)
    # the good lines went in
    assert [e["provider_event_id"] for e in js(wb(store, "events", "--json"))] == ["evt_1", "evt_2"]
    assert [r["status"] for r in js(wb(store, "records", "--json"))] == ["completed"]


def test_ingest_from_stdin(store):
    data = lines(pi_event("evt_1", "pi_1", "processing", CREATED), pi_event("evt_2", "pi_2", "succeeded", CREATED))
    result = wb(store, "ingest", "acme", "-", input=data)
    assert result.exit_code == 0 and "applied\t2" in result.stdout
    assert len(js(wb(store, "records", "--json"))) == 2


def test_unknown_connection_writes_nothing(store, tmp_path):
    path = every_verdict_file(tmp_path)
    before = counts(store)
    one_line_error(wb(store, "ingest", "nope", str(path)), "nope")
    one_line_error(wb(store, "ingest", "nope", "-", input=path.read_bytes()), "nope")
    assert counts(store) == before


def test_unreadable_file_writes_nothing(store, tmp_path):
    missing = tmp_path / "missing.jsonl"
    directory = tmp_path / "a-directory"
    directory.mkdir()
    locked = tmp_path / "locked.jsonl"
    locked.write_bytes(lines(pi_event("evt_1", "pi_1", "processing", CREATED)))
    locked.chmod(0)
    paths = [missing, directory] + ([locked] if not os.access(locked, os.R_OK) else [])  # root reads anything
    before = counts(store)
    for path in paths:
        one_line_error(wb(store, "ingest", "acme", str(path)), str(path))
    assert counts(store) == before


def test_ingesting_the_same_file_twice_changes_nothing_the_second_time(store, tmp_path):
    path = every_verdict_file(tmp_path)
    assert wb(store, "ingest", "acme", str(path)).exit_code == 0
    records_before = js(wb(store, "records", "--json"))
    failures_before = js(wb(store, "failures", "--json"))
    second = wb(store, "ingest", "acme", str(path))
    assert second.exit_code == 0
    # The same capture lines again: recognised as stored, nothing stored twice.
    assert dict(line.split("\t") for line in second.stdout.splitlines()) == {"already_stored": "9", "total": "9"}
    assert js(wb(store, "records", "--json")) == records_before  # same IDs, statuses, versions, times
    assert js(wb(store, "failures", "--json")) == failures_before
    assert len(js(wb(store, "events", "--json"))) == 9


# -- lists -------------------------------------------------------------------------------------------

def test_records_json(loaded):
    items = js(wb(loaded, "records", "--json"))
    assert len(items) == 3
    for item in items:
        assert set(item) >= {"id", "connection", "kind", "status", "version", "updated_at", "provider_refs"}
        assert item["connection"] == "acme" and item["kind"] == "payment"
        [ref] = item["provider_refs"]
        assert set(ref) == {"provider", "external_id"} and ref["provider"] == "stripe"
    by_ref = {i["provider_refs"][0]["external_id"]: i for i in items}
    assert (by_ref["pi_1"]["status"], by_ref["pi_1"]["version"]) == ("completed", 2)
    assert by_ref["pi_2"]["status"] == "needs_review" and by_ref["pi_3"]["status"] == "submitted"
    review = js(wb(loaded, "records", "--status", "needs_review", "--json"))
    assert [r["provider_refs"][0]["external_id"] for r in review] == ["pi_2"]
    assert js(wb(loaded, "records", "--status", "cancelled", "--json")) == []
    assert len(js(wb(loaded, "records", "--connection", "acme", "--json"))) == 3
    table = wb(loaded, "records")
    assert table.exit_code == 0 and "pi_2" in table.stdout and "needs_review" in table.stdout


def test_lists_filter_by_connection(loaded):
    assert wb(loaded, "connection", "add", "globex", "--provider", "stripe").exit_code == 0
    wb(loaded, "ingest", "globex", "-", input=lines(pi_event("evt_g", "pi_g", "processing", CREATED)))
    assert [r["provider_refs"][0]["external_id"] for r in js(wb(loaded, "records", "--connection", "globex", "--json"))] == ["pi_g"]
    assert [e["provider_event_id"] for e in js(wb(loaded, "events", "--connection", "globex", "--json"))] == ["evt_g"]
    assert len(js(wb(loaded, "events", "--connection", "acme", "--json"))) == 9
    assert js(wb(loaded, "failures", "--connection", "globex", "--json")) == []


def test_lists_with_an_unknown_connection_fail_cleanly(loaded):
    for command in ("records", "events", "failures"):
        one_line_error(wb(loaded, command, "--connection", "nope", "--json"), "nope")
        one_line_error(wb(loaded, command, "--connection", "nope"), "nope")


def test_events_json(loaded):
    events = js(wb(loaded, "events", "--json"))
    assert len(events) == 9
    for event in events:
        assert set(event) >= {"id", "provider_event_id", "source", "received_at", "occurred_at", "verdict", "record_id"}
        assert event["verdict"] in VERDICTS and event["source"] == "file"
    assert [e["verdict"] for e in events] == ["applied", "applied", "duplicate", "stale", "invalid", "ignored",
                                              "rejected", "failed", "applied"]
    assert [e["provider_event_id"] for e in events] == ["evt_1", "evt_2", "evt_2", "evt_0", None, "evt_c", "evt_3",
                                                        "evt_4", "evt_5"]
    assert events[0]["received_at"].startswith("2026-11-01T12:00:00")
    assert events[0]["occurred_at"] == "2026-11-01T12:00:00+00:00" and events[4]["occurred_at"] is None
    pi_1 = next(r["id"] for r in js(wb(loaded, "records", "--json")) if r["provider_refs"][0]["external_id"] == "pi_1")
    assert events[0]["record_id"] == pi_1 and events[6]["record_id"] == pi_1
    assert events[4]["record_id"] is None and events[5]["record_id"] is None
    by_record = js(wb(loaded, "events", "--record", pi_1, "--json"))
    assert {e["record_id"] for e in by_record} == {pi_1}


def test_failures_json_and_groups(loaded):
    items = js(wb(loaded, "failures", "--json"))
    assert len(items) == 3
    for item in items:
        assert set(item) >= {"id", "category", "state", "record_id", "event_id", "fingerprint", "message"}
    assert sorted(i["category"] for i in items) == ["business_rule_rejection", "contract_mismatch", "validation"]
    assert {i["state"] for i in items} == {"needs_review"}
    events = {e["id"]: e for e in js(wb(loaded, "events", "--json"))}
    assert all(i["event_id"] in events for i in items)
    assert len(js(wb(loaded, "failures", "--state", "needs_review", "--json"))) == 3
    assert js(wb(loaded, "failures", "--state", "resolved", "--json")) == []
    [validation] = js(wb(loaded, "failures", "--category", "validation", "--json"))
    assert js(wb(loaded, "failures", "--fingerprint", validation["fingerprint"], "--json")) == [validation]
    groups = js(wb(loaded, "failures", "groups", "--json"))
    assert {(g["category"], g["connection"], g["count"]) for g in groups} == {
        ("business_rule_rejection", "acme", 1), ("contract_mismatch", "acme", 1), ("validation", "acme", 1)}
    assert set(groups[0]) >= {"category", "connection", "fingerprint", "count", "message", "oldest", "newest"}
    shown = js(wb(loaded, "failures", "show", validation["id"]))
    assert shown["id"] == validation["id"] and shown["policy"]["reviewer"] == "operator"


@pytest.mark.parametrize("args, option", [
    (("records", "--status", "bogus"), "--status"),
    (("failures", "--state", "opn"), "--state"),
    (("failures", "--category", "nope"), "--category"),
])
def test_filter_values_are_checked(loaded, args, option):
    result = wb(loaded, *args, "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert option in result.stderr and args[-1] in result.stderr and "Traceback" not in result.stderr


def test_filter_values_are_checked_by_the_service_too(loaded):
    """The TUI and other callers get the same refusal as the command line."""
    from workbench.services import queries
    from workbench.services.context import open_context
    from workbench.services.errors import InvalidArgument

    ctx = open_context(loaded)
    try:
        for call in (lambda: queries.iter_records(ctx, status="bogus"),
                     lambda: queries.iter_failures(ctx, state="opn"),
                     lambda: queries.iter_failures(ctx, category="nope")):
            with pytest.raises(InvalidArgument, match="expected one of"):
                call()
    finally:
        ctx.engine.dispose()


def test_unresolved_means_every_failure_still_in_the_queue(loaded):
    [rejected, *_] = js(wb(loaded, "failures", "--json"))
    assert wb(loaded, "failures", "resolve", rejected["id"], "--note", "done").exit_code == 0
    unresolved = js(wb(loaded, "failures", "--state", "unresolved", "--json"))
    assert len(unresolved) == 2 and rejected["id"] not in {f["id"] for f in unresolved}
    assert unresolved == [f for f in js(wb(loaded, "failures", "--json")) if f["state"] not in ("resolved", "ignored")]


@pytest.mark.parametrize("name", ["", "-dash-first", ".hidden", "a b", "a/b", "x" * 65, "naïve", "evil\x1b[31m",
                                  "semi;colon"])
def test_connection_names_follow_the_rule(store, name):
    before = counts(store)
    result = wb(store, "connection", "add", "--provider", "stripe", "--", name)
    assert result.exit_code == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: connection name ") and "1-64 letters, digits, '.', '_' or '-'" in line
    assert "\x1b" not in result.stderr  # shown escaped, never sent to the terminal
    assert counts(store) == before


def test_connection_names_at_the_limits_are_fine(store):
    for name in ("a", "9", "A.b_c-d", "x" * 64):
        assert wb(store, "connection", "add", name, "--provider", "stripe").exit_code == 0, name


def test_a_listing_that_fails_half_way_prints_nothing(loaded, monkeypatch):
    """A store error after the first page: no half array on stdout, one line on stderr."""
    from workbench.services import queries

    real = queries.iter_records

    def failing_after_the_first_page(ctx: Any, **filters: Any) -> Any:
        for n, item in enumerate(real(ctx, chunk=1, **filters)):  # one record per page (and transaction)
            yield item
            if n == 0:  # between pages, the table goes away under the listing
                with writing(ctx.engine) as conn:
                    conn.execute(text("ALTER TABLE records RENAME TO records_gone"))

    monkeypatch.setattr(queries, "iter_records", failing_after_the_first_page)
    one_line_error(wb(loaded, "records", "--json"), "has no table 'records'")


def test_hostile_ids_and_file_names_stay_one_line(store, tmp_path):
    for args in (["timeline", "pi\n\x1b[31mred"], ["ingest", "acme", str(tmp_path / "no\nsuch\x1b[2J")],
                 ["failures", "show", "fail\r\nerror: forged"]):
        result = wb(store, *args)
        one_line_error(result)
        assert "\x1b" not in result.stderr and "\r" not in result.stderr


def test_a_bug_is_one_line_and_verbose_shows_the_redacted_traceback(store, monkeypatch):
    from workbench.services import connections

    def broken(ctx: Any) -> Any:
        raise KeyError("leaked sk_live_CANARY0123456 in a message")

    monkeypatch.setattr(connections, "list_connections", broken)
    result = wb(store, "connection", "list")
    one_line_error(result, "unexpected KeyError", "run with --verbose")
    assert "CANARY" not in result.output
    for verbose in (["--verbose"], ["-v"]):
        shown = wb(store, *verbose, "connection", "list")
        assert shown.exit_code == 1 and shown.stdout == ""
        assert "Traceback" in shown.stderr and "in broken" in shown.stderr and "[redacted]" in shown.stderr
        assert "CANARY" not in shown.stderr
        assert shown.stderr.splitlines()[-1].startswith("error: unexpected KeyError")
    monkeypatch.setenv("WORKBENCH_DEBUG", "1")
    assert "Traceback" in wb(store, "connection", "list").stderr


# -- triage ------------------------------------------------------------------------------------------

def _failure(db_url: str, category: str) -> dict[str, Any]:
    [item] = js(wb(db_url, "failures", "--category", category, "--json"))
    return item


def test_resolve_ignore_assign_note_from_the_command_line(loaded):
    rejected = _failure(loaded, "business_rule_rejection")
    mismatch = _failure(loaded, "contract_mismatch")
    assert wb(loaded, "failures", "resolve", rejected["id"]).exit_code == 2  # --note is required
    one_line_error(wb(loaded, "failures", "resolve", rejected["id"], "--note", "  "), "note")
    result = wb(loaded, "failures", "resolve", rejected["id"], "--note", "provider confirmed")
    assert result.exit_code == 0 and result.stdout.strip() == f"{rejected['id']}: needs_review -> resolved"
    assert wb(loaded, "failures", "ignore", mismatch["id"], "--note", "known drift").exit_code == 0
    assert {f["state"] for f in js(wb(loaded, "failures", "--json"))} == {"resolved", "ignored", "needs_review"}
    validation = _failure(loaded, "validation")
    assigned = wb(loaded, "failures", "assign", validation["id"], "--to", "maria.ops", "--note", "yours")
    assert assigned.exit_code == 0 and "assigned to maria.ops" in assigned.stdout
    assert wb(loaded, "failures", "note", validation["id"], "called the sender").exit_code == 0
    shown = js(wb(loaded, "failures", "show", validation["id"]))
    assert shown["assignee"] == "maria.ops" and [n["note"] for n in shown["notes"]] == ["yours", "called the sender"]
    actions = [orjson.loads(line)["action"] for line in wb(loaded, "audit", "export").stdout_bytes.splitlines()]
    assert actions[-4:] == ["failure.resolve", "failure.ignore", "failure.assign", "failure.note"]
    # a closed failure cannot be retried: reported, exit non-zero
    retried = wb(loaded, "failures", "retry", rejected["id"])
    assert retried.exit_code == 1 and "skipped" in retried.stderr and "reopen" in retried.stderr
    # partly done: the exit status says so
    partial = wb(loaded, "failures", "retry", rejected["id"], validation["id"])
    assert partial.exit_code not in (0, 1) and f"{validation['id']}: retry: invalid" in partial.stdout
    assert js(wb(loaded, "failures", "groups", "--json"))[0]["category"] == "validation"
    assert len(js(wb(loaded, "failures", "groups", "--all", "--json"))) == 3


def test_retry_of_a_rejected_event_keeps_it_in_review(loaded):
    rejected = _failure(loaded, "business_rule_rejection")
    result = wb(loaded, "failures", "retry", rejected["id"], "--note", "again")
    assert result.exit_code == 0 and "retry: rejected" in result.stdout
    after = _failure(loaded, "business_rule_rejection")
    assert after["state"] == "needs_review"
    replayed = [e for e in js(wb(loaded, "events", "--json")) if e["source"] == "replay"]
    assert [(e["verdict"], e["replay_of"]) for e in replayed] == [("rejected", rejected["event_id"])]


# -- timeline ----------------------------------------------------------------------------------------

def test_timeline_by_internal_and_external_id(loaded):
    rejected = _failure(loaded, "business_rule_rejection")
    wb(loaded, "failures", "resolve", rejected["id"], "--note", "provider confirmed")
    by_external = js(wb(loaded, "timeline", "pi_1", "--json"))
    by_internal = js(wb(loaded, "timeline", rejected["record_id"], "--json"))
    assert by_external == by_internal
    assert by_external["record"]["id"] == rejected["record_id"]
    assert by_external["record"]["provider_refs"] == [{"provider": "stripe", "external_id": "pi_1"}]
    entries = by_external["entries"]
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    assert {e["kind"] for e in entries} == {"delivery", "transition", "failure", "note", "audit"}
    assert all(set(e) == {"at", "kind", "id", "summary", "detail"} for e in entries)
    text_view = wb(loaded, "timeline", "pi_1")
    assert text_view.exit_code == 0
    first, *rest = text_view.stdout.splitlines()
    assert rejected["record_id"] in first and "stripe:pi_1" in first and "[completed v2]" in first
    assert len(rest) == len(entries) and any("failure.resolve" in line for line in rest)
    one_line_error(wb(loaded, "timeline", "pi_nowhere"), "pi_nowhere")


# -- replay ------------------------------------------------------------------------------------------

def _out_of_order(store: str) -> None:
    """Completed; a `processing` event refused; then, late, the provider's review status that
    moves the record to review. In provider order the refused event is allowed after all."""
    wb(store, "ingest", "acme", "-", input=lines(pi_event("evt_1", "pi_1", "succeeded", CREATED)))
    wb(store, "ingest", "acme", "-", input=lines(pi_event("evt_3", "pi_1", "processing", CREATED + 60)))
    wb(store, "ingest", "acme", "-", input=lines(pi_event("evt_2", "pi_1", "requires_review", CREATED + 30,
                                                          "payment_intent.updated")))
    assert js(wb(store, "records", "--json"))[0]["status"] == "needs_review"


def test_replay_dry_run_prints_the_change_and_writes_nothing(store):
    _out_of_order(store)
    before = counts(store)
    records_before = js(wb(store, "records", "--json"))
    result = wb(store, "replay", "--dry-run")
    assert result.exit_code == 0
    change, summary = result.stdout.splitlines()
    record_id = records_before[0]["id"]
    assert change.startswith(f"{record_id} (pi_1): needs_review -> processing")
    assert "why: replay under stripe.payment_intent/1" in change
    assert summary == "1 record(s) examined, 1 would change (dry run: nothing written)"
    assert counts(store) == before and js(wb(store, "records", "--json")) == records_before
    as_json = js(wb(store, "replay", "--dry-run", "--json"))
    assert as_json["dry_run"] is True and as_json["examined"] == 1
    assert [(c["record_id"], c["external_id"], c["from"], c["to"]) for c in as_json["changes"]] == [
        (record_id, "pi_1", "needs_review", "processing")]
    assert counts(store) == before


def test_replay_is_idempotent_and_audited(store):
    _out_of_order(store)
    first = wb(store, "replay", "--connection", "acme")
    assert first.exit_code == 0 and first.stdout.splitlines()[-1] == "1 record(s) examined, 1 changed"
    [record] = js(wb(store, "records", "--json"))
    assert (record["status"], record["version"]) == ("processing", 3)
    before = counts(store)
    second = wb(store, "replay", "--record", "pi_1")
    assert second.exit_code == 0 and second.stdout.strip() == "1 record(s) examined, 0 changed"
    after = counts(store)
    assert js(wb(store, "records", "--json")) == [record]
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == {"audit_entries": 1}
    timeline = js(wb(store, "timeline", "pi_1", "--json"))
    assert any(e["kind"] == "transition" and e["detail"]["cause"] == "replay" for e in timeline["entries"])
    assert any(e["kind"] == "audit" and "record.replay" in e["summary"] for e in timeline["entries"])
    one_line_error(wb(store, "replay", "--connection", "nope"), "nope")
    one_line_error(wb(store, "replay", "--record", "pi_nowhere"), "pi_nowhere")


# -- audit -------------------------------------------------------------------------------------------

def test_audit_verify_and_export(loaded):
    rejected = _failure(loaded, "business_rule_rejection")
    wb(loaded, "failures", "resolve", rejected["id"], "--note", "key sk_live_abcdefghijklmnop was pasted here")
    ok = wb(loaded, "audit", "verify")
    assert ok.exit_code == 0 and ok.stdout.strip() == "audit chain intact: 4 entries"
    exported = wb(loaded, "audit", "export")
    assert exported.exit_code == 0
    rows = [orjson.loads(line) for line in exported.stdout_bytes.splitlines()]
    assert [r["seq"] for r in rows] == [1, 2, 3, 4]
    assert [r["action"] for r in rows] == ["access.grant", "connection.add", "ingest.run", "failure.resolve"]
    assert rows[2]["after"]["counts"]["rejected"] == 1
    assert "sk_live_abcdefghijklmnop" not in exported.stdout and "[redacted]" in rows[3]["reason"]


def test_audit_export_to_a_file(loaded, tmp_path):
    out = tmp_path / "trail.jsonl"
    result = wb(loaded, "audit", "export", "-o", str(out))
    assert result.exit_code == 0 and "wrote 3 entries" in result.stderr and result.stdout == ""
    assert [orjson.loads(line)["action"] for line in out.read_bytes().splitlines()] == [
        "access.grant", "connection.add", "ingest.run"]


@pytest.mark.parametrize("tamper, seq", [
    ("UPDATE audit_entries SET reason = 'edited' WHERE seq = 2", 2),
    ("DELETE FROM audit_entries WHERE seq = 2", 2),
    ("DELETE FROM audit_entries WHERE seq = 3", 3),
])
def test_audit_verify_names_the_first_broken_entry(store, tamper, seq):
    for name in ("b", "c"):
        assert wb(store, "connection", "add", name, "--provider", "stripe").exit_code == 0
    engine = open_store(store)
    with writing(engine) as conn:
        conn.execute(text(tamper))
    engine.dispose()
    result = wb(store, "audit", "verify")
    assert result.exit_code not in (0, 1)  # distinct from "could not run"
    assert result.stdout == ""
    assert result.stderr.startswith(f"audit chain broken at entry {seq}:")


# -- demo --------------------------------------------------------------------------------------------

def test_demo_on_a_small_store_shows_every_failure_category_and_stuck_records(db_url):
    assert wb(db_url, "db", "upgrade").exit_code == 0
    result = wb(db_url, "demo", "--records", "300")
    assert result.exit_code == 0, result.output
    assert "connections: 4" in result.stdout and "records: 300" in result.stdout
    failures = js(wb(db_url, "failures", "--json"))
    assert {f["category"] for f in failures} == {str(c) for c in Category}
    stuck = {r["status"] for r in js(wb(db_url, "records", "--json"))} & {"needs_review", "processing"}
    assert stuck == {"needs_review", "processing"}
    assert {f["state"] for f in failures} >= {"needs_review", "retrying", "resolved", "ignored"}
    assert any(f["assignee"] == "maria.ops" for f in failures)
    assert any(c["paused"] for c in js(wb(db_url, "connection", "list", "--json")))
    assert wb(db_url, "audit", "verify").exit_code == 0
    # the summary's counts are the ones `failures --state` finds, in its names
    [by_state] = [line for line in result.stdout.splitlines() if line.startswith("failures: ")]
    printed = dict(reversed(part.split(" ")) for part in by_state.removeprefix("failures: ").split(" (")[0].split(", "))
    for state, count in printed.items():
        assert len(js(wb(db_url, "failures", "--state", state, "--json"))) == int(count)
    unresolved = js(wb(db_url, "failures", "--state", "unresolved", "--json"))
    assert f"({len(unresolved)} unresolved: `workbench failures --state unresolved`)" in by_state
    assert {f["state"] for f in unresolved} <= {"open", "retrying", "needs_review"}
    assert len(unresolved) == sum(int(printed.get(s, 0)) for s in ("open", "retrying", "needs_review"))
    [by_category] = [line for line in result.stdout.splitlines() if line.startswith("unresolved failures by")]
    assert sum(int(part.split(" ")[0]) for part in by_category.split(": ")[1].split(", ")) == len(unresolved)
    again = wb(db_url, "demo", "--if-empty")
    assert again.exit_code == 0 and "already has data" in again.stdout
    one_line_error(wb(db_url, "demo", "--records", "10"), "already")


# -- end to end: the installed executable -----------------------------------------------------------

def run(db_url: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "WORKBENCH_DB": db_url}
    return subprocess.run([str(WORKBENCH), *args], input=stdin, capture_output=True, env=env, timeout=120)


def test_end_to_end_stdin_exit_codes_and_streams(store):
    data = lines(pi_event("evt_1", "pi_1", "processing", CREATED), "garbage", pi_event("evt_2", "pi_1", "succeeded",
                                                                                      CREATED + 1))
    ingested = run(store, "ingest", "acme", "-", stdin=data)
    assert ingested.returncode == 3
    assert ingested.stdout.decode().splitlines() == ["applied\t2", "total\t2"]
    assert ingested.stderr.decode().startswith("line 2: skipped:")
    listed = run(store, "records", "--json")
    assert listed.returncode == 0 and orjson.loads(listed.stdout)[0]["status"] == "completed"
    missing = run(store, "ingest", "nope", "-", stdin=data)
    assert missing.returncode == 1 and missing.stdout == b""
    assert missing.stderr.decode() == "error: unknown connection 'nope'\n"
    assert run(store, "audit", "verify").returncode == 0
    engine = open_store(store)
    with writing(engine) as conn:
        conn.execute(text("UPDATE audit_entries SET actor = 'user:mallory' WHERE seq = 1"))
    engine.dispose()
    broken = run(store, "audit", "verify")
    assert broken.returncode == 4 and b"entry 1" in broken.stderr and b"Traceback" not in broken.stderr
