"""The `workbench` command: the TUI with no arguments, scripts' entry points otherwise.

The command lines and JSON shapes here are promises to scripts: add to them, never rename.
Exit status: 0 ok, 1 error (nothing written), 2 usage, 3 partial (some input lines skipped),
4 audit chain broken.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from store.database import StoreError, open_store
from workbench.services.context import ServiceContext
from workbench.services.errors import ServiceError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_ERROR = 1
EXIT_PARTIAL = 3
EXIT_AUDIT_BROKEN = 4


class State:
    """Opens the store only when a command needs it (so --help never touches a database)."""

    def __init__(self, db: str | None) -> None:
        self.db = db
        self._ctx: ServiceContext | None = None

    @property
    def ctx(self) -> ServiceContext:
        if self._ctx is None:
            self._ctx = ServiceContext(engine=open_store(self.db))
        return self._ctx


def fail(message: str, code: int = EXIT_ERROR) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handles_errors(func: F) -> F:
    """Operator-facing errors become one line on stderr and a non-zero exit, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ServiceError, StoreError) as exc:
            fail(str(exc))
        except BrokenPipeError:  # `workbench records --json | head`
            sys.stderr.close()
            sys.exit(0)

    return wrapper  # type: ignore[return-value]


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="WORKBENCH_DB", metavar="URL",
              help="SQLAlchemy URL of the store (default: the embedded SQLite store; env WORKBENCH_DB).")
@click.pass_context
@handles_errors
def cli(click_ctx: click.Context, db: str | None) -> None:
    """Integration workbench: with no command, opens the TUI."""
    click_ctx.obj = State(db)
    if click_ctx.invoked_subcommand is None:
        from workbench.tui.app import run_tui  # the TUI's import cost only when it is wanted

        run_tui(click_ctx.obj.ctx)


def main() -> None:
    from . import commands  # noqa: F401  registers the subcommands

    cli(prog_name="workbench")


pass_state = click.make_pass_decorator(State)
