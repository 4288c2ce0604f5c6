"""Delivering alert notices: the notifiers (a JSON webhook in the generic, Slack or Teams
shape; a local command given the notice as JSON on stdin; the engine's log) and the worker that
drains the alert_notifications outbox.

Delivery never runs inside a transaction and never on the engine's own threads: the engine's
alerts job claims due rows (a short write each) and hands them to this worker's threads, so a
notifier that hangs holds one of them up to its timeout and nothing else. Each outcome is
stored on the row (sent, or the error and the next try), a failing notifier is logged, and
after MAX_ATTEMPTS the row is given up (status failed), still listed as failing.

A webhook's URL is a vault secret (it lets anyone post to the channel): read at delivery time,
never stored in the outbox, never in an error message or the log.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import select, update

from store.database import reading, writing
from workbench.domain.alert_rules import NotifierConfig
from workbench.domain.redaction import redact_text
from workbench.vault import UnlockedVault, VaultError

from . import access
from .alerts import alert_settings, connections, notifications, store_defaults
from .context import ServiceContext
from .errors import InvalidArgument, NotFound

log = logging.getLogger("workbench.alerts")

Vaults = Mapping[str, UnlockedVault]
MAX_ATTEMPTS = 5
RETRY_S = (10, 30, 120, 600)  # after the 1st, 2nd, ... failed try
CLAIM_GRACE_S = 30.0  # a claimed row another worker may take once this passes its timeout
MAX_ERROR = 300
COLORS = {"critical": "D70000", "warning": "FFA500", "info": "2F80ED"}


class NotifierFailed(Exception):
    """One line, safe to store and show (no URL, no secret)."""


# -- the shapes a webhook posts ----------------------------------------------------------------


def headline(notice: Mapping[str, Any]) -> str:
    event = notice.get("event", "opened")
    label = {"opened": "ALERT", "repeat": "ALERT (still)", "recovered": "RECOVERED", "test": "TEST"}.get(event, event)
    return f"[{label}] {notice.get('rule')} on {notice.get('connection')}: {notice.get('summary')}"


def webhook_body(fmt: str, notice: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON a webhook notifier posts: the notice itself ("json"), Slack's incoming-webhook
    message (`text` for notifications, `blocks` for the channel), or a Teams MessageCard."""
    text = headline(notice)
    facts = [("Connection", notice.get("connection")), ("Rule", notice.get("rule")),
             ("Severity", notice.get("severity")), ("Count", notice.get("count")),
             ("First seen", notice.get("first_seen_at")), ("Last seen", notice.get("last_seen_at")),
             ("Alert", notice.get("alert"))]
    if fmt == "slack":
        detail = " · ".join(f"*{name}:* {value}" for name, value in facts if value is not None)
        return {"text": text, "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": detail}]}]}
    if fmt == "teams":
        return {"@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": text,
                "themeColor": COLORS.get(str(notice.get("severity")), "808080"), "title": text,
                "sections": [{"facts": [{"name": name, "value": str(value)} for name, value in facts
                                        if value is not None]}]}
    return dict(notice)


# -- the notifiers ---------------------------------------------------------------------------------


def _url(spec: NotifierConfig, vaults: Vaults) -> str:
    ref = spec.url_secret
    assert ref is not None  # validated: a webhook has one
    environment = ref.environment or "sandbox"
    try:
        vault = vaults[environment]
    except KeyError:
        raise NotifierFailed(f"the {environment} vault is locked (the engine needs WORKBENCH_VAULT_PASSPHRASE "
                             f"to read the webhook URL {ref.name})") from None
    except Exception as exc:  # a wrong passphrase, a missing vault: the vault service's one line
        raise NotifierFailed(f"the {environment} vault could not be opened: {redact_text(str(exc))[:MAX_ERROR]}") from None
    try:
        contents = vault.read()
    except VaultError as exc:
        raise NotifierFailed(f"the {environment} vault could not be read: {exc}") from None
    if ref.name not in contents.secrets:
        raise NotifierFailed(f"the {environment} vault has no secret {ref.name!r} (the webhook URL): "
                             f"`workbench vault set {ref.name} --environment {environment}`")
    return contents.current(ref.name).value


