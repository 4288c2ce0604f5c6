"""`workbench alerts [--json]`, `alerts show ID`, `alerts ack|resolve ID --note TEXT`,
`alerts test RULE`."""

from __future__ import annotations

import sys

import click

from workbench.services import alert_notify, alerts as alert_service
from workbench.services.errors import InvalidArgument

from .output import json_value, table
from .support import State, pass_state
from .vault_access import CommandVaults


@click.group("alerts", invoke_without_command=True)
@click.option("--state", "state_name", type=click.Choice(["open", "acknowledged", "resolved", "all"]),
              help="Alerts in this state (default: open and acknowledged ones).")
@click.option("--connection", "connection_name", help="Only this connection's alerts.")
@click.option("--json", "as_json", is_flag=True, help='{"alerts": [...], "notifiers": [...]} as JSON.')
@click.pass_context
def alerts(click_ctx: click.Context, state_name: str | None, connection_name: str | None, as_json: bool) -> None:
    """Alerts (open and acknowledged ones) and how each notifier is doing; with a subcommand,
    act on one."""
    if click_ctx.invoked_subcommand is not None:
        return
    state: State = click_ctx.obj
    found = alert_service.list_alerts(state.ctx, state=state_name, connection=connection_name)
    health = alert_service.notifier_health(state.ctx)
    if as_json:
        json_value({"alerts": found, "notifiers": [h.as_json() for h in health]})
        return
    if not found:
        click.echo("no alerts" if state_name == "all" else f"no {state_name or 'open'} alerts")
    else:
        table(((a["id"], a["connection"], a["rule"], a["severity"], a["state"], a["count"], a["last_seen_at"],
                a["summary"]) for a in found),
              ["id", "connection", "rule", "severity", "state", "count", "last seen", "summary"],
              [30, 16, 20, 8, 12, 6, 25, 60])
    for h in health:
        if h.status != "ok":
            click.echo(f"notifier {h.notifier} ({h.connection}) is FAILING: {h.last_error}"
                       + (" (given up on)" if h.status == "gave up" else " (retrying)"), err=True)


@alerts.command("show")
@click.argument("alert_id")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def alerts_show(state: State, alert_id: str, as_json: bool) -> None:
    """One alert with its notices and how each went."""
    found = alert_service.get_alert(state.ctx, alert_id)
    if as_json:
        json_value(found)
        return
    for key in ("id", "connection", "rule", "severity", "state", "count", "summary", "first_seen_at",
                "last_seen_at", "last_notified_at", "acknowledged_by", "resolved_by", "note"):
        if found.get(key) is not None:
            click.echo(f"{key}: {found[key]}")
    for n in found["notifications"]:
        click.echo(f"notice {n['kind']} via {n['notifier']}: {n['status']} after {n['attempts']} tries"
                   + (f" (last error: {n['last_error']})" if n["last_error"] else ""))


def _operator_action(action: str) -> click.Command:
    @click.argument("alert_id")
    @click.option("--note", required=True, help="Why: kept on the alert and in the audit trail.")
    @click.option("--json", "as_json", is_flag=True)
    @pass_state
    def command(state: State, alert_id: str, note: str, as_json: bool) -> None:
        act = alert_service.acknowledge if action == "ack" else alert_service.resolve
        found = act(state.ctx, alert_id, note)
        if as_json:
            json_value(found)
        else:
            click.echo(f"{found['id']}: {found['state']} ({found['rule']} on {found['connection']})")
    command.__doc__ = ("Acknowledge an alert: someone is on it, so no more repeat notices."
                       if action == "ack" else "Resolve an alert by hand (no recovery notice is sent).")
    return click.command(action)(command)


alerts.add_command(_operator_action("ack"))
alerts.add_command(_operator_action("resolve"))


@alerts.command("test")
@click.argument("rule")
@click.option("--connection", "connection_name", help="The connection whose rule RULE is meant.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def alerts_test(state: State, rule: str, connection_name: str | None, as_json: bool) -> None:
    """Send a test notice through RULE's notifiers now and say which succeeded (webhook URLs
    come from the vault: WORKBENCH_VAULT_PASSPHRASE or a prompt)."""
    outcomes = alert_notify.test_rule(state.ctx, rule, connection_name, CommandVaults())
    if as_json:
        json_value({"rule": rule, "notifiers": [o.as_json() for o in outcomes]})
    else:
        for o in outcomes:
            click.echo(f"{o.notifier} ({o.kind}): " + ("sent" if o.ok else f"FAILED: {o.error}"))
    if not all(o.ok for o in outcomes):
        sys.exit(1)


COMMANDS = (alerts,)


@alerts.command("endpoint")
@click.option("--port", type=click.IntRange(1, 65535), default=8787, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--status", "answer", type=click.IntRange(200, 599), default=200, show_default=True,
              help="The HTTP status to answer (500: see a failing notifier).")
def alerts_endpoint(port: int, host: str, answer: int) -> None:
    """A local stand-in for Slack or Teams, to try notifiers out: prints the text (or JSON) of
    each notice posted to it, one line each, and answers --status. Stops on ctrl+c or SIGTERM."""
    import json
    import signal
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(min(int(self.headers.get("content-length") or 0), 1 << 20))
            try:
                notice = json.loads(body)
                line = notice.get("text") or notice.get("title") or json.dumps(notice, sort_keys=True)
            except (ValueError, AttributeError):
                line = f"(not JSON: {len(body)} bytes)"
            click.echo(f"{self.path} {line}")
            self.send_response(answer)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return  # one line per notice is printed above

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM ends it like ctrl+c

    server = HTTPServer((host, port), Handler)
    signal.signal(signal.SIGTERM, stop)
    click.echo(f"listening on http://{host}:{port}/ (answering {answer})", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@alerts.command("defaults")
@click.option("--set", "path", type=click.Path(dir_okay=False, allow_dash=True),
              help="Replace them with this TOML file ([[rules]], [[notifiers]], signal_notifiers, ...; - reads stdin).")
@click.option("--reset", is_flag=True, help="Back to the workbench's own defaults.")
@click.option("--reason", default=None, help="Why (kept in the audit trail).")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def alerts_defaults(state: State, path: str | None, reset: bool, reason: str | None, as_json: bool) -> None:
    """The store-wide alert rules and notifiers every connection gets unless its own
    settings.alerts names a rule or notifier of the same name; --set or --reset changes them
    (admin, audited)."""
    import tomllib

    import tomli_w

    if path is not None and reset:
        raise click.UsageError("--set FILE or --reset, not both")
    if path is not None or reset:
        document = None
        if path is not None:
            raw = click.open_file(path, "rb").read(1 << 20)
            try:
                document = tomllib.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise InvalidArgument(f"{path} is not valid TOML: {exc}") from None
        settings = alert_service.set_defaults(state.ctx, document, reason or ("reset" if reset else f"from {path}"))
        own = not reset
    else:
        settings, own = alert_service.show_defaults(state.ctx)
    dumped = settings.model_dump(mode="json", exclude_none=True)
    if as_json:
        json_value({"source": "store" if own else "workbench", "alerts": dumped})
        return
    click.echo(f"# alert defaults: {'this store' if own else 'the workbench (no store-wide defaults set)'}")
    click.echo(tomli_w.dumps(dumped), nl=False)
