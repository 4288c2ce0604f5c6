"""The secret rotation watch: an alert ("secret.expiring", through alert_signals.emit) when a
webhook secret nears its `expires_at` while the connection's recent deliveries still verify
only with it (the sender has not switched to a newer secret yet), so a rotation never ends in
rejected deliveries. Cleared once a recent delivery verifies with a newer secret, or the
expiring one is retired.

"Recent": the newest RECENT verified deliveries of the connection (one indexed query per
connection that has an expiring secret; none for the others). The lead time is the
connection's `alerts.secret_expiry_lead_s` (default 7 days).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from store.database import reading, writing
from store.models import Delivery
from workbench.domain.connection_config import SecretRef

from .alert_signals import Signal, emit
from .alerts import OPEN_STATES, alert_settings, alerts, connections, store_defaults
from .context import ServiceContext
from .secret_refs import _REFERENCES

RULE = "secret.expiring"
RECENT = 200
deliveries = Delivery.__table__


def _expiring(refs: list[SecretRef], now: datetime, lead: timedelta) -> list[SecretRef]:
    return [ref for ref in refs if ref.kind == "webhook_secret" and ref.state(now) == "active"
            and ref.expires_at is not None and ref.expires_at - now <= lead]


def check(ctx: ServiceContext) -> list[str]:
    """Raise or clear secret.expiring per connection; the names of connections alerted now."""
    now = ctx.clock()
    raised: list[str] = []
    with reading(ctx.engine) as conn:
        alerted: dict[str, str] = {row.connection_id: row.summary for row in conn.execute(
            select(alerts.c.connection_id, alerts.c.summary).where(alerts.c.rule == RULE,
                                                                   alerts.c.state.in_(OPEN_STATES)))}
        rows = conn.execute(select(connections.c.id, connections.c.name, connections.c.settings)).all()
        defaults = store_defaults(conn)
    for row in rows:
        settings = row.settings or {}
        try:
            refs = _REFERENCES.validate_python(settings.get("secrets", []))
        except ValueError:
            continue  # damaged references are reported where they are used
        lead = timedelta(seconds=alert_settings(settings, row.name, defaults).secret_expiry_lead_s)
        problem = _problem(ctx, row.id, refs, now, lead)
        # Raised again only when the situation reads differently (a newer secret appeared...):
        # the open alert's summary stays current without counting every look.
        if problem is not None and alerted.get(row.id) != problem:
            with writing(ctx.engine) as conn:
                emit(conn, ctx, Signal(RULE, row.id, "warning", problem))
            if row.id not in alerted:
                raised.append(row.name)
        elif problem is None and row.id in alerted:
            with writing(ctx.engine) as conn:
                emit(conn, ctx, Signal(RULE, row.id, "info", "deliveries verify with a newer webhook secret, "
                                       "or the expiring one was retired or replaced", cleared=True))
    return raised


def _problem(ctx: ServiceContext, connection_id: str, refs: list[SecretRef], now: datetime,
             lead: timedelta) -> str | None:
    expiring = _expiring(refs, now, lead)
    if not expiring:
        return None
    with reading(ctx.engine) as conn:
        used = [row[0] for row in conn.execute(
            select(deliveries.c.signature_secret).where(deliveries.c.connection_id == connection_id,
                                                        deliveries.c.signature_verdict == "verified")
            .order_by(deliveries.c.received_at.desc()).limit(RECENT))]
    if not used:
        return None  # nothing verified lately: nothing says which secret the sender uses
    for ref in expiring:
        newer = sorted(r.name for r in refs if r.kind == "webhook_secret" and r.added_at > ref.added_at
                       and r.state(now) == "active")
        if ref.name not in used or set(newer).intersection(used):
            continue
        assert ref.expires_at is not None  # _expiring keeps only those
        # (Worded so that redaction's "secret: VALUE" detector leaves it alone.)
        successor = (f"the newer secret {newer[0]} has verified none of them, so the sender has not switched yet"
                     if newer else "no newer webhook secret exists, so add one (`workbench connection secret add "
                     "CONNECTION --kind webhook_secret`) and give it to the sender")
        return (f"webhook secret {ref.name} expires {ref.expires_at.isoformat(timespec='minutes')} "
                f"(in {_left(ref.expires_at - now)}) and the last {len(used)} verified deliveries used only it "
                f"or older ones; {successor}")
    return None


def _left(left: timedelta) -> str:
    hours = max(0, int(left.total_seconds() // 3600))
    return f"{hours // 24}d {hours % 24}h" if hours >= 24 else f"{hours}h"
