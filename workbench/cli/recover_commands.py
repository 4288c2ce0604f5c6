"""Recovery by filter: `workbench recover CONNECTION --since TIME`, `recover status`, `recover
cancel`, and the plan-then-confirm step `failures retry --filter` shares with them."""

from __future__ import annotations

from typing import Any

import click

from workbench.domain.failure_filter import CATEGORIES, FailureFilter
from workbench.domain.moments import BadMoment, parse_moment
from workbench.services import recovery
from workbench.services.errors import InvalidArgument
from workbench.services.recovery import RecoveryInfo, RecoveryPlan

from .output import json_array, json_value, table
from .support import State, confirm_or_stop, pass_state


def duration(seconds: float) -> str:
    """`0.4s`, `3m 20s`, `2h 5m`: how long, as a person reads it."""
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"


def print_plan(plan: RecoveryPlan) -> None:
    click.echo(f"plan: retry {plan.failures} failure(s) matching {plan.filter.describe()}")
    for part in plan.connections:
        pace = f"pace {part.rate_per_s:g}/s: ~{duration(part.expected_s or 0.0)}" if part.rate_per_s else "no pace set"
        click.echo(f"  {part.name or '(no connection)'}: {part.failures} failure(s): {part.commands} command(s) "
                   f"back to the outbox, {part.deliveries} delivery(ies) re-run through ingest; {pace}")
    click.echo(f"expected duration: ~{duration(plan.expected_s)} (the engine retries {recovery.BATCH} a second; "
               "commands then go out at their connection's pace)")


def plan_and_submit(state: State, flt: FailureFilter, *, yes: bool, note: str | None, as_json: bool = False) -> None:
    """Print the plan; with confirmation (a terminal's answer, or --yes), hand it to the engine.
    `as_json`: one object at the end instead, {"plan": ..., "recovery": ... or null}."""
    plan = recovery.plan(state.ctx, flt)
    if not as_json:
        print_plan(plan)
    if plan.failures == 0:
        if as_json:
            json_value({"plan": plan.as_dict(), "recovery": None})
        else:
            click.echo("nothing to recover")
        return
    confirm_or_stop(yes, f"Retry these {plan.failures} failure(s)?", "a recovery")
    started = recovery.submit(state.ctx, plan, note)
    if as_json:
        json_value({"plan": plan.as_dict(), "recovery": started.as_dict()})
        return
    changed = f" (the plan counted {plan.failures}: the store changed meanwhile)" if started.total != plan.failures else ""
    click.echo(f"started recovery {started.id}: {started.total} failure(s){changed}; a running engine carries it "
               f"out (workbench recover status {started.id}; cancel: workbench recover cancel {started.id})")


def moment(state: State, option: str, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return parse_moment(value, state.ctx.clock())
    except BadMoment as exc:
        raise InvalidArgument(f"{option}: {exc}") from None


class _ConnectionFirst(click.Group):
    """`recover NAME ...` runs the hidden `run` subcommand; `recover status|cancel` are theirs."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_ConnectionFirst)
def recover() -> None:
    """Retry everything of a connection that failed since a time (a plan first), and follow or
    cancel recoveries: `recover CONNECTION --since TIME [--until TIME] [--category C] [--yes]`,
    `recover status [ID] [--json]`, `recover cancel ID`."""


@recover.command("run", hidden=True)
@click.argument("connection_name", metavar="CONNECTION")
@click.option("--since", required=True, help="ISO 8601 (UTC unless a zone is given) or a time ago (2h, 3d).")
@click.option("--until", help="Same forms; default: now.")
@click.option("--category", help="Only failures of this category.")
@click.option("--note", help="Why (kept in the audit trail).")
@click.option("--yes", is_flag=True, help="Start without asking (for scripts).")
@click.option("--json", "as_json", is_flag=True, help="The plan and the recovery started as one JSON object.")
@pass_state
def recover_run(state: State, connection_name: str, since: str, until: str | None, category: str | None,
                note: str | None, yes: bool, as_json: bool) -> None:
    """Retry the connection's open failures recorded since a time."""
    if category is not None and category not in CATEGORIES:
        raise InvalidArgument(f"unknown category {category[:40]!r}; expected one of {', '.join(CATEGORIES)}")
    flt = recovery.connection_filter(state.ctx, connection_name, since=moment(state, "--since", since),
                                     until=moment(state, "--until", until), category=category)
    plan_and_submit(state, flt, yes=yes, note=note, as_json=as_json)


def _row(info: RecoveryInfo) -> tuple[Any, ...]:
    cancel = " (cancel asked)" if info.cancel_requested_at and info.state == recovery.RUNNING else ""
    return (info.id, info.state + cancel, f"{info.done + info.skipped}/{info.total}", info.skipped,
            info.requested_by, info.description)


@recover.command("status")
@click.argument("recovery_id", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def recover_status(state: State, recovery_id: str | None, as_json: bool) -> None:
    """Recoveries (running first) or one, with their progress."""
    found = recovery.status(state.ctx, recovery_id)
    if as_json:
        if recovery_id is not None:
            json_value(found[0].as_dict())
        else:
            json_array(info.as_dict() for info in found)
        return
    table((_row(info) for info in found), ["id", "state", "progress", "skipped", "by", "filter"],
          [33, 24, 11, 7, 20, 60])


@recover.command("cancel")
@click.argument("recovery_id")
@click.option("--note", help="Why (kept in the audit trail).")
@pass_state
def recover_cancel(state: State, recovery_id: str, note: str | None) -> None:
    """Stop a running recovery; what it has not retried yet stays as it is."""
    info = recovery.cancel(state.ctx, recovery_id, note)
    click.echo(f"{info.id}: cancel asked after {info.done + info.skipped} of {info.total}; "
               "the engine stops before the next failure")


COMMANDS = (recover,)
