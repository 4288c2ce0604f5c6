"""`workbench connection secret ...|show|diff|export|import` as scripts and people use them, on
both backends: words, JSON keys, exit codes, one-line refusals, and a canary secret that must
never reach an output, the store or an export."""

from __future__ import annotations

import gc
import os
import select as io_select
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from store.database import open_store, reading
from store.models import Base
from tests.support import table_counts
from workbench.cli.main import cli
from workbench.services import connections
from workbench.services.context import ServiceContext
from workbench.vault import KdfParams, create, vault_path

PASS = "correct horse battery"
CHEAP = KdfParams(memory_kib=1024, iterations=1, lanes=1)
WORKBENCH = Path(sys.executable).with_name("workbench")
CANARY = "whsec_CanaryWebhookSecret0123456789"
KEY_CANARY = "sk_test_CanaryApiKey0123456789"


@pytest.fixture(autouse=True)
def _release_engines():
    yield
    gc.collect(1)  # each invocation opened its own engine (in a reference cycle): close them


def wb(db_url: str, *args: str, input: bytes | str | None = None, passphrase: str | None = PASS) -> Result:
    env = {"WORKBENCH_VAULT_PASSPHRASE": passphrase}
    return CliRunner().invoke(cli, ["--db", db_url, *args], input=input, env=env, catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def js(result: Result) -> Any:
    return orjson.loads(ok(result))


def one_line_error(result: Result, *words: str, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def store_text(db_url: str) -> str:
    """Everything the store holds, as text: every row of every table, and on SQLite the raw
    bytes of the database and its write-ahead log (free pages included)."""
    engine = open_store(db_url)
    try:
        with reading(engine) as conn:
            rows = [repr(row) for table in Base.metadata.tables.values() for row in conn.execute(select(table))]
    finally:
        engine.dispose()
    text = "\n".join(rows)
    if db_url.startswith("sqlite:///"):
        path = Path(db_url.removeprefix("sqlite:///"))
        for part in (path, path.with_name(path.name + "-wal")):
            if part.exists():
                text += part.read_bytes().decode("latin-1")
    return text


@pytest.fixture
def store(db_url: str) -> str:
    """An upgraded store with connection `acme` (Stripe, sandbox) and a sandbox vault."""
    ok(wb(db_url, "db", "upgrade"))
    ok(wb(db_url, "connection", "add", "acme", "--provider", "stripe"))
    create(vault_path("sandbox"), "sandbox", PASS, params=CHEAP)  # cheap KDF: the header records it
    return db_url


def add_secret(store: str, kind: str = "webhook_secret", value: str = CANARY, *extra: str) -> str:
    out = ok(wb(store, "connection", "secret", "add", "acme", "--kind", kind, *extra, input=value + "\n"))
    assert out.startswith(f"added {kind} acme-{kind.replace('_', '-')}-"), out
    return out.split()[2]


def listed(store: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = js(wb(store, "connection", "secret", "list", "acme", "--json"))
    return result


# -- secret add / list / retire ---------------------------------------------------------------------


def test_secret_add_list_retire(store: str) -> None:
    first = add_secret(store, "webhook_secret", CANARY, "--expires-in", "90d", "--reason", "new endpoint")
    second = add_secret(store, "webhook_secret", CANARY + "2")  # two active at once: a rotation
    key = add_secret(store, "api_key", KEY_CANARY, "--expires-in", "P30D")
    items = listed(store)
    assert [i["name"] for i in items] == [first, second, key]
    assert set(items[0]) == {"name", "kind", "environment", "added_at", "expires_at", "retired_at", "state"}
    assert [i["state"] for i in items] == ["active", "active", "active"]
    assert items[0]["expires_at"] is not None and items[1]["expires_at"] is None
    out = ok(wb(store, "connection", "secret", "retire", "acme", first, "--reason", "rotated"))
    assert out.startswith(f"retired {first} of acme at ")
    items = listed(store)
    assert items[0]["state"] == "retired" and items[0]["retired_at"] is not None
    table = ok(wb(store, "connection", "secret", "list", "acme"))
    assert table.splitlines()[0].split() == ["NAME", "KIND", "ADDED_AT", "EXPIRES_AT", "RETIRED_AT", "STATE"]
    assert f"{first}  webhook_secret" in table and "retired" in table
    history = js(wb(store, "connection", "show", "acme", "--history", "--json"))["history"]
    assert [(h["version"], h["actor"].startswith("user:"), h["reason"]) for h in history] == [
        (1, True, "created"), (2, True, "new endpoint"), (3, True, None), (4, True, None), (5, True, "rotated")]
    audit = orjson.loads(ok(wb(store, "audit", "export")).splitlines()[-1])
    assert audit["action"] == "connection.secret.retire"
    vault = js(wb(store, "vault", "list", "--json"))
    assert sorted(v["name"] for v in vault) == sorted([first, second, key])


def test_secret_values_reach_no_output_no_store_and_no_export(store: str, tmp_path: Path, audit_key_file: Path) -> None:
    outputs = [wb(store, "connection", "secret", "add", "acme", "--kind", "webhook_secret", input=CANARY + "\n"),
               wb(store, "connection", "secret", "add", "acme", "--kind", "api_key", input=KEY_CANARY)]
    name = outputs[0].stdout.split()[2]
    export = tmp_path / "acme.toml"
    outputs += [
        wb(store, "connection", "secret", "list", "acme"), wb(store, "connection", "secret", "list", "acme", "--json"),
        wb(store, "connection", "show", "acme", "--history"), wb(store, "connection", "show", "acme", "--json", "--history"),
        wb(store, "connection", "diff", "acme", "1", "3"), wb(store, "connection", "diff", "acme", "1", "3", "--json"),
        wb(store, "connection", "export", "acme", "-o", str(export)), wb(store, "connection", "export", "acme", "-o", "-"),
        wb(store, "connection", "secret", "retire", "acme", name, "--reason", "done"),
        wb(store, "audit", "export"), wb(store, "connection", "list", "--json"),
    ]
    for result in outputs:
        assert result.exit_code == 0, result.output
        assert CANARY not in result.output and KEY_CANARY not in result.output
    assert name in export.read_text()
    # Every file the workbench keeps: the store, the export, the vault directory (the vault is
    # encrypted) and the audit key's directory (checkpoints).
    files = [p for d in (tmp_path, Path(os.environ["WORKBENCH_VAULT_DIR"])) for p in d.rglob("*") if p.is_file()]
    assert vault_path("sandbox") in files and audit_key_file in files
    for where in [store_text(store), *(p.read_bytes().decode("latin-1") for p in files)]:
        assert CANARY not in where and KEY_CANARY not in where and "CanaryWebhook" not in where


def test_a_failed_version_shows_no_value_even_in_a_traceback(store: str, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")  # the new version's audit entry cannot be written: its key is unreachable
    before = table_counts(store)
    result = CliRunner().invoke(cli, ["--db", store, "--verbose", "connection", "secret", "add", "acme", "--kind",
                                      "api_key"], input=KEY_CANARY,
                                env={"WORKBENCH_VAULT_PASSPHRASE": PASS, "WORKBENCH_AUDIT_KEY_FILE": str(blocker / "k")})
    assert result.exit_code == 1 and "Traceback" in result.stderr  # --verbose: the traceback, redacted
    assert result.stderr.strip().splitlines()[-1].endswith("the secret was not added (its value was removed from "
                                                          "the vault again)")
    assert KEY_CANARY not in result.output and "CanaryApiKey" not in result.output
    assert table_counts(store) == before and js(wb(store, "vault", "list", "--json")) == []


def test_secret_add_on_a_terminal_asks_twice_without_echo(store: str) -> None:
    value = KEY_CANARY.encode() + b"\n"
    code, seen = on_a_terminal(["--db", store, "connection", "secret", "add", "acme", "--kind", "api_key"],
                               (b"Passphrase for the sandbox vault", PASS.encode() + b"\n"),
                               (b"Value for the acme api_key", value), (b"Repeat for confirmation", value))
    assert code == 0 and "added api_key acme-api-key-" in seen, seen
    assert KEY_CANARY not in seen and PASS not in seen  # hidden input: the terminal never showed it
    assert [item["kind"] for item in listed(store)] == ["api_key"]


def test_secret_add_refusals_write_nothing(store: str) -> None:
    before = table_counts(store)
    one_line_error(wb(store, "connection", "secret", "add", "acme", "--kind", "password", input="x"),
                   "unknown secret kind 'password'", code=2)
    one_line_error(wb(store, "connection", "secret", "add", "acme", "--kind", "api_key", "--expires-in", "90x",
                      input="x"), "--expires-in: '90x' is not a duration", "90d", code=2)
    one_line_error(wb(store, "connection", "secret", "add", "acme", "--kind", "api_key", "--expires-in", "0d",
                      input="x"), "not a positive duration", code=2)
    one_line_error(wb(store, "connection", "secret", "add", "ghost", "--kind", "api_key", input="x"),
                   "unknown connection 'ghost'")
    one_line_error(wb(store, "connection", "secret", "add", "acme", "--kind", "api_key", input=KEY_CANARY,
                      passphrase=None), "WORKBENCH_VAULT_PASSPHRASE")
    wrong = one_line_error(wb(store, "connection", "secret", "add", "acme", "--kind", "api_key", input=KEY_CANARY,
                              passphrase="not the passphrase"))
    assert "passphrase" in wrong
    one_line_error(wb(store, "connection", "secret", "add", "acme", "--kind", "api_key", input=""), "empty", code=2)
    assert table_counts(store) == before
    assert js(wb(store, "vault", "list", "--json")) == []


def test_secret_add_to_a_live_connection_needs_the_live_vault(store: str) -> None:
    ok(wb(store, "connection", "add", "globex", "--provider", "stripe", "--environment", "live"))
    one_line_error(wb(store, "connection", "secret", "add", "globex", "--kind", "api_key", input="sk_live_x"),
                   "no live vault")
    create(vault_path("live"), "live", PASS, params=CHEAP)
    out = ok(wb(store, "connection", "secret", "add", "globex", "--kind", "api_key", input="sk_live_x"))
    assert "stored in the live vault" in out
    assert js(wb(store, "vault", "list", "--json")) == []  # the sandbox vault is untouched


def test_secret_retire_and_list_refusals(store: str) -> None:
    name = add_secret(store)
    one_line_error(wb(store, "connection", "secret", "retire", "acme", "nope", "--reason", "r"), "has no secret 'nope'")
    one_line_error(wb(store, "connection", "secret", "retire", "ghost", name, "--reason", "r"), "unknown connection")
    one_line_error(wb(store, "connection", "secret", "list", "ghost"), "unknown connection 'ghost'")
    assert wb(store, "connection", "secret", "retire", "acme", name).exit_code == 2  # --reason is required
    ok(wb(store, "connection", "secret", "retire", "acme", name, "--reason", "r"))
    one_line_error(wb(store, "connection", "secret", "retire", "acme", name, "--reason", "r"), "was retired at")


# -- show / diff ------------------------------------------------------------------------------------


def test_show_and_history_say_who_changed_what_and_why(store: str) -> None:
    name = add_secret(store, "webhook_secret", CANARY, "--reason", "first secret")
    shown = js(wb(store, "connection", "show", "acme", "--json"))
    assert set(shown) == {"id", "name", "provider", "environment", "paused", "version", "settings"}
    assert shown["version"] == 2 and shown["settings"]["secrets"][0]["name"] == name
    assert "history" not in shown
    text = ok(wb(store, "connection", "show", "acme", "--history"))
    assert text.splitlines()[0].split() == ["acme", "stripe", "sandbox", "active", "version", "2"]
    assert "  settings.sync.interval_s = 300" in text and name in text
    rows = text.split("history:\n")[1].splitlines()
    assert rows[0].split() == ["VERSION", "AT", "ACTOR", "REASON", "CHANGED"]
    assert rows[1].split()[0] == "1" and rows[1].endswith("(created)")
    assert rows[2].split()[0] == "2" and "first secret" in rows[2] and rows[2].endswith("settings.secrets")
    history = js(wb(store, "connection", "show", "acme", "--history", "--json"))["history"]
    assert set(history[1]) == {"version", "actor", "at", "reason", "snapshot", "changes"}
    assert history[1]["changes"][0]["path"] == "settings.secrets" and history[1]["changes"][0]["change"] == "added"
    one_line_error(wb(store, "connection", "show", "ghost"), "unknown connection 'ghost'")


def test_diff_names_each_changed_field(store: str, tmp_path: Path) -> None:
    name = add_secret(store)
    ok(wb(store, "connection", "secret", "retire", "acme", name, "--reason", "rotated"))
    result = js(wb(store, "connection", "diff", "acme", "2", "3", "--json"))
    assert result["from"]["version"] == 2 and result["to"]["reason"] == "rotated"
    [change] = result["changes"]
    assert change["path"] == "settings.secrets.0.retired_at" and change["change"] == "changed"
    assert change["before"] is None and change["after"].startswith("20")
    text = ok(wb(store, "connection", "diff", "acme", "2", "3"))
    assert text.splitlines()[1].startswith("~ settings.secrets.0.retired_at: null -> \"20")
    added = js(wb(store, "connection", "diff", "acme", "1", "2", "--json"))["changes"]
    assert [(c["path"], c["change"]) for c in added] == [("settings.secrets", "added")]
    assert "no differences" in ok(wb(store, "connection", "diff", "acme", "2", "2"))
    one_line_error(wb(store, "connection", "diff", "acme", "1", "9"), "no version 9", "1 to 3")
    one_line_error(wb(store, "connection", "diff", "ghost", "1", "2"), "unknown connection")
    assert wb(store, "connection", "diff", "acme", "0", "1").exit_code == 2


# -- export / import --------------------------------------------------------------------------------


def test_export_then_import_is_no_change(store: str, tmp_path: Path) -> None:
    add_secret(store, "webhook_secret", CANARY, "--expires-in", "12h")
    add_secret(store, "api_key", KEY_CANARY)
    path = tmp_path / "acme.toml"
    assert ok(wb(store, "connection", "export", "acme", "-o", str(path))) == f"exported acme to {path}\n"
    document = tomllib.loads(path.read_text())
    assert document["name"] == "acme" and document["settings"]["sync"]["interval_s"] == 300
    assert [s["kind"] for s in document["settings"]["secrets"]] == ["webhook_secret", "api_key"]
    before = table_counts(store)
    out = ok(wb(store, "connection", "import", str(path)))  # no --yes, no terminal: nothing to ask
    assert out == f"no changes: acme is already as {path} says (version 3)\n"
    assert table_counts(store) == before


def edited(tmp_path: Path, store: str, old: str, new: str, name: str = "acme.toml") -> Path:
    path = tmp_path / name
    ok(wb(store, "connection", "export", "acme", "-o", str(path)))
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


def test_import_shows_the_diff_and_writes_one_version(store: str, tmp_path: Path) -> None:
    path = edited(tmp_path, store, "interval_s = 300", "interval_s = 900")
    out = ok(wb(store, "connection", "import", str(path), "--yes", "--reason", "quieter"))
    assert out.splitlines() == ["acme: version 1 -> 2", "~ settings.sync.interval_s: 300 -> 900",
                                f"updated connection acme from {path} (version 2)"]
    shown = js(wb(store, "connection", "show", "acme", "--history", "--json"))
    assert shown["version"] == 2 and shown["settings"]["sync"]["interval_s"] == 900
    assert shown["history"][-1]["reason"] == "quieter"
    audit = orjson.loads(ok(wb(store, "audit", "export")).splitlines()[-1])
    assert audit["action"] == "connection.import" and audit["reason"] == "quieter"


def on_a_terminal(args: list[str], *dialogue: tuple[bytes, bytes]) -> tuple[int, str]:
    """Run the installed `workbench` with a pseudo-terminal as its standard streams, answer each
    (prompt, answer) in turn, and return its exit status and everything the terminal showed."""
    master, slave = os.openpty()
    process = subprocess.Popen([str(WORKBENCH), *args], stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    seen, waiting = b"", list(dialogue)
    try:
        while True:
            ready, _, _ = io_select.select([master], [], [], 30)
            assert ready, f"no output within 30 s: {seen!r}"
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if waiting and waiting[0][0] in seen:
                os.write(master, waiting.pop(0)[1])
        return process.wait(timeout=30), seen.decode(errors="replace").replace("\r\n", "\n")
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()


def test_import_without_yes_asks_on_a_terminal_and_refuses_without_one(store: str, tmp_path: Path) -> None:
    path = edited(tmp_path, store, "interval_s = 300", "interval_s = 300\n\n[settings.rate_limit]\nper_second = 10")
    before = table_counts(store)
    one_line_error(wb(store, "connection", "import", str(path)), "needs a confirmation", "--yes")
    assert table_counts(store) == before
    # On a terminal it shows the diff and asks; "n" leaves everything as it was.
    args = ["--db", store, "connection", "import", str(path), "--reason", "slower"]
    code, seen = on_a_terminal(args, (b"Apply these changes?", b"n\n"))
    assert code == 1 and '+ settings.rate_limit: {"per_second":10}' in seen, seen
    assert "error: nothing was imported" in seen
    assert table_counts(store) == before
    code, seen = on_a_terminal(args, (b"Apply these changes?", b"y\n"))
    assert code == 0 and "updated connection acme" in seen, seen
    shown = js(wb(store, "connection", "show", "acme", "--json", "--history"))
    assert shown["settings"]["rate_limit"]["per_second"] == 10 and shown["history"][-1]["reason"] == "slower"


def test_import_from_standard_input_needs_yes(store: str, tmp_path: Path) -> None:
    text = edited(tmp_path, store, "interval_s = 300", "interval_s = 60").read_text()
    one_line_error(wb(store, "connection", "import", "-", input=text), "needs --yes", code=2)
    out = ok(wb(store, "connection", "import", "-", "--yes", input=text))
    assert "~ settings.sync.interval_s: 300 -> 60" in out and out.endswith("from - (version 2)\n")


def test_import_creates_a_connection_that_does_not_exist(store: str, tmp_path: Path) -> None:
    path = edited(tmp_path, store, 'name = "acme"', 'name = "globex"')
    out = ok(wb(store, "connection", "import", str(path), "--yes"))
    assert out.splitlines()[0] == "creates connection globex (stripe, sandbox)"
    assert out.splitlines()[-1] == f"created connection globex from {path} (version 1)"
    shown = js(wb(store, "connection", "show", "globex", "--history", "--json"))
    assert shown["version"] == 1 and shown["settings"] == {"sync": {"interval_s": 300}}
    assert shown["history"][0]["reason"] == "imported"


@pytest.mark.parametrize(("old", "new", "words"), [
    ("interval_s = 300", "interval_s = -5", ("settings.sync.interval_s: Input should be greater than 0",)),
    ("interval_s = 300", 'interval_s = "300"', ("settings.sync.interval_s: Input should be a valid integer",)),
    ("interval_s = 300", "interval_s = 300\n\n[settings.rate_limit]\nper_second = 25\nburst = 3",
     ("settings.rate_limit.burst: Extra inputs are not permitted",)),
    ('kind = "api_key"', 'kind = "password"', ("settings.secrets.0.kind: Input should be 'api_key' or 'webhook_secret'",)),
    ('environment = "sandbox"\n\n', 'environment = "staging"\n\n', ("environment: Input should be 'sandbox' or 'live'",)),
    ('name = "acme"', 'name = "a b"', ("name: String should match pattern",)),
    ('provider = "stripe"', 'provider = "paypal"', ("provider: the file says 'paypal' but connection 'acme' is 'stripe'",)),
    ("[settings.sync]", "[settings.schedule]\ncron = \"* * * * *\"\n\n[settings.sync]",
     ("settings.schedule: Extra inputs are not permitted",)),
    ("interval_s = 300", "interval_s = 300\nretention = { raw_days = 0 }", ("settings.sync.retention",)),
])
def test_import_refuses_an_invalid_file_naming_the_field(store: str, tmp_path: Path, old: str, new: str,
                                                         words: tuple[str, ...]) -> None:
    add_secret(store, "api_key", KEY_CANARY)
    path = edited(tmp_path, store, old, new)
    before = table_counts(store)
    one_line_error(wb(store, "connection", "import", str(path), "--yes"), str(path), *words, code=2)
    assert table_counts(store) == before


def test_import_refuses_what_is_not_toml_with_its_line(store: str, tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "acme"\nprovider = "stripe"\nenvironment = sandbox\n')
    one_line_error(wb(store, "connection", "import", str(path), "--yes"), "is not valid TOML", "line 3", code=2)
    path.write_bytes(b'name = "\xff"\n')
    one_line_error(wb(store, "connection", "import", str(path), "--yes"), "not UTF-8", code=2)
    one_line_error(wb(store, "connection", "import", str(tmp_path / "missing.toml"), "--yes"), "cannot read")
    new = tmp_path / "new.toml"
    new.write_text('name = "globex"\nprovider = "paypal"\nenvironment = "sandbox"\n')
    one_line_error(wb(store, "connection", "import", str(new), "--yes"), "provider: unknown provider", code=2)
    secret_elsewhere = tmp_path / "mixed.toml"
    secret_elsewhere.write_text('name = "acme"\nprovider = "stripe"\nenvironment = "sandbox"\n[[settings.secrets]]\n'
                                'name = "k"\nkind = "api_key"\nenvironment = "live"\nadded_at = 2026-01-01T00:00:00Z\n')
    one_line_error(wb(store, "connection", "import", str(secret_elsewhere), "--yes"),
                   "settings.secrets.0.environment", code=2)


def test_export_refusals_leave_no_file(store: str, tmp_path: Path) -> None:
    out = tmp_path / "exports"
    out.mkdir()
    one_line_error(wb(store, "connection", "export", "ghost", "-o", str(out / "g.toml")), "unknown connection")
    assert wb(store, "connection", "export", "acme").exit_code == 2  # -o is required
    one_line_error(wb(store, "connection", "export", "acme", "-o", str(out / "no-such-dir" / "a.toml")),
                   "cannot write", "nothing was written")
    assert list(out.iterdir()) == []


def test_an_export_masks_what_redaction_catches_and_says_so(store: str, tmp_path: Path) -> None:
    leaky = tmp_path / "leaky.toml"  # a reference named like a live key: never written out as it is
    leaky.write_text('name = "acme"\nprovider = "stripe"\nenvironment = "sandbox"\n[[settings.secrets]]\n'
                     'name = "sk_live_51LeakyNameAbCdEf0123"\nkind = "api_key"\nenvironment = "sandbox"\n'
                     'added_at = 2026-01-01T00:00:00Z\n')
    assert "sk_live_51Leaky" not in ok(wb(store, "connection", "import", str(leaky), "--yes"))
    path = tmp_path / "acme.toml"
    result = wb(store, "connection", "export", "acme", "-o", str(path))
    assert result.exit_code == 0 and "warning: redaction masked settings.secrets.0.name" in result.stderr
    assert "sk_live_51Leaky" not in path.read_text() + result.output
    for shown in (("secret", "list", "acme"), ("secret", "list", "acme", "--json"), ("show", "acme", "--history"),
                  ("show", "acme", "--json", "--history"), ("diff", "acme", "1", "2", "--json")):
        assert "sk_live_51Leaky" not in ok(wb(store, "connection", *shown))
    one_line_error(wb(store, "connection", "import", str(path), "--yes"), "settings.secrets.0.name", code=2)


def test_round_trip_keeps_payload_and_retention_settings(store: str, ctx: ServiceContext, tmp_path: Path) -> None:
    def with_payload_keys(settings: dict[str, Any]) -> dict[str, Any]:  # as `connection set` (issue 9) writes them
        return {**settings, "payloads": {"encrypt": True}, "retention": {"raw_days": None}, "rate_limit": {"per_second": 2.5}}

    connections.update_settings(ctx, "acme", with_payload_keys, "connection.set", "encrypt")
    add_secret(store, "api_key", KEY_CANARY, "--expires-in", "30m")
    path = tmp_path / "acme.toml"
    ok(wb(store, "connection", "export", "acme", "-o", str(path)))
    document = tomllib.loads(path.read_text())
    assert document["settings"]["payloads"] == {"encrypt": True} and document["settings"]["retention"] == {}
    assert ok(wb(store, "connection", "import", str(path))).startswith("no changes: acme is already as")
    path.write_text(path.read_text().replace("[settings.retention]\n", "[settings.retention]\nraw_days = 30\n"))
    out = ok(wb(store, "connection", "import", str(path), "--yes"))
    assert "~ settings.retention.raw_days: null -> 30" in out.splitlines()
    assert js(wb(store, "connection", "show", "acme", "--json"))["settings"]["retention"] == {"raw_days": 30}
