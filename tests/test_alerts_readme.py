"""The README's "Alerting" walk-through runs as written (a Slack-compatible webhook against the
local test endpoint, through the real `workbench` executable), and a failing notifier shows in
`workbench alerts`; ack and resolve from the command line."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path

from click.testing import CliRunner, Result

from store.database import open_store, writing
from tests.engine_harness import WORKBENCH, env_for
from tests.engine_support import PASS, vault
from tests.support import add_stripe, make_context
from workbench.cli.main import cli as cli_group
from workbench.services import alert_signals, connections, vault as vault_service

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block() -> str:
    text = README.read_text()
    start = text.index("A Slack-compatible webhook end to end")
    match = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert match is not None
    return match.group(1)


def shell_env(db_url: str) -> dict[str, str]:
    env = env_for(db_url)
    env["PATH"] = f"{Path(WORKBENCH).parent}:{env.get('PATH', '')}"  # `workbench` as the README types it
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_readme_slack_walkthrough_works_as_written(tmp_path: Path) -> None:
    # The shell commands as the README gives them, through the installed executable: SQLite
    # only (they are the same on PostgreSQL; the next test covers both backends in-process).
    db_url = f"sqlite:///{tmp_path / 'workbench.db'}"
    engine = open_store(db_url, create=True, auto_upgrade=True)
    try:
        ctx = make_context(engine)
        add_stripe(ctx, "acme")
        vault()  # the sandbox vault exists (tests.engine_support.PASS, as env_for passes it)
    finally:
        engine.dispose()
    port = free_port()
    script = readme_block().replace("8787", str(port))
    done = subprocess.run(["bash", "-euc", "trap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + script],
                          cwd=tmp_path, env=shell_env(db_url), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "slack (webhook): sent" in lines and "log (log): sent" in lines and lines[-1] == "1"
    received = (tmp_path / "notices.log").read_text()
    assert received.startswith("/slack [TEST] outage-burst on acme: a test notice")
    assert f"{port}/slack" not in done.stdout + done.stderr  # the webhook URL is a secret



def run(db_url: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli_group, ["--db", db_url, *args], catch_exceptions=False, env=env)


def test_alerts_from_the_command_line(db_url: str) -> None:
    engine = open_store(db_url, auto_upgrade=True)
    try:
        ctx = make_context(engine)
        acme = connections.add_connection(ctx, "acme", "stripe", "sandbox", settings={"alerts": {
            "notifiers": [{"name": "slack", "kind": "webhook", "format": "slack",
                           "url_secret": {"name": "alerts-slack-url"}}],
            "rules": [{"name": "outage", "category": "provider_outage", "notifiers": ["slack", "log"]}]}})
        unlocked = vault()
        vault_service.set_secret(ctx, unlocked, "alerts-slack-url", f"http://127.0.0.1:{free_port()}/x")
        with writing(engine) as conn:
            alert_signals.emit(conn, ctx, alert_signals.Signal("breaker.opened", acme.id, "critical", "open"))
    finally:
        engine.dispose()
    # A notifier pointed at nothing: `alerts test` says which failed, exit 1; a locked vault too.
    failed = run(db_url, "alerts", "test", "outage", env={"WORKBENCH_VAULT_PASSPHRASE": PASS})
    assert failed.exit_code == 1
    assert failed.output.splitlines() == ["slack (webhook): FAILED: could not reach the webhook (ConnectError)",
                                          "log (log): sent"]
    locked = run(db_url, "alerts", "test", "outage", env={"WORKBENCH_VAULT_PASSPHRASE": ""})
    assert locked.exit_code == 1 and "the sandbox vault is locked" in locked.output
    unknown = run(db_url, "alerts", "test", "nope")
    assert unknown.exit_code == 1 and "no rule named 'nope'" in unknown.output

    listed = json.loads(run(db_url, "alerts", "--json").output)
    [alert] = listed["alerts"]
    assert (alert["rule"], alert["state"], alert["count"]) == ("breaker.opened", "open", 1)
    no_note = run(db_url, "alerts", "ack", alert["id"], "--note", " ")
    assert no_note.exit_code == 2 and "a note is required: say why (--note)" in no_note.output
    acked = run(db_url, "alerts", "ack", alert["id"], "--note", "on it")
    assert acked.exit_code == 0 and acked.output.strip() == f"{alert['id']}: acknowledged (breaker.opened on acme)"
    shown = run(db_url, "alerts", "show", alert["id"])
    assert "state: acknowledged" in shown.output and "notice opened via log: pending after 0 tries" in shown.output
    resolved = run(db_url, "alerts", "resolve", alert["id"], "--note", "fixed")
    assert resolved.exit_code == 0 and "resolved" in resolved.output
    assert run(db_url, "alerts").output.strip() == "no open alerts"
    assert "breaker.opened" in run(db_url, "alerts", "--state", "all").output
    defaults = CliRunner().invoke(cli_group, ["--db", db_url, "alerts", "defaults", "--set", "-", "--json"],
                                  input='[[rules]]\nname = "any-timeout"\ncategory = "timeout"\n')
    assert defaults.exit_code == 0 and json.loads(defaults.output)["source"] == "store"
    assert 'name = "any-timeout"' in run(db_url, "alerts", "defaults").output
    bad = CliRunner().invoke(cli_group, ["--db", db_url, "alerts", "defaults", "--set", "-"],
                             input='[[rules]]\nname = "x"\ncategory = "nope"\n')
    assert bad.exit_code == 2 and "rules.0.category: unknown category" in bad.output
    missing = run(db_url, "alerts", "ack", "alr_nope", "--note", "x")
    assert missing.exit_code == 1 and "no alert 'alr_nope'" in missing.output and "Traceback" not in missing.output
