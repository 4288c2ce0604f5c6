"""What alerting may be told in configuration: rules (a condition on failures, or an engine
signal such as "breaker.opened"), the notifiers they deliver through, and the lead time of the
secret rotation watch. Kept in a connection's versioned settings (`settings.alerts`); the
workbench's own defaults (DEFAULTS) apply where a connection says nothing.

A rule's condition: more than `more_than` failures of `category` ("any": every category) on
the connection within the last `window_s` seconds ("more than 20 provider_outage in 5 minutes":
category provider_outage, more_than 20, window_s 300; "any authentication": category
authentication, more_than 0). While it holds, one alert stays open with its count growing;
people are told again at most every `repeat_every_s`, and once more when it clears
(`recovery`). Pure: no I/O; strict like the rest of the settings (unknown keys refused)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator, model_validator

from .config_types import Environment, Name, PositiveNumber
from .taxonomy import Category

ANY = "any"
LOG = "log"  # the built-in notifier: the engine's log; always there, needs no configuration
Severity = Literal["info", "warning", "critical"]
NotifierKind = Literal["webhook", "command", "log"]
# "slack": Slack's incoming-webhook shape (`text` + `blocks`); "teams": an Office 365
# connector MessageCard (Teams incoming webhooks and Workflows accept it); "json": the alert.
WebhookFormat = Literal["json", "slack", "teams"]
CATEGORIES = (ANY, *(str(c) for c in Category))
DEFAULT_SECRET_LEAD_S = 7 * 86400
MAX_WINDOW_S = 7 * 86400


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VaultRef(_Strict):
    """A vault secret by name (a webhook URL is a secret: it lets anyone post to the channel).
    `environment`: the vault it lives in (default: the connection's)."""

    name: Name
    environment: Environment | None = None


class NotifierConfig(_Strict):
    name: Name
    kind: NotifierKind
    format: WebhookFormat = "json"  # webhook only
    url_secret: VaultRef | None = None  # webhook: the vault secret holding the URL
    command: Annotated[list[Annotated[str, Field(min_length=1, max_length=4096)]],
                       Field(min_length=1, max_length=64)] | None = None  # argv, no shell
    timeout_s: Annotated[PositiveNumber, Field()] = 5.0

    @model_validator(mode="after")
    def _fits_kind(self) -> NotifierConfig:
        if self.kind == "webhook" and self.url_secret is None:
            raise ValueError("a webhook notifier needs url_secret (the vault secret holding its URL)")
        if self.kind == "command" and not self.command:
            raise ValueError("a command notifier needs command (the program and its arguments)")
        if self.kind != "webhook" and self.url_secret is not None:
            raise ValueError("url_secret is for webhook notifiers only")
        if self.kind != "command" and self.command is not None:
            raise ValueError("command is for command notifiers only")
        if float(self.timeout_s) > 120:
            raise ValueError("timeout_s is at most 120 seconds")
        return self


class RuleConfig(_Strict):
    """Either a failure condition (`category`) or an engine signal (`signal`, e.g.
    "breaker.opened", "secret.expiring"; a trailing ".*" matches a family)."""

    name: Name
    category: str | None = None
    signal: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.]{0,63}(\.\*)?$")] | None = None
    more_than: Annotated[StrictInt, Field(ge=0)] = 0
    window_s: Annotated[StrictInt, Field(gt=0, le=MAX_WINDOW_S)] = 300
    repeat_every_s: Annotated[StrictInt, Field(ge=0)] = 3600
    recovery: StrictBool = True
    severity: Severity = "warning"
    notifiers: Annotated[list[Name], Field(min_length=1, max_length=16)] = Field(default_factory=lambda: [LOG])

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str | None) -> str | None:
        if value is not None and value not in CATEGORIES:
            raise ValueError(f"unknown category (one of {', '.join(CATEGORIES)})")
        return value

    @model_validator(mode="after")
    def _one_condition(self) -> RuleConfig:
        if (self.category is None) == (self.signal is None):
            raise ValueError("a rule has either category (a failure condition) or signal (an engine signal)")
        return self

    def matches_signal(self, rule: str) -> bool:
        if self.signal is None:
            return False
        if self.signal.endswith(".*"):
            return rule.startswith(self.signal[:-1])
        return rule == self.signal

    def describe(self) -> str:
        if self.signal is not None:
            return f"signal {self.signal}"
        what = "failures" if self.category == ANY else f"{self.category} failures"
        if self.more_than == 0:
            return f"any {what} in {self.window_s}s"
        return f"more than {self.more_than} {what} in {self.window_s}s"