def _post(spec: NotifierConfig, notice: Mapping[str, Any], vaults: Vaults) -> None:
    url = _url(spec, vaults)
    body = orjson.dumps(webhook_body(spec.format, notice))
    try:
        response = httpx.post(url, content=body, headers={"content-type": "application/json"},
                              timeout=float(spec.timeout_s), follow_redirects=False)
    except httpx.TimeoutException:
        raise NotifierFailed(f"no answer within {spec.timeout_s}s") from None
    except httpx.UnsupportedProtocol:
        raise NotifierFailed(f"the vault secret {spec.url_secret.name if spec.url_secret else ''} "
                             "does not hold an http(s) URL") from None
    except httpx.HTTPError as exc:
        # The message may quote the URL (a secret): only the kind of failure is kept.
        raise NotifierFailed(f"could not reach the webhook ({type(exc).__name__})") from None
    except (ValueError, httpx.InvalidURL):
        raise NotifierFailed(f"the vault secret {spec.url_secret.name if spec.url_secret else ''} "
                             "does not hold a usable http(s) URL") from None
    if not 200 <= response.status_code < 300:
        raise NotifierFailed(f"the webhook answered HTTP {response.status_code}")


def _run(spec: NotifierConfig, notice: Mapping[str, Any]) -> None:
    argv = list(spec.command or [])
    try:
        done = subprocess.run(argv, input=orjson.dumps(dict(notice)), capture_output=True,
                              timeout=float(spec.timeout_s), check=False)
    except subprocess.TimeoutExpired:
        raise NotifierFailed(f"the command did not finish within {spec.timeout_s}s (stopped)") from None
    except OSError as exc:
        raise NotifierFailed(f"the command {argv[0][:100]!r} could not run: {exc.strerror or type(exc).__name__}") from None
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = f": {redact_text(lines[-1])[:200]}" if lines else ""
        raise NotifierFailed(f"the command exited {done.returncode}{why}")


def send(spec: NotifierConfig, notice: Mapping[str, Any], vaults: Vaults) -> None:
    """Deliver one notice through one notifier; NotifierFailed says why not."""
    if spec.kind == "webhook":
        _post(spec, notice, vaults)
    elif spec.kind == "command":
        _run(spec, notice)
    else:
        level = logging.INFO if notice.get("event") == "recovered" else logging.WARNING
        log.log(level, "%s", headline(notice))


# -- the outbox worker -------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: str
    spec: NotifierConfig
    notice: dict[str, Any]
    attempts: int
    connection_id: str


def claim_due(ctx: ServiceContext, limit: int) -> list[Claimed]:
    """Take up to `limit` due notices, each after every earlier notice of its alert to the same
    notifier: each row's next try moves past its delivery's timeout, so no other worker takes
    it meanwhile (compare-and-set on next_attempt_at, any backend)."""
    now = ctx.clock()
    # One alert's notices reach a notifier in order: a recovery notice never overtakes the
    # notice of its opening (still pending, or being delivered) on another thread.
    earlier = notifications.alias("earlier")
    overtaking = select(earlier.c.id).where(
        earlier.c.alert_id == notifications.c.alert_id, earlier.c.notifier_name == notifications.c.notifier_name,
        earlier.c.status == "pending", earlier.c.id < notifications.c.id).exists()
    with reading(ctx.engine) as conn:
        rows = conn.execute(select(notifications).where(notifications.c.status == "pending",
                                                        notifications.c.next_attempt_at <= now, ~overtaking)
                            .order_by(notifications.c.next_attempt_at, notifications.c.id).limit(limit)).all()
    taken = []
    for row in rows:
        spec = NotifierConfig.model_validate(row.notifier)
        until = now + timedelta(seconds=float(spec.timeout_s) + CLAIM_GRACE_S)
        with writing(ctx.engine) as conn:
            won = conn.execute(update(notifications).where(
                notifications.c.id == row.id, notifications.c.status == "pending",
                notifications.c.next_attempt_at == row.next_attempt_at).values(
                next_attempt_at=until, attempts=notifications.c.attempts + 1)).rowcount == 1
        if won:
            taken.append(Claimed(row.id, spec, dict(row.payload), row.attempts + 1, row.connection_id))
    return taken


def record_outcome(ctx: ServiceContext, item: Claimed, error: str | None) -> None:
    now = ctx.clock()
    if error is None:
        values: dict[str, Any] = {"status": "sent", "sent_at": now, "last_error": None}
    else:
        gave_up = item.attempts >= MAX_ATTEMPTS
        values = {"last_error": error[:MAX_ERROR], "status": "failed" if gave_up else "pending",
                  "next_attempt_at": now + timedelta(seconds=RETRY_S[min(item.attempts, len(RETRY_S)) - 1])}
        log.warning("alert notifier %s failing for %s (%s, try %d of %d%s): %s", item.spec.name,
                    item.notice.get("connection"), item.notice.get("rule"), item.attempts, MAX_ATTEMPTS,
                    ", given up" if gave_up else "", error)
    with writing(ctx.engine) as conn:
        conn.execute(update(notifications).where(notifications.c.id == item.id).values(**values))


