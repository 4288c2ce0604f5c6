"""`workbench listen`: the durable webhook receiver (see workbench/receiver)."""

from __future__ import annotations

import os

import click

from workbench.services import connections, secret_refs
from workbench.services.context import ServiceContext
from workbench.services.payload_crypto import encrypts
from workbench.services.signatures import WEBHOOK_SECRET
from workbench.vault import UnlockedVault

from .support import State, pass_state
from .vault_access import PASSPHRASE_ENV, CommandVaults


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True, help="Port to listen on.")
@pass_state
def listen(state: State, host: str, port: int) -> None:
    """Receive webhooks at POST /hooks/<connection>: each delivery is stored before it is
    answered (2xx means on disk), its signature checked with the connection's webhook secrets,
    and applied within a second. GET /healthz reports readiness. Stops on SIGTERM or ctrl+c."""
    from workbench.receiver.server import serve  # uvicorn's import cost only here

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


COMMANDS = (listen,)
