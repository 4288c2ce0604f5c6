"""Two JSON documents compared field by field: which paths were added, removed or changed, as a
configuration diff shows them (`settings.sync.interval_s: 300 -> 900`). Built on json_diff's
aligned tree; pure."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from .json_diff import MISSING, Change, DiffNode, diff

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class FieldChange:
    path: Path
    change: Change  # added, removed or changed
    before: Any  # MISSING when added
    after: Any  # MISSING when removed

    @property
    def dotted(self) -> str:
        return ".".join(str(part) for part in self.path)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.dotted, "change": str(self.change)}
        if self.before is not MISSING:
            out["before"] = self.before
        if self.after is not MISSING:
            out["after"] = self.after
        return out

    def as_line(self) -> str:
        """`~ path: old -> new`, `+ path: new`, `- path: old` (values as JSON)."""
        if self.change is Change.ADDED:
            return f"+ {self.dotted}: {_shown(self.after)}"
        if self.change is Change.REMOVED:
            return f"- {self.dotted}: {_shown(self.before)}"
        return f"~ {self.dotted}: {_shown(self.before)} -> {_shown(self.after)}"


def _shown(value: Any) -> str:
    return orjson.dumps(value).decode()


def field_changes(before: Any, after: Any) -> list[FieldChange]:
    """Every leaf or subtree that differs, in document order; an added or removed object is
    one change, not one per field inside it."""
    return list(_walk(diff(before, after), ()))


def _walk(node: DiffNode, path: Path) -> Iterator[FieldChange]:
    if node.change is Change.SAME:
        return
    if node.change is Change.CHANGED and node.expandable:
        for child in node.children:
            key = child.key
            assert key is not None  # children always have a key on the side they exist
            yield from _walk(child, (*path, key))
        return
    yield FieldChange(path, node.change, node.left, node.right)