class NotificationWorker:
    """Delivers claimed notices on its own threads. `pump()` (the engine's alerts job) never
    waits for a delivery: it claims only as many notices as it has idle threads."""

    def __init__(self, ctx: ServiceContext, vaults: Vaults, threads: int = 2) -> None:
        self.ctx = ctx
        self.vaults = vaults
        self.threads = threads
        self._busy = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="alert-notify")
        self._closed = False

    def pump(self) -> int:
        with self._lock:
            idle = self.threads - self._busy
        if idle <= 0 or self._closed:
            return 0
        claimed = claim_due(self.ctx, idle)
        for item in claimed:
            with self._lock:
                self._busy += 1
            self._pool.submit(self._deliver, item)
        return len(claimed)

    @property
    def busy(self) -> int:
        with self._lock:
            return self._busy

    def _deliver(self, item: Claimed) -> None:
        try:
            error = None
            try:
                send(item.spec, item.notice, self.vaults)
            except NotifierFailed as exc:
                error = str(exc)
            except Exception as exc:  # a notifier's bug: the row says so, the worker goes on
                error = f"unexpected {type(exc).__name__}"
            record_outcome(self.ctx, item, error)
        except Exception as exc:
            log.warning("alert notice %s: its outcome could not be stored (%s); tried again later", item.id, exc)
        finally:
            with self._lock:
                self._busy -= 1

    def close(self, wait: bool = False) -> None:
        """Stop taking work; deliveries under way finish (bounded by their timeouts). A notice
        claimed but not started is tried again by the next engine once its claim passes."""
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=True)


# -- a test notice -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TestOutcome:
    notifier: str
    kind: str
    ok: bool
    error: str | None

    def as_json(self) -> dict[str, Any]:
        return {"notifier": self.notifier, "kind": self.kind, "ok": self.ok, "error": self.error}


def test_rule(ctx: ServiceContext, rule_name: str, connection_name: str | None, vaults: Vaults) -> list[TestOutcome]:
    """`workbench alerts test RULE`: a test notice through the rule's notifiers (the rule as
    configured on `connection_name`, or on the one connection that has it)."""
    access.require(ctx, "alerts")
    with reading(ctx.engine) as conn:
        rows = conn.execute(select(connections.c.id, connections.c.name, connections.c.environment,
                                   connections.c.settings).order_by(connections.c.name)).all()
        defaults = store_defaults(conn)
    if connection_name is not None:
        rows = [row for row in rows if row.name == connection_name]
        if not rows:
            raise NotFound(f"no connection named {connection_name[:64]!r}")
    having = [(row, config) for row in rows
              if (config := alert_settings(row.settings or {}, row.name, defaults)).rule(rule_name) is not None]
    if not having:
        raise NotFound(f"no rule named {rule_name[:64]!r}" + (f" on {connection_name}" if connection_name else "")
                       + " (`workbench connection show NAME` shows a connection's alerts settings)")
    if len(having) > 1 and any(row.settings.get("alerts") for row, _ in having):
        names = ", ".join(row.name for row, _ in having)
        raise InvalidArgument(f"several connections have a rule {rule_name!r} ({names}): name one with --connection")
    row, config = having[0]
    rule = config.rule(rule_name)
    assert rule is not None
    specs = []
    for name in rule.notifiers:
        spec = config.notifier(name)
        if spec.url_secret is not None and spec.url_secret.environment is None:
            spec = spec.model_copy(update={"url_secret": spec.url_secret.model_copy(
                update={"environment": row.environment})})
        specs.append(spec)
    now = ctx.clock().isoformat(timespec="seconds")
    notice = {"event": "test", "alert": None, "rule": rule.name, "connection": row.name, "severity": rule.severity,
              "state": "test", "summary": f"a test notice from `workbench alerts test` ({rule.describe()})",
              "count": 0, "first_seen_at": now, "last_seen_at": now}
    return send_test(notice, specs, vaults)


def send_test(notice: Mapping[str, Any], specs: list[NotifierConfig], vaults: Vaults) -> list[TestOutcome]:
    """Send `notice` through each notifier now (in this process), saying which succeeded."""
    outcomes = []
    for spec in specs:
        try:
            send(spec, notice, vaults)
            outcomes.append(TestOutcome(spec.name, spec.kind, True, None))
        except NotifierFailed as exc:
            outcomes.append(TestOutcome(spec.name, spec.kind, False, str(exc)))
        except Exception as exc:  # a notifier's bug: named by its kind only (a message may hold the URL)
            outcomes.append(TestOutcome(spec.name, spec.kind, False, f"unexpected {type(exc).__name__}"))
    return outcomes
