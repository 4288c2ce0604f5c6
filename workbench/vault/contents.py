"""What a vault holds once decrypted: named secrets, each a list of versions."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson

from .errors import SecretExists, SecretNotFound, VaultDamaged


@dataclass(frozen=True)
class SecretVersion:
    version: int
    value: str = field(repr=False)  # never in a repr, so never in a log or a traceback's locals
    created_at: datetime
    rotated_at: datetime | None = None  # when a newer version replaced this one


@dataclass(frozen=True)
class Contents:
    environment: str
    secrets: dict[str, tuple[SecretVersion, ...]] = field(default_factory=dict, repr=False)

    def current(self, name: str) -> SecretVersion:
        versions = self.secrets.get(name)
        if not versions:
            raise SecretNotFound(f"no secret named {name!r} in the {self.environment} vault "
                                 "(`workbench vault list` shows them)")
        return versions[-1]

    def with_new(self, name: str, value: str, now: datetime) -> Contents:
        if name in self.secrets:
            raise SecretExists(f"the {self.environment} vault already has {name!r}: "
                               f"`workbench vault rotate {name}` gives it a new version")
        return replace(self, secrets={**self.secrets, name: (SecretVersion(1, value, now),)})

    def with_rotated(self, name: str, value: str, now: datetime) -> Contents:
        old = self.current(name)
        kept = (*self.secrets[name][:-1], replace(old, rotated_at=now))
        return replace(self, secrets={**self.secrets, name: (*kept, SecretVersion(old.version + 1, value, now))})

    def without(self, name: str) -> Contents:
        self.current(name)
        return replace(self, secrets={k: v for k, v in self.secrets.items() if k != name})

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "environment": self.environment,
            "secrets": {name: [{"version": v.version, "value": v.value, "created_at": v.created_at.isoformat(),
                                "rotated_at": v.rotated_at.isoformat() if v.rotated_at else None}
                               for v in versions]
                        for name, versions in self.secrets.items()},
        })

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Contents:
        try:
            raw: Any = orjson.loads(data)
            return cls(raw["environment"], {
                name: tuple(SecretVersion(int(v["version"]), str(v["value"]),
                                          datetime.fromisoformat(v["created_at"]),
                                          datetime.fromisoformat(v["rotated_at"]) if v["rotated_at"] else None)
                            for v in versions)
                for name, versions in raw["secrets"].items()
            })
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            # Authenticated yet unreadable: written by a buggy or foreign writer with our key.
            raise VaultDamaged(f"{where} decrypts but its contents are not a vault's: restore it from a "
                               "backup; it was left as it is") from None
