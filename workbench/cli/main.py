"""The `workbench` command: the TUI with no arguments, scripts' entry points otherwise.

The command lines and JSON shapes here are promises to scripts: add to them, never rename.
Exit status: 0 ok, 1 error (nothing written), 2 usage, 3 partial (some input lines skipped),
4 audit chain broken.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import Any

import click

from .support import EXIT_USAGE, State, guarded

# Each top-level command and the module (in this package) whose COMMANDS defines it: a command
# line imports only its own module, not all of them (tests/test_cli_lazy.py keeps this exact).
COMMAND_MODULES: Mapping[str, str] = {
    "access": "access_commands",
    "alerts": "alert_commands",
    "audit": "history_commands",
    "command": "command_commands",
    "connection": "connection_commands",
    "db": "store_commands",
    "demo": "store_commands",
    "drift": "reconcile_commands",
    "engine": "engine_commands",
    "events": "list_commands",
    "failures": "failure_commands",
    "ingest": "ingest_command",
    "listen": "listen_command",
    "reconcile": "reconcile_commands",
    "records": "list_commands",
    "recover": "recover_commands",
    "replay": "history_commands",
    "retention": "retention_commands",
    "sandbox": "sandbox_commands",
    "timeline": "history_commands",
    "vault": "vault_commands",
}


class WorkbenchGroup(click.Group):
    """The top-level group: every command's errors are reported the same way, once; each command's
    module is imported only when that command is wanted (click's lazy subcommands)."""

    def invoke(self, ctx: click.Context) -> Any:
        return guarded(lambda: super(WorkbenchGroup, self).invoke(ctx), ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMAND_MODULES, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            module = COMMAND_MODULES.get(cmd_name)
            if module is None:  # load them all: click's "No such command" suggests close names from self.commands
                self._load_all()
            else:
                self._load(module)
        return self.commands.get(cmd_name)

    def _load(self, module: str) -> None:
        for command in importlib.import_module(f".{module}", __package__).COMMANDS:
            self.add_command(command)

    def _load_all(self) -> None:
        for module in sorted(set(COMMAND_MODULES.values())):
            self._load(module)


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


def main() -> None:
    cli(prog_name="workbench")
