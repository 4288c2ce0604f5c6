"""`workbench engine`: the sync engine (headless, beside the TUI or on a server), and
`workbench engine status [--json]`: what the engines are doing, read from the store."""

from __future__ import annotations

import logging
from datetime import datetime

import click

from workbench.services import engine_status, reconcile as reconcile_service

from .output import json_value, table
from .support import State, pass_state
from .vault_access import CommandVaults

ENGINE_ACTOR = "system:engine"


@click.group("engine", invoke_without_command=True)
@click.option("--metrics-port", type=click.IntRange(1, 65535), metavar="P",
              help="Serve Prometheus metrics on this port (http://HOST:P/metrics).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="The address metrics listen on.")
@click.option("--lease-ttl", type=click.FloatRange(1, 3600), default=10.0, show_default=True, metavar="S",
              help="Seconds before another engine takes over this one's work if it stops renewing.")
@click.option("--call-timeout", type=click.FloatRange(0.5, 300), default=10.0, show_default=True, metavar="S",
              help="Seconds a call to a provider may take.")
@click.pass_context
def engine(click_ctx: click.Context, metrics_port: int | None, metrics_host: str, lease_ttl: float,
           call_timeout: float) -> None:
    """Run the sync engine: dispatch commands, retry, poll, run retention (until SIGTERM).

    It acts as system:engine, which needs a role: `workbench access grant system:engine
    operator` (admin also lets it run retention). API keys come from the vaults: set
    WORKBENCH_VAULT_PASSPHRASE."""
    if click_ctx.invoked_subcommand is not None:
        return
    from workbench.engine.daemon import Engine, EngineOptions  # APScheduler's import cost only here
    from workbench.engine.metrics import EngineMetrics

    state: State = click_ctx.obj
    ctx = state.ctx.as_actor(ENGINE_ACTOR)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per job run is noise
    metrics = EngineMetrics()
    if metrics_port is not None:
        metrics.serve(metrics_port, metrics_host)

    def started(running: Engine) -> None:
        role = "active" if running.active else "standing by (another engine holds the store)"
        click.echo(f"engine {running.process_id} running on {ctx.location}: {role}", err=True)

    options = EngineOptions(lease_ttl_s=lease_ttl, call_timeout_s=call_timeout)
    Engine(ctx, CommandVaults(), options, metrics=metrics, reconcile=reconcile_service.run_for_engine).run(started)
    click.echo("engine stopped", err=True)


@engine.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def engine_status_cmd(state: State, as_json: bool) -> None:
    """Live engines, each connection's polling, lag, paused or stopped calls, and the queue."""
    status = engine_status.read_status(state.ctx)
    if as_json:
        json_value(status.as_dict())
        return
    if not status.engines:
        click.echo("no engine running (start one: workbench engine)")
    for e in status.engines:
        role = "" if e.active is None else (" active" if e.active else " standing by")
        click.echo(f"engine {e.id} {e.host}:{e.pid}{role}, heartbeat {e.heartbeat_age_s:.0f}s ago")
    at = datetime.fromisoformat(status.at)
    table(((c.name, c.provider, "paused" if c.paused else ("STOPPED" if c.calls_stopped else "active"),
            c.pending_commands, c.lag_s if c.lag_s is not None else "-", c.last_poll_at or "-",
            _when(c.next_poll_at, at), _when(c.next_reconcile_at, at), c.stopped_reason or "")
           for c in status.connections),
          ["connection", "provider", "calls", "queued", "lag s", "last poll", "next poll", "next reconcile",
           "why stopped"],
          [20, 10, 8, 7, 6, 32, 10, 14, 50])
    stopped = [c for c in status.connections if c.calls_stopped]
    for c in stopped:
        click.echo(f"{c.name}: calls stopped ({c.stopped_reason}); key {c.stopped_key} failed: rotate it with "
                   f"`workbench connection secret add {c.name} --kind api_key`")
    commands = ", ".join(f"{k} {v}" for k, v in sorted(status.commands.items())) or "none"
    failures = ", ".join(f"{k} {v}" for k, v in sorted(status.open_failures.items())) or "none"
    click.echo(f"commands: {commands}")
    click.echo(f"open failures: {failures}")
    click.echo(f"lease takeovers: {status.lease_takeovers}")


def _when(due: str | None, now: datetime) -> str:
    """A due time as "in 42s", "in 7m", "in 3h" ("due": now or overdue; "-": not scheduled)."""
    if due is None:
        return "-"
    seconds = int((datetime.fromisoformat(due) - now).total_seconds())
    if seconds < 1:
        return "due"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"in {seconds // size}{unit}"
    return f"in {seconds}s"


COMMANDS = (engine,)
