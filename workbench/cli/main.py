"""The `workbench` command: the TUI with no arguments, scripts' entry points otherwise.

The command lines and JSON shapes here are promises to scripts: add to them, never rename.
Exit status: 0 ok, 1 error (nothing written), 2 usage, 3 partial (some input lines skipped),
4 audit chain broken.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from . import (
    access_commands,
    alert_commands,
    command_commands,
    connection_commands,
    engine_commands,
    failure_commands,
    history_commands,
    ingest_command,
    list_commands,
    listen_command,
    reconcile_commands,
    recover_commands,
    retention_commands,
    sandbox_commands,
    store_commands,
    vault_commands,
)
from .support import EXIT_USAGE, State, guarded


class WorkbenchGroup(click.Group):
    """The top-level group: every command's errors are reported the same way, once."""

    def invoke(self, ctx: click.Context) -> Any:
        return guarded(lambda: super(WorkbenchGroup, self).invoke(ctx), ctx)


@click.group(cls=WorkbenchGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="WORKBENCH_DB", metavar="URL",
              help="SQLAlchemy URL of the store (default: the embedded SQLite store; env WORKBENCH_DB).")
@click.option("--verbose", "-v", is_flag=True,
              help="On an error, also print the (redacted) traceback; env WORKBENCH_DEBUG=1 does the same.")
@click.pass_context
def cli(click_ctx: click.Context, db: str | None, verbose: bool) -> None:
    """Integration workbench: with no command, opens the TUI."""
    click_ctx.obj = State(db, verbose)
    if click_ctx.invoked_subcommand is None:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):  # a script or a pipe: no TUI to show
            click.echo(click_ctx.get_help())
            click_ctx.exit(EXIT_USAGE)
        from workbench.tui.app import run_tui  # the TUI's import cost only when it is wanted

        run_tui(click_ctx.obj.ctx)


for module in (store_commands, connection_commands, ingest_command, list_commands, failure_commands,
               history_commands, vault_commands, access_commands, retention_commands, sandbox_commands,
               listen_command, command_commands, engine_commands, reconcile_commands,
               recover_commands, alert_commands):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    cli(prog_name="workbench")
