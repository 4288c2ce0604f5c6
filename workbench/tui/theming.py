"""Loading the shipped themes from the top-level `themes` package."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from textual.theme import Theme

FALLBACK_THEME = "workbench-dark"


def _themes_module() -> ModuleType:
    try:
        return importlib.import_module("themes")
    except ImportError:
        # An editable install that does not list `themes` as a package yet: load it from the
        # repository folder next to `workbench/`.
        path = Path(__file__).resolve().parents[2] / "themes" / "__init__.py"
        spec = importlib.util.spec_from_file_location("themes", path)
        if spec is None or spec.loader is None:
            raise
        module = importlib.util.module_from_spec(spec)
        sys.modules["themes"] = module
        spec.loader.exec_module(module)
        return module


def shipped_themes() -> tuple[Theme, ...]:
    return tuple(_themes_module().THEMES)


def default_theme() -> str:
    return str(getattr(_themes_module(), "DEFAULT_THEME", FALLBACK_THEME))
