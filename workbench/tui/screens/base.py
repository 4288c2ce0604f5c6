"""What every workbench screen shares: a status line, a footer, help, back, and loading.

Loading is always off the UI thread: `reload()` takes a request on the UI thread, `fetch()`
runs it against the services in a thread worker, and `show()` puts the result on screen back
on the UI thread. At most one fetch per screen is in flight; a reload asked for meanwhile runs
once the current one lands, so a slow store delays data but never input. A failure anywhere in
a worker is one line on screen (see ..errors); the screen stays up.

A store opened read-only shows a banner on every screen; each screen names its WRITES (the
actions that change the store), which are then hidden from the footer and the palette, and
refused with one line if reached.

Roles work the same way: each screen says which access action (services.access.LEAST_ROLE)
each of its actions NEEDS. What the actor's role may not do is hidden from the footer and the
palette; its key, or the action reached any other way, is refused by the service's own check
(one line, and an audit entry). The role is looked up with every fetch, in the worker thread
(remembered for a couple of seconds by services.access), never on the UI thread.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Input, Static
from textual.worker import Worker, WorkerState, get_current_worker

from workbench.services import access
from workbench.services.context import ServiceContext

from ..errors import describe_error
from ..formatting import clock_time
from ..widgets import StatusLine

if TYPE_CHECKING:
    from ..app import WorkbenchApp

Data = TypeVar("Data")

# Priority, so the App moves focus before it forwards the keys typed right after the slash
# (a normal binding runs only once the key has bubbled up, by which time a fast typist's next
# keys went to the table). `check_action` turns it off inside a text field, where / is text.
FILTER_BINDING = Binding("slash", "focus_filter", "Filter", priority=True)

READ_ONLY_BANNER = "READ-ONLY: this process cannot write to the store, so triage and pause are off"


class WorkbenchScreen(Screen[None], Generic[Data]):
    WHERE: ClassVar[str] = "Workbench"
    HELP: ClassVar[str] = ""
    LIVE: ClassVar[bool] = True  # follow the store on the app's refresh timer
    WRITES: ClassVar[frozenset[str]] = frozenset()  # actions that change the store
    NEEDS: ClassVar[dict[str, str]] = {}  # action -> the access action it takes ("triage", "reveal"...)

    BINDINGS = [
        Binding("escape", "back", "Back", show=False),
        Binding("question_mark", "app.help", "Help"),
        Binding("ctrl+r", "reload", "Refresh", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._loading = False
        self._again = False
        self._resumed = False
        self._fetch_started = 0.0
        self._fetch_seconds = 0.0  # how long the last fetch took
        self._fetch_ended = 0.0
        self._last_failure: str | None = None
        self._denied = False  # the last fetch was refused by the role check: no live refresh
        self.loaded_once = False

    @property
    def wb(self) -> WorkbenchApp:
        return self.app  # type: ignore[return-value]  # Screen.app is typed App; every screen runs in ours

    @property
    def ctx(self) -> ServiceContext:
        return self.wb.ctx

    @property
    def status(self) -> StatusLine:
        return self.query_one(StatusLine)

    @property
    def loading_data(self) -> bool:
        return self._loading

    # ----------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield StatusLine(self.WHERE)
        if self.ctx.read_only:
            yield Static(READ_ONLY_BANNER, classes="read-only-banner", markup=False)
        yield from self.compose_body()
        yield Footer(compact=True)

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_resize(self) -> None:
        # The palette hint takes 12 columns an 80-column footer needs for the screen's keys;
        # ctrl+p works regardless, and help lists it.
        self.query_one(Footer).show_command_palette = self.size.width >= 100

    def main_widget(self) -> Widget | None:
        """The widget Escape returns focus to from a filter."""
        return None

    # ----------------------------------------------------------------- loading

    def on_mount(self) -> None:
        self.reload()

    def on_screen_resume(self) -> None:
        # Back from a pushed screen (an action may have changed what this one shows); not on
        # the first showing, which on_mount already loads.
        if self._resumed:
            self.reload()
        self._resumed = True

    def action_reload(self) -> None:
        self.reload()

    def reload(self) -> None:
        if self._loading:
            self._again = True
            return
        self._loading = True
        self._fetch_started = time.monotonic()
        request = self.request()
        self.run_worker(lambda: self._fetch_in_thread(request), thread=True, group="load",
                        exit_on_error=False, name=f"{type(self).__name__}.fetch")

    def request(self) -> Any:
        """What to fetch, decided on the UI thread (the filter text, the page cursor...)."""
        return None

    def fetch(self, request: Any) -> Data:
        """Runs in a worker thread: call services only, touch no widget."""
        raise NotImplementedError

    def show(self, data: Data) -> None:
        """Runs on the UI thread with what `fetch` returned."""

    def _fetch_in_thread(self, request: Any) -> None:
        worker = get_current_worker()
        try:
            data = self.fetch(request)
            role = access.role_of(self.ctx, cached=True)  # what the footer may offer, looked up here
        except Exception as exc:  # shown on screen; the app keeps running
            if not worker.is_cancelled:
                self._post(self._failed, exc)
            return
        if not worker.is_cancelled:
            self._post(self._role_known, role)
            self._post(self._loaded, data)

    def _role_known(self, role: access.Role | None) -> None:
        if role != self.wb.role:
            self.wb.role = role
            self.refresh_bindings()

    def _post(self, callback: Any, *args: Any, **kwargs: Any) -> None:
        """From a worker thread: run `callback` on the UI thread (and wait for it)."""
        try:
            self.app.call_from_thread(callback, *args, **kwargs)
        except RuntimeError:  # the app is closing
            pass

    def refresh_due(self, interval: float) -> bool:
        """For the live-refresh timer: a screen whose fetch is slow (a 10,000-entry timeline,
        a remote database) refreshes less often, so following the store never eats the UI."""
        wait = max(interval, 5 * self._fetch_seconds)
        # Refused (a role revoked meanwhile): retried on ctrl+r only, not every few seconds into
        # the audit trail.
        return (self.loaded_once and not self._loading and not self._denied
                and time.monotonic() - self._fetch_ended >= wait)

    def _loaded(self, data: Data) -> None:
        self._note_fetch_time()
        self._loading = False
        if not self.is_attached:
            return
        self.loaded_once = True
        self._last_failure = None
        self._denied = False
        self.show(data)
        self.status.set_refreshed(f"refreshed {clock_time(self.wb.now())}")
        self._next()

    def load_failed(self, exc: Exception) -> None:
        """Runs on the UI thread when `fetch` raised (after the error is shown)."""

    def _note_fetch_time(self) -> None:
        self._fetch_ended = time.monotonic()
        self._fetch_seconds = self._fetch_ended - self._fetch_started

    def _failed(self, exc: Exception) -> None:
        self._note_fetch_time()
        self._loading = False
        if not self.is_attached:
            return
        self._denied = isinstance(exc, access.AccessDenied)
        self.load_failed(exc)
        self.status.set_refreshed("refresh failed", failed=True)
        message = f"Could not load {self.WHERE}: {describe_error(exc)}"
        # Said once: while the store keeps failing the same way, the live refresh and the
        # keys typed meanwhile only keep the status line red.
        if message != self._last_failure:
            self.notify(message, severity="error", markup=False)
        self._last_failure = message
        self._next()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # The net under every worker that lets an exception out (the loaders above catch
        # theirs): one line, and the screen stays up.
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.notify(f"{self.WHERE}: {describe_error(event.worker.error)}", severity="error", markup=False)

    def _next(self) -> None:
        if self._again:
            self._again = False
            self.reload()

    # ----------------------------------------------------------------- navigation

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "focus_filter" and isinstance(self.focused, Input):
            return False
        if action in self.WRITES and self.ctx.read_only:
            return False  # hidden from the footer and the palette; on_key says why
        needed = self.needs(action, parameters)
        if needed is not None and not access.permits(self.wb.role, needed):
            return False  # the same; on_key has the service refuse it
        return True

    def needs(self, action: str, parameters: tuple[object, ...]) -> str | None:
        """The access action `action` takes (None: only reading what is on screen)."""
        return self.NEEDS.get(action)

    def denied(self, needed: str | None) -> bool:
        """Whether the actor's role (as last looked up) may not take `needed`; then the
        service's check runs in a worker, which records the refusal and says it in one line."""
        if needed is None or access.permits(self.wb.role, needed):
            return False
        self.run_worker(lambda: self._refuse(needed), thread=True, group="action", exit_on_error=False)
        return True

    def _refuse(self, needed: str) -> None:
        try:
            access.require(self.ctx, needed)
        except Exception as exc:  # AccessDenied (or the store failing): one line
            self._post(self.notify, describe_error(exc), severity="warning", markup=False)
            return
        # Granted meanwhile: show the key again, to be pressed again.
        self._post(self._role_known, access.role_of(self.ctx))
        self._post(self.notify, "your role allows this now: press the key again", markup=False)

    def refused(self, what: str) -> bool:
        """Whether a write is refused because the store is read-only (then one line says so)."""
        if self.ctx.read_only:
            self.notify(f"{what} is off: the store is read-only (this process cannot write to it)",
                        severity="warning", markup=False)
        return self.ctx.read_only

    def on_key(self, event: events.Key) -> None:
        # A write's key on a read-only store, or an action the role may not take: its binding
        # is switched off (check_action), so the key arrives here instead of doing nothing in
        # silence.
        if isinstance(self.focused, Input):  # in a text field a letter is text
            return
        for binding in type(self).BINDINGS:
            if not isinstance(binding, Binding) or event.key not in binding.key.split(","):
                continue
            name, parameters = _parsed(binding.action)
            if self.ctx.read_only and name in self.WRITES:
                event.stop()
                self.refused(binding.description or binding.action)
                return
            if self.denied(self.needs(name, parameters)):
                event.stop()
                return

    def action_back(self) -> None:
        focused = self.focused
        main = self.main_widget()
        if isinstance(focused, Input) and main is not None:
            self.set_focus(main)
            return
        self.wb.go_back()

    def action_focus_filter(self) -> None:
        # set_focus is immediate (Widget.focus waits a frame), so keys typed straight after
        # the slash land in the filter.
        inputs = self.query(Input)
        if inputs:
            self.set_focus(inputs.first())
        else:
            self.app.bell()


def _parsed(action: str) -> tuple[str, tuple[object, ...]]:
    """"act('replay')" -> ("act", ("replay",)), as Textual passes them to check_action."""
    name, _, rest = action.partition("(")
    if not rest:
        return name, ()
    parameters = tuple(part.strip().strip("'\"") for part in rest.rstrip(")").split(",") if part.strip())
    return name, parameters
