"""The command palette (ctrl+p): every screen, every action of the current screen (taken from
its key bindings, so a new binding is reachable at once), the themes, help and refresh."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .screens.help import key_display

if TYPE_CHECKING:
    from .app import WorkbenchApp

Command = tuple[str, Callable[[], object], str]


class WorkbenchCommands(Provider):
    def _commands(self) -> list[Command]:
        app: WorkbenchApp = self.app  # type: ignore[assignment]  # Provider.app is typed App; ours is this app
        commands: list[Command] = [
            (f"Go to {title}", partial(app.go_to, mode), f"open the {title} screen")
            for mode, title in app.MODE_TITLES.items()
        ]
        commands.append(("Records: filter…", app.action_prompt_records, "open Records with a filter"))
        commands.append(("Timeline of a record…", app.action_prompt_timeline, "by internal or external ID"))
        commands.append(("Vault: secrets, unlock, lock", app.action_open_vault, "names, versions, ages (key 5)"))
        for theme in app.shipped_theme_names:
            commands.append((f"Theme: {theme}", partial(app.set_theme, theme), "switch (remembered)"))
        commands.append(("Help for this screen", app.action_help, "what it shows and its keys"))
        commands.append(("Refresh now", app.action_refresh, "re-read the store"))
        where = getattr(self.screen, "WHERE", "Screen")
        seen: set[str] = set()
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if not binding.description or binding.action in seen or binding.action.startswith("app."):
                continue
            seen.add(binding.action)
            commands.append((f"{where}: {binding.description}",
                             partial(app.run_action, binding.action, active.node),
                             f"key {key_display(key)}"))
        commands.append(("Quit", app.action_quit, "leave the workbench"))
        return commands

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, text=name, help=help_text)
