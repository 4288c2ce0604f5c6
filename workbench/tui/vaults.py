"""The vaults this TUI has unlocked (the Vault screen keeps them in `app.unlocked_vaults`, by
environment), for screens that read encrypted payloads."""

from __future__ import annotations

from typing import Any

from workbench.services.payload_crypto import NO_VAULTS, Vaults


def unlocked_vaults(app: Any) -> Vaults:
    """Read at each load, so a vault unlocked since the screen opened counts."""
    vaults: Vaults | None = getattr(app, "unlocked_vaults", None)
    return vaults if vaults is not None else NO_VAULTS
