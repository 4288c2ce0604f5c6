"""`workbench listen`: the durable webhook receiver (see workbench/receiver), and `workbench
listen stuck [--retry | --discard]`: the deliveries its spools hold because the store refused them."""

from __future__ import annotations

import os
import sys

import click

from workbench.receiver import stuck as stuck_service
from workbench.services import connections, secret_refs
from workbench.services.context import ServiceContext
from workbench.services.payload_crypto import encrypts
from workbench.services.signatures import WEBHOOK_SECRET
from workbench.vault import UnlockedVault

from .output import json_array, table
from .support import EXIT_PARTIAL, EXIT_USAGE, State, fail, pass_state, printable
from .vault_access import PASSPHRASE_ENV, CommandVaults


@click.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True, help="Port to listen on.")
@click.pass_context
def listen(click_ctx: click.Context, host: str, port: int) -> None:
    """Receive webhooks at POST /hooks/<connection>: each delivery is stored before it is
    answered (2xx means on disk), its signature checked with the connection's webhook secrets,
    and applied within a second. GET /healthz reports readiness. Stops on SIGTERM or ctrl+c."""
    if click_ctx.invoked_subcommand is not None:
        given = [f"--{name}" for name in ("host", "port")
                 if click_ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
        if given:
            fail(f"{' and '.join(given)} are for serving: `workbench listen {click_ctx.invoked_subcommand}` "
                 "takes neither", EXIT_USAGE)
        return
    from workbench.receiver.server import serve  # uvicorn's import cost only here

    state: State = click_ctx.obj
    ctx = state.ctx
    vaults = _unlock(ctx)

    def started(directory: object) -> None:
        click.echo(f"listening on http://{host}:{port}/hooks/<connection> (GET /healthz); "
                   "SIGTERM or ctrl+c stops", err=True)

    serve(ctx, host, port, vaults, started)


def _unlock(ctx: ServiceContext) -> dict[str, UnlockedVault] | CommandVaults:
    """The vaults of environments whose connections need one (encrypted payloads, webhook
    secrets), unlocked once now. With WORKBENCH_VAULT_PASSPHRASE set, a vault first needed later
    (a connection added while running) is unlocked then; without it, never by a prompt from the
    background (that connection's deliveries are answered 503 until a restart)."""
    command_vaults = CommandVaults()
    needed: set[str] = set()
    for info in connections.list_connections(ctx):
        refs = secret_refs.references(info)
        if encrypts(info.settings) or any(ref.kind == WEBHOOK_SECRET for ref in refs):
            needed.add(info.environment)
    unlocked: dict[str, UnlockedVault] = {}
    for environment in sorted(needed):
        try:
            unlocked[environment] = command_vaults[environment]
        except KeyError:
            click.echo(f"warning: the {environment} vault is locked (set {PASSPHRASE_ENV}): its connections' "
                       "deliveries are answered 503 and stored as rejected", err=True)
    return command_vaults if os.environ.get(PASSPHRASE_ENV) else unlocked


@listen.command("stuck")
@click.argument("delivery_ids", nargs=-1)
@click.option("--retry", is_flag=True, help="Move them into the store now: every retryable one, or those named.")
@click.option("--discard", is_flag=True,
              help="Remove those named from the spool for good (admin; needs --reason): for what no fix will move.")
@click.option("--reason", help="Why they are discarded (kept in the audit trail).")
@click.option("--json", "as_json", is_flag=True, help="The list as a JSON array.")
@pass_state
def listen_stuck(state: State, delivery_ids: tuple[str, ...], retry: bool, discard: bool, reason: str | None,
                 as_json: bool) -> None:
    """Deliveries the store refused (/healthz `stuck`), kept in this machine's receiver spools:
    list them, or once the cause is fixed move them into the store with --retry [ID...]. What no
    fix will move (an unreadable batch, a connection the store lost for good) an admin may
    remove with --discard ID... --reason TEXT: the audit trail keeps what each was, not its bytes."""
    if retry and discard:
        fail("--retry moves them into the store, --discard removes them: one or the other", EXIT_USAGE)
    if delivery_ids and not (retry or discard):
        fail("name deliveries only to retry or discard them: `workbench listen stuck --retry ID...`", EXIT_USAGE)
    if (retry or discard) and as_json:
        fail("--json lists; retry or discard without it (one line per delivery)", EXIT_USAGE)
    if reason is not None and not discard:
        fail("--reason goes with --discard", EXIT_USAGE)
    if discard:
        _discard(state, delivery_ids, reason)
    elif retry:
        _retry(state, delivery_ids)
    else:
        _list(state, as_json)


def _list(state: State, as_json: bool) -> None:
    found = stuck_service.list_stuck(state.ctx)
    if as_json:
        json_array(item.as_dict() for item in found.stuck)
    elif not found.stuck:
        click.echo("no stuck deliveries" + (" in the spools that could be read" if found.problems else ""))
    else:
        table(([printable(str(cell)) for cell in (
            item.key, item.connection or "-", item.received_at or "-", item.spool.name,
            item.reason if item.retryable else f"unreadable, never retried: {item.reason}")] for item in found.stuck),
              ["delivery", "connection", "received", "spool", "reason"])
        retryable = sum(item.retryable for item in found.stuck)
        click.echo(f"{len(found.stuck)} stuck ({retryable} retryable); once the cause is fixed, "
                   "`workbench listen stuck --retry [ID...]` moves them into the store")
    _problems(found.problems)
    if found.problems:
        sys.exit(EXIT_PARTIAL)


def _retry(state: State, delivery_ids: tuple[str, ...]) -> None:
    def each(retried: stuck_service.Retried) -> None:
        said = f": {retried.reason}" if retried.reason else ""
        click.echo(printable(f"{retried.delivery.key}: {retried.outcome}{said}"))

    report = stuck_service.retry(state.ctx, CommandVaults(), delivery_ids, each)
    if report.moved + report.still_stuck + report.not_retried == 0:
        click.echo("no stuck deliveries to retry")
    else:
        unread = f"; {report.not_retried} unreadable, not retried" if report.not_retried else ""
        click.echo(f"{report.moved} moved, {report.still_stuck} still stuck{unread}")
    _problems(report.problems)
    if not report.complete:
        sys.exit(1)
    if report.problems:
        sys.exit(EXIT_PARTIAL)


def _discard(state: State, delivery_ids: tuple[str, ...], reason: str | None) -> None:
    def each(discarded: stuck_service.Discarded) -> None:
        item = discarded.delivery
        if discarded.error is None:
            click.echo(printable(f"{item.key}: discarded from {item.spool.name} ({discarded.size:,} bytes, "
                                 f"sha256 {discarded.sha256[:16]})"))
        else:
            click.echo(printable(f"{item.key}: not discarded: {discarded.error}"))

    results = stuck_service.discard(state.ctx, delivery_ids, reason or "", each)  # it refuses no IDs or reason
    failed = sum(result.error is not None for result in results)
    click.echo(f"{len(results) - failed} discarded" + (f", {failed} not" if failed else ""))
    if failed:
        sys.exit(1)


def _problems(problems: list[stuck_service.SpoolProblem]) -> None:
    """Each spool that could not be read, by name (the others were read)."""
    for problem in problems:
        click.echo(printable(f"warning: {problem.message}; its stuck deliveries are left out: "
                             "move it out of the spool folder and look at it with sqlite3"), err=True)


COMMANDS = (listen,)
