"""Widgets the screens share: a virtual table, virtual text, the diff view, the filter input,
the status line. Loaded on first use (the diff view is not needed to paint the home screen)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .diff_view import DiffView
    from .filter_input import FilterInput
    from .lines import TextLines
    from .status import StatusLine
    from .table import Column, Row, VirtualTable

_WHERE = {"DiffView": "diff_view", "FilterInput": "filter_input", "TextLines": "lines", "StatusLine": "status",
          "Column": "table", "Row": "table", "VirtualTable": "table"}

__all__ = ["Column", "DiffView", "FilterInput", "Row", "StatusLine", "TextLines", "VirtualTable"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(name)
    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
