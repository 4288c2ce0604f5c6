"""What the receiver knows of each connection, followed through the store: refreshed every
REFRESH_S, so a connection added or paused, or a webhook secret added or retired, by another
process shows within two seconds, without a restart."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from adapters import Adapter
from adapters.protocol import SignatureVerifying, WebhookSecret
from workbench.services import connections, secret_refs
from workbench.services.connections import ConnectionInfo
from workbench.services.context import ServiceContext
from workbench.services.errors import ServiceError
from workbench.services.payload_crypto import Sealer, Vaults, encrypts, sealer_for
from workbench.services.signatures import WEBHOOK_SECRET, SignatureChecker, webhook_settings

log = logging.getLogger(__name__)

REFRESH_S = 1.0


@dataclass(frozen=True, slots=True)
class Entry:
    """One connection as the request path needs it: everything decided, nothing to query."""

    info: ConnectionInfo
    adapter: Adapter
    checker: SignatureChecker | None  # None: no active webhook secret (or no scheme): unchecked
    sealer: Sealer | None  # bodies sealed with it when the connection encrypts its payloads
    max_body_bytes: int
    # Why deliveries cannot be stored or checked as asked (a locked vault), or None.
    unavailable: str | None = None


class Directory:
    """Connections by name, refreshed in the background; `get` is a dict lookup."""

    def __init__(self, ctx: ServiceContext, vaults: Vaults) -> None:
        self._ctx, self._vaults = ctx, vaults
        self._entries: dict[str, Entry] = {}
        self._secret_names: dict[str, tuple[str, ...]] = {}  # by connection: the active ones entries were built with
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refreshed = threading.Event()  # set after every refresh (tests wait on it)

    @property
    def entries(self) -> Mapping[str, Entry]:
        return self._entries

    def get(self, name: str) -> Entry | None:
        return self._entries.get(name)

    def refresh(self) -> None:
        """Read every connection; rebuild an entry whose version or active secrets changed."""
        now = datetime.now(UTC)
        known = set(self._ctx.adapters.names())
        entries: dict[str, Entry] = {}
        for info in connections.list_connections(self._ctx):
            if info.provider not in known:
                continue  # a provider this build has no adapter for: answered 404, like no connection
            old = self._entries.get(info.name)
            try:
                active = tuple(ref.name for ref in secret_refs.references(info)
                               if ref.kind == WEBHOOK_SECRET and ref.state(now) == "active")
            except ServiceError as exc:
                entries[info.name] = self._unavailable(info, str(exc))
                continue
            if old is not None and old.info.version == info.version and old.info.id == info.id \
                    and self._secret_names.get(info.name) == active:
                entries[info.name] = old
                continue
            entries[info.name] = self._build(info, now)
            self._secret_names[info.name] = active
        self._entries = entries  # one assignment: the request path sees the old or the new map
        self.refreshed.set()

    def _unavailable(self, info: ConnectionInfo, why: str) -> Entry:
        adapter = self._ctx.adapters.get(info.provider)
        return Entry(info, adapter, None, None, webhook_settings(info.settings).max_body_bytes, why)

    def _build(self, info: ConnectionInfo, now: datetime) -> Entry:
        adapter = self._ctx.adapters.get(info.provider)
        limits = webhook_settings(info.settings)
        try:
            sealer = sealer_for(self._vaults, info.id, info.environment) if encrypts(info.settings) else None
            checker = None
            if isinstance(adapter, SignatureVerifying):
                refs = [ref for ref in secret_refs.references(info)
                        if ref.kind == WEBHOOK_SECRET and ref.state(now) == "active"]
                if refs:
                    vault = self._vaults.get(info.environment)
                    if vault is None:
                        raise ServiceError(f"connection {info.name} has webhook secrets in the {info.environment} "
                                           "vault, which the receiver could not unlock")
                    values = secret_refs.secret_values(vault, sorted(refs, key=lambda ref: ref.added_at, reverse=True))
                    checker = SignatureChecker(adapter.verify_signature,
                                               tuple(WebhookSecret(v.reference.name, v.value) for v in values),
                                               limits.tolerance_s)
        except ServiceError as exc:
            log.warning("connection %s: %s", info.name, exc)
            return Entry(info, adapter, None, None, limits.max_body_bytes, str(exc))
        return Entry(info, adapter, checker, sealer, limits.max_body_bytes)

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="receiver-directory", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(REFRESH_S):
            try:
                self.refresh()
            except Exception:  # the store away for a moment: keep the last view, try again
                log.warning("receiver: could not refresh connections", exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
