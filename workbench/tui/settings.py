"""The TUI's few remembered choices (the theme), in a small JSON file in the user's config
directory; WORKBENCH_CONFIG_DIR points elsewhere (tests, several profiles)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from platformdirs import user_config_dir

CONFIG_ENV = "WORKBENCH_CONFIG_DIR"
FILE_NAME = "tui.json"

log = logging.getLogger(__name__)


def config_dir() -> Path:
    override = os.environ.get(CONFIG_ENV)
    return Path(override) if override else Path(user_config_dir("integration-workbench", appauthor=False))


def settings_path() -> Path:
    return config_dir() / FILE_NAME


def load_settings() -> dict[str, Any]:
    """The saved settings; an unreadable or corrupt file counts as none (never stops the app)."""
    try:
        data = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_settings(changes: dict[str, Any]) -> None:
    """Merge `changes` into the file, atomically; a read-only home only loses the memory."""
    path = settings_path()
    data = {**load_settings(), **changes}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot save TUI settings to %s: %s", path, exc)
