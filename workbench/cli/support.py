"""What every command shares: the lazily opened store, exit codes, and the one place where
errors become one line on stderr (never a traceback, never a driver's message)."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

import click

from workbench.domain.redaction import redact_text
from workbench.services.errors import InvalidArgument, ServiceError

# The store's modules (SQLAlchemy: about 0.2 s to import) are imported where they are used, so
# a command that needs no store (`sandbox`) starts without them.
if TYPE_CHECKING:
    from workbench.services.context import ServiceContext

T = TypeVar("T")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_AUDIT_BROKEN = 4

DEBUG_ENV = "WORKBENCH_DEBUG"


class State:
    """Opens the store only when a command needs it (so --help never touches a database)."""

    def __init__(self, db: str | None, verbose: bool = False) -> None:
        self.db = db
        self.verbose = verbose
        self._ctx: ServiceContext | None = None

    @property
    def location(self) -> str:
        from workbench.services.store_admin import store_location

        return self._ctx.location if self._ctx is not None else store_location(self.db)

    def context(self, *, create: bool = False) -> ServiceContext:
        """The store's context; `create` only for the commands that make a store on purpose."""
        if self._ctx is None:
            from workbench.services.context import open_context

            self._ctx = open_context(self.db, create=create)
        return self._ctx

    @property
    def ctx(self) -> ServiceContext:
        return self.context()


pass_state = click.make_pass_decorator(State)


# Control characters in an error (from a hostile ID or file name) are shown escaped: the
# message stays one line and sends nothing to the terminal.
_ESCAPE_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}


def printable(text: str) -> str:
    """`text` with its control characters escaped: one line, nothing sent to the terminal."""
    return text.translate(_ESCAPE_CONTROLS)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    # Every one-line error passes here: a secret quoted by a hostile value stops here too.
    click.echo(f"error: {printable(redact_text(message))}", err=True)
    sys.exit(code)


def _verbose(state: State | None) -> bool:
    return (state is not None and state.verbose) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _print_traceback(exc: BaseException) -> None:
    # Engines hide statement parameters; redaction catches credentials in any other message.
    text = "".join(traceback.format_exception(exc))
    kept = [line for line in text.splitlines() if not line.lstrip().startswith("[parameters:")]
    click.echo(redact_text("\n".join(kept)), err=True)


def _quiet_broken_pipe() -> NoReturn:
    """`workbench records --json | head`: the reader left; exit quietly, and keep Python's own
    flush at exit from complaining about the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (tests)
        pass
    sys.exit(0)


def guarded(call: Callable[[], T], click_ctx: click.Context) -> T:
    """Run a command; anything it raises becomes one line and an exit status."""
    try:
        return call()
    except (click.exceptions.Exit, click.ClickException, click.Abort):
        raise
    except BrokenPipeError:
        _quiet_broken_pipe()
    except KeyboardInterrupt:  # ctrl+c: what committed stays, the open batch rolls back
        fail("interrupted; everything committed before stays stored, the rest was not written", 130)
    except Exception as exc:
        state = click_ctx.obj if isinstance(click_ctx.obj, State) else None  # set once the group ran
        if _verbose(state):
            _print_traceback(exc)
        if isinstance(exc, InvalidArgument):
            fail(str(exc), EXIT_USAGE)
        if isinstance(exc, ServiceError):
            fail(str(exc))
        from workbench.services.store_admin import store_location
        from workbench.services.store_faults import explain

        explained = explain(exc, state.location if state is not None else store_location(None))
        if explained is not None:
            fail(str(explained))
        fail(f"unexpected {type(exc).__name__} (a bug in the workbench); run with --verbose to see where")


def confirm_or_stop(yes: bool, question: str, what: str) -> None:
    """Go on only when confirmed: `--yes`, or a yes on a terminal. Without a terminal to ask
    on and without --yes, stop in one line (a script must say --yes); a no stops too."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"{what} needs a confirmation: run it on a terminal to be asked, or pass --yes", EXIT_USAGE)
    if not click.confirm(question, default=False):
        fail("nothing was changed")