class AlertSettings(_Strict):
    rules: Annotated[list[RuleConfig], Field(max_length=64)] = Field(default_factory=list)
    notifiers: Annotated[list[NotifierConfig], Field(max_length=16)] = Field(default_factory=list)
    # Notifiers for engine signals no rule names (breaker, auto-pause, secret expiry).
    signal_notifiers: Annotated[list[Name], Field(min_length=1, max_length=16)] = Field(default_factory=lambda: [LOG])
    secret_expiry_lead_s: Annotated[StrictInt, Field(gt=0, le=90 * 86400)] = DEFAULT_SECRET_LEAD_S

    @model_validator(mode="after")
    def _consistent(self) -> AlertSettings:
        names = [rule.name for rule in self.rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"the rule {twice[0]!r} appears twice")
        known = {n.name for n in self.notifiers}
        if LOG in known:
            raise ValueError(f"{LOG!r} is the built-in notifier (the engine's log): give yours another name")
        if len(known) != len(self.notifiers):
            raise ValueError("two notifiers have the same name")
        for rule in self.rules:
            for name in rule.notifiers:
                if name != LOG and name not in known:
                    raise ValueError(f"rule {rule.name!r} names notifier {name!r}, which is not configured "
                                     f"(add it under notifiers, or use {LOG!r})")
        for name in self.signal_notifiers:
            if name != LOG and name not in known:
                raise ValueError(f"signal_notifiers names notifier {name!r}, which is not configured")
        return self

    def notifier(self, name: str) -> NotifierConfig:
        if name == LOG:
            return NotifierConfig(name=LOG, kind="log")
        for notifier in self.notifiers:
            if notifier.name == name:
                return notifier
        raise KeyError(name)

    def rule(self, name: str) -> RuleConfig | None:
        return next((rule for rule in self.rules if rule.name == name), None)

    def rule_for_signal(self, signal: str) -> RuleConfig | None:
        return next((rule for rule in self.rules if rule.matches_signal(signal)), None)


# The workbench's defaults for every connection (a connection's own rule of the same name
# replaces one of these): an authentication failure stops a connection's calls, so it is
# always worth telling someone; a failure storm of any kind too.
DEFAULTS = AlertSettings(rules=[
    RuleConfig(name="authentication", category=str(Category.AUTHENTICATION), more_than=0, window_s=300,
               severity="critical"),
    RuleConfig(name="failure-storm", category=ANY, more_than=100, window_s=300),
])


def effective(connection: AlertSettings | None, defaults: AlertSettings = DEFAULTS) -> AlertSettings:
    """A connection's settings over the defaults: its rules and notifiers replace the defaults'
    of the same name; its signal notifiers and secret lead replace theirs where it set them."""
    if connection is None:
        return defaults
    rules = {rule.name: rule for rule in defaults.rules} | {rule.name: rule for rule in connection.rules}
    notifiers = {n.name: n for n in defaults.notifiers} | {n.name: n for n in connection.notifiers}
    chosen = connection.model_fields_set
    return AlertSettings.model_construct(
        rules=list(rules.values()), notifiers=list(notifiers.values()),
        signal_notifiers=connection.signal_notifiers if "signal_notifiers" in chosen else defaults.signal_notifiers,
        secret_expiry_lead_s=(connection.secret_expiry_lead_s if "secret_expiry_lead_s" in chosen
                              else defaults.secret_expiry_lead_s))
