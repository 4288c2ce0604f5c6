"""The structural JSON diff (workbench.domain.json_diff): pure, no store."""

from __future__ import annotations

import copy
import random
import threading
from typing import Any

import orjson

from workbench.domain.json_diff import MISSING, Change, DiffNode, diff, same_json
from workbench.tui.widgets.diff_view import FIRST_PAINT_ROWS, changes_after, first_layout


def changes(node: DiffNode) -> list[tuple[Any, Change]]:
    return [(n.key, n.change) for n in node.walk_changes()]


def child(node: DiffNode, key: Any) -> DiffNode:
    return next(c for c in node.children if c.key == key)


def test_equal_documents_are_one_unchanged_node() -> None:
    doc = {"a": [1, 2, {"b": None}], "c": "x"}
    root = diff(doc, copy.deepcopy(doc))
    assert root.change is Change.SAME and root.changes == 0
    assert changes(root) == []


def test_key_order_does_not_count_but_json_types_do() -> None:
    assert same_json({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert not same_json({"a": 1}, {"a": True})  # equal in Python, not in JSON
    assert not same_json([0], [False])
    assert not same_json(1, "1")
    root = diff({"flag": 1}, {"flag": True})
    assert changes(root) == [("flag", Change.CHANGED)]


def test_objects_align_by_key() -> None:
    root = diff({"a": 1, "b": {"x": 1, "y": 2}, "gone": 0}, {"a": 1, "b": {"x": 1, "y": 3}, "new": [1]})
    assert root.change is Change.CHANGED
    assert [(c.key, c.change) for c in root.children] == [
        ("a", Change.SAME), ("b", Change.CHANGED), ("gone", Change.REMOVED), ("new", Change.ADDED)]
    assert changes(root) == [("y", Change.CHANGED), ("gone", Change.REMOVED), ("new", Change.ADDED)]
    assert root.changes == 3
    removed = child(root, "gone")
    assert removed.left == 0 and removed.right is MISSING
    added = child(root, "new")
    assert added.left is MISSING and added.right == [1]


def test_type_change_is_one_change_not_expandable() -> None:
    root = diff({"v": {"a": 1}}, {"v": [1]})
    node = child(root, "v")
    assert node.change is Change.CHANGED and not node.expandable and node.children == []
    assert root.changes == 1


def test_arrays_with_ids_align_by_id() -> None:
    left = [{"id": "a", "n": 1}, {"id": "b", "n": 2}, {"id": "c", "n": 3}]
    right = [{"id": "a", "n": 1}, {"id": "x", "n": 9}, {"id": "b", "n": 2}, {"id": "c", "n": 4}]
    root = diff(left, right)
    assert [(c.left_key, c.right_key, c.change) for c in root.children] == [
        (0, 0, Change.SAME), (None, 1, Change.ADDED), (1, 2, Change.SAME), (2, 3, Change.CHANGED)]
    assert changes(root) == [(1, Change.ADDED), ("n", Change.CHANGED)]


def test_an_insertion_in_an_array_is_one_addition() -> None:
    left = [10, 20, 30, 40]
    right = [10, 20, 25, 30, 40]
    root = diff(left, right)
    assert changes(root) == [(2, Change.ADDED)]
    assert root.changes == 1


def test_replaced_elements_pair_up_by_position() -> None:
    root = diff([{"k": 1}, "same"], [{"k": 2}, "same"])
    first = root.children[0]
    assert (first.left_key, first.right_key, first.change) == (0, 0, Change.CHANGED)
    assert changes(root) == [("k", Change.CHANGED)]
    shorter = diff([1, 2, 3], [1, 9])
    assert [(c.left_key, c.right_key, c.change) for c in shorter.children] == [
        (0, 0, Change.SAME), (1, 1, Change.CHANGED), (2, None, Change.REMOVED)]


def test_added_and_removed_subtrees_expand_uniformly() -> None:
    root = diff({}, {"new": {"a": 1, "b": [2]}})
    added = child(root, "new")
    assert added.change is Change.ADDED and added.expandable
    assert [(c.key, c.change) for c in added.children] == [("a", Change.ADDED), ("b", Change.ADDED)]
    assert added.changes == 1  # counted once, as a whole


def test_unchanged_subtrees_are_not_walked_until_asked() -> None:
    big = {"items": [{"id": i, "v": i} for i in range(1000)], "status": "a"}
    root = diff(big, {**big, "status": "b"})
    items = child(root, "items")
    assert items.change is Change.SAME
    assert items._children is None  # nothing made below an unchanged node
    assert len(items.children) == 1000 and all(c.change is Change.SAME for c in items.children)


def test_changes_can_be_counted_while_another_thread_expands() -> None:
    left = {"items": [{"id": i, "v": i, "w": [i]} for i in range(3000)]}
    right = {"items": [{"id": i, "v": i + (i % 3 == 0), "w": [i]} for i in range(3000)]}
    root = diff(left, right)
    counted: list[int] = []
    worker = threading.Thread(target=lambda: counted.append(root.changes))
    worker.start()
    for node in child(root, "items").children[:500]:
        _ = node.children
    worker.join()
    assert counted == [1000]
    items = child(root, "items")
    assert all(node.children is items.children[i].children for i, node in enumerate(items.children[:10]))


def test_navigation_order_follows_the_document() -> None:
    root = diff({"a": 1, "b": {"c": 1, "d": 2}, "e": 3}, {"a": 2, "b": {"c": 1, "d": 5}, "e": 4})
    found = changes_after(root, (), True)
    assert found is not None and found[0].key == "a"
    found = changes_after(root, found[1], True)
    assert found is not None and found[0].key == "d" and found[1] == (1, 1)
    found = changes_after(root, found[1], True)
    assert found is not None and found[0].key == "e"
    assert changes_after(root, found[1], True) is None
    back = changes_after(root, found[1], False)
    assert back is not None and back[0].key == "d"


def _megabyte(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    items = [{"id": f"li_{i:06d}", "description": f"Line item {i}", "quantity": rng.randrange(1, 9),
              "amount": rng.randrange(100, 99999), "metadata": {"sku": f"SKU-{rng.randrange(10**6):06d}"}}
             for i in range(9500)]
    return {"id": "evt", "data": {"object": {"status": "processing", "line_items": items}}}


def test_two_megabyte_payloads_first_layout_is_bounded() -> None:
    # Speed itself is measured in benchmarks/tui_bench.py; here, the reason it is fast: the
    # first layout stays within its row budget however large and different the documents.
    left = _megabyte(1)
    assert len(orjson.dumps(left)) > 1_000_000
    right = copy.deepcopy(left)
    right["data"]["object"]["status"] = "succeeded"
    right["data"]["object"]["line_items"][4000]["quantity"] = 99
    del right["data"]["object"]["line_items"][10]
    every = _megabyte(2)  # every line item differs
    for other in (right, every):
        rows, _ = first_layout(diff(left, other))
        assert 0 < len(rows) <= FIRST_PAINT_ROWS + 50
    root = diff(left, right)
    assert changes(root) == [("status", Change.CHANGED), (10, Change.REMOVED), ("quantity", Change.CHANGED)]
