"""A structural diff of two JSON values: objects aligned by key, arrays aligned by element
identity, every node marked same / changed / added / removed.

Built for large payloads, the tree is lazy: equal subtrees are found with one C-level
comparison and never walked, and the children of any node are made only when someone asks for
them (a screen expanding it, or `changes` counting below it). So the first screenful of a diff
of two 1 MB documents costs a few milliseconds however much differs. Children are made under a
lock, so one thread may count changes while another expands nodes. Pure: no I/O, no imports
from the rest of the app.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from difflib import SequenceMatcher
from enum import StrEnum
from typing import Any

import orjson


class Change(StrEnum):
    SAME = "same"
    CHANGED = "changed"
    ADDED = "added"
    REMOVED = "removed"


class _Missing:
    """The value on the side where a node does not exist."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()
Key = str | int | None
_children_lock = threading.Lock()


def _fingerprint(value: Any) -> Any:
    """Equal fingerprints mean equal JSON: `true` is not `1`, and key order does not count."""
    if isinstance(value, (dict, list)):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return (type(value).__name__, value)


def same_json(left: Any, right: Any) -> bool:
    if type(left) is not type(right):
        return False
    if isinstance(left, (dict, list)):
        # The Python comparison rejects most differences cheaply; serialising settles what it
        # cannot see (True == 1 in Python, not in JSON).
        return bool(left == right) and _fingerprint(left) == _fingerprint(right)
    return bool(left == right)


def is_container(value: Any) -> bool:
    return isinstance(value, (dict, list))


class DiffNode:
    """One position in the aligned tree. `left` / `right` are the values on each side (MISSING
    where the node does not exist)."""

    __slots__ = ("left_key", "right_key", "change", "left", "right", "_children", "_changes")

    def __init__(self, left_key: Key, right_key: Key, change: Change, left: Any, right: Any) -> None:
        self.left_key = left_key
        self.right_key = right_key
        self.change = change
        self.left = left
        self.right = right
        self._children: list[DiffNode] | None = None
        self._changes: int | None = None if self.expandable and change is Change.CHANGED else (
            0 if change is Change.SAME else 1)

    def __repr__(self) -> str:
        return f"DiffNode({self.key!r}, {self.change})"

    @property
    def key(self) -> Key:
        return self.right_key if self.right is not MISSING else self.left_key

    @property
    def expandable(self) -> bool:
        """Has children to show: a non-empty container on one side, or the same kind of
        container on both."""
        if self.change is Change.CHANGED:
            return (isinstance(self.left, dict) and isinstance(self.right, dict)) or (
                isinstance(self.left, list) and isinstance(self.right, list))
        value = self.right if self.right is not MISSING else self.left
        return is_container(value) and len(value) > 0

    @property
    def children(self) -> list[DiffNode]:
        """Child nodes, aligned, made on first use."""
        children = self._children
        if children is None:
            with _children_lock:
                if self._children is None:
                    self._children = self._make_children()
                children = self._children
        return children

    def _make_children(self) -> list[DiffNode]:
        if not self.expandable:
            return []
        if self.change is not Change.CHANGED:
            return list(_uniform_children(self))
        if isinstance(self.left, dict):
            return _diff_objects(self.left, self.right)
        return _diff_arrays(self.left, self.right)

    @property
    def changes_known(self) -> bool:
        return self._changes is not None

    @property
    def changes(self) -> int:
        """Changed, added and removed nodes below (a node that differs whole counts once).
        Walks the changed part of the subtree the first time."""
        if self._changes is None:
            self._changes = sum(child.changes for child in self.children if child.change is not Change.SAME)
        return self._changes

    def walk_changes(self) -> Iterator[DiffNode]:
        """Every changed, added or removed node, depth first; not below a node that differs whole."""
        if self.change is Change.SAME:
            return
        if self.change is Change.CHANGED and self.expandable:
            for child in self.children:
                yield from child.walk_changes()
        else:
            yield self


def _uniform_children(node: DiffNode) -> Iterator[DiffNode]:
    """Children of a subtree that is the same on both sides, or exists on one side only."""
    value = node.right if node.right is not MISSING else node.left
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        if node.change is Change.SAME:
            yield DiffNode(key, key, Change.SAME, child, node.left[key])
        elif node.change is Change.ADDED:
            yield DiffNode(None, key, Change.ADDED, MISSING, child)
        else:
            yield DiffNode(key, None, Change.REMOVED, child, MISSING)


def diff(left: Any, right: Any) -> DiffNode:
    """The aligned tree of two JSON values (as parsed by json / orjson)."""
    return _diff(None, None, left, right)


def _diff(left_key: Key, right_key: Key, left: Any, right: Any) -> DiffNode:
    change = Change.SAME if same_json(left, right) else Change.CHANGED
    return DiffNode(left_key, right_key, change, left, right)


def _diff_objects(left: dict[str, Any], right: dict[str, Any]) -> list[DiffNode]:
    # Left's key order, then keys only the right has, in its order: reads like both documents.
    nodes = []
    for key, value in left.items():
        if key in right:
            nodes.append(_diff(key, key, value, right[key]))
        else:
            nodes.append(DiffNode(key, None, Change.REMOVED, value, MISSING))
    for key, value in right.items():
        if key not in left:
            nodes.append(DiffNode(None, key, Change.ADDED, MISSING, value))
    return nodes


def _identity(items: list[Any]) -> list[Any] | None:
    """Each element's `id` when every element is an object with a distinct string or integer
    `id` (the common shape of provider arrays: line items, refunds, events)."""
    if not all(isinstance(item, dict) for item in items):
        return None
    ids = [item.get("id") for item in items]
    if not all(type(ident) is str or type(ident) is int for ident in ids):
        return None
    return ids if len(set(ids)) == len(ids) else None


def _diff_arrays(left: list[Any], right: list[Any]) -> list[DiffNode]:
    """Align elements by `id` where both arrays carry one, otherwise by content, so an insertion
    shows as one added element rather than every later element changed."""
    left_ids, right_ids = _identity(left), _identity(right)
    by_id = left_ids is not None and right_ids is not None
    left_keys = left_ids if by_id else [_fingerprint(v) for v in left]
    right_keys = right_ids if by_id else [_fingerprint(v) for v in right]
    assert left_keys is not None and right_keys is not None
    nodes: list[DiffNode] = []
    matcher = SequenceMatcher(None, left_keys, right_keys, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                # Same id: compare the contents. Same content fingerprint: equal outright.
                nodes.append(_diff(i, j, left[i], right[j]) if by_id
                             else DiffNode(i, j, Change.SAME, left[i], right[j]))
            continue
        paired = 0 if by_id or op != "replace" else min(i2 - i1, j2 - j1)
        for k in range(paired):
            # A replaced run of unidentified elements: the n-th old against the n-th new.
            nodes.append(_diff(i1 + k, j1 + k, left[i1 + k], right[j1 + k]))
        for i in range(i1 + paired, i2):
            nodes.append(DiffNode(i, None, Change.REMOVED, left[i], MISSING))
        for j in range(j1 + paired, j2):
            nodes.append(DiffNode(None, j, Change.ADDED, MISSING, right[j]))
    return nodes
