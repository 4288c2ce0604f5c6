"""Small modal dialogs: confirm a bulk action, ask for a note or a name, fill in a short form."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label


class ConfirmScreen(ModalScreen[bool]):
    """Yes / no. Enter or y confirms; Escape or n cancels."""

    BINDINGS = [
        Binding("escape,n", "cancel", "Cancel"),
        Binding("y", "confirm", "Confirm"),
    ]

    def __init__(self, title: str, message: str, confirm: str = "Confirm") -> None:
        super().__init__(classes="dialog-screen")
        self._title = title
        self._message = message
        self._confirm = confirm

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title", markup=False)
            yield Label(self._message, classes="dialog-message", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self._confirm} (y)", variant="primary", id="confirm")
                yield Button("Cancel (n)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#confirm", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class PromptScreen(ModalScreen[str | None]):
    """One line of text (a note, an assignee). Enter submits; Escape cancels (None)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, label: str, *, required: bool = False, message: str = "",
                 value: str = "", placeholder: str = "", password: bool = False) -> None:
        super().__init__(classes="dialog-screen")
        self._password = password  # typed characters show as dots, and the value is not stripped
        self._title = title
        self._label = label
        self._required = required
        self._message = message
        self._value = value
        self._placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title", markup=False)
            if self._message:
                yield Label(self._message, classes="dialog-message", markup=False)
            yield Label(self._label, classes="dialog-label", markup=False)
            yield Input(self._value, placeholder=self._placeholder, password=self._password, id="prompt-input")
            yield Label("Enter to confirm · Escape to cancel", classes="dialog-hint")

    def on_mount(self) -> None:
        prompt = self.query_one(Input)
        prompt.cursor_blink = self.app.cursor_blink  # type: ignore[attr-defined]  # WorkbenchApp sets it; tests turn it off
        prompt.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value if self._password else event.value.strip()
        if self._required and not value:
            self.query_one(".dialog-hint", Label).update("A value is required · Escape to cancel")
            self.app.bell()
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class FormField:
    key: str  # the key of its value in the dialog's result
    label: str
    password: bool = False  # typed characters show as dots, and the value is not stripped
    placeholder: str = ""


class FormScreen(ModalScreen[dict[str, str] | None]):
    """A few required lines of text: a secret's name and value, a passphrase typed twice.
    Enter moves to the next field and submits from the last; Escape cancels (None). `same`
    names two fields that must match (a new passphrase, typed twice)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    HINT = "Enter: next field, then confirm · Escape to cancel"

    def __init__(self, title: str, fields: Sequence[FormField], *, message: str = "",
                 same: tuple[str, str] | None = None, differ: str = "The two entries differ") -> None:
        super().__init__(classes="dialog-screen")
        self._title = title
        self._fields = list(fields)
        self._message = message
        self._same = same
        self._differ = differ

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form-dialog"):
            yield Label(self._title, classes="dialog-title", markup=False)
            if self._message:
                yield Label(self._message, classes="dialog-message", markup=False)
            for field in self._fields:
                yield Label(field.label, classes="dialog-label", markup=False)
                yield Input(placeholder=field.placeholder, password=field.password, id=f"form-{field.key}")
            yield Label(self.HINT, classes="dialog-hint")

    def on_mount(self) -> None:
        blink: bool = getattr(self.app, "cursor_blink", True)  # WorkbenchApp sets it; tests turn it off
        for prompt in self.query(Input):
            prompt.cursor_blink = blink
        self.query(Input).first().focus()

    def _value(self, field: FormField) -> str:
        value = self.query_one(f"#form-{field.key}", Input).value
        return value if field.password else value.strip()

    def _say(self, text: str) -> None:
        self.query_one(".dialog-hint", Label).update(f"{text} · Escape to cancel")
        self.app.bell()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        inputs = list(self.query(Input))
        index = inputs.index(event.input)
        if index + 1 < len(inputs):
            inputs[index + 1].focus()
            return
        values = {field.key: self._value(field) for field in self._fields}
        empty = next((field for field in self._fields if not values[field.key]), None)
        if empty is not None:
            self._say(f"{empty.label} is required")
            self.query_one(f"#form-{empty.key}", Input).focus()
            return
        if self._same is not None and values[self._same[0]] != values[self._same[1]]:
            again = self.query_one(f"#form-{self._same[1]}", Input)
            again.value = ""
            again.focus()
            self._say(self._differ)
            return
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)
