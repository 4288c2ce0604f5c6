"""`workbench sandbox payroll`: the payroll provider's sandbox, a real HTTP server with a ledger
and chaos knobs (see README "The payroll sandbox"). Needs no store."""

from __future__ import annotations

import sys
from typing import Any

import click

from .support import EXIT_USAGE, fail


class SandboxGroup(click.Group):
    """Bad flags are one line (`error: ...`), like every other refusal here."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            fail(exc.format_message(), EXIT_USAGE)


@click.group(cls=SandboxGroup)
def sandbox() -> None:
    """Local providers to develop and test against."""


@sandbox.command("payroll")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8790, show_default=True, help="Port to listen on (0: any free port).")
@click.option("--api-key", default="sk_sandbox_payroll", show_default=True, help="The key that may read and write.")
@click.option("--read-only-key", default="rk_sandbox_payroll", show_default=True,
              help="A key that may only read (writes get 403).")
@click.option("--webhook-url", help="Deliver every event here (POST, Standard Webhooks signed).")
@click.option("--webhook-secret", envvar="PAYROLL_SANDBOX_WEBHOOK_SECRET",
              help="whsec_ + base64 secret that signs webhooks (env PAYROLL_SANDBOX_WEBHOOK_SECRET).")
@click.option("--latency-ms", type=int, default=0, help="Added to every API request.")
@click.option("--timeout-after-commit", type=int, default=0, metavar="N",
              help="The next N writes are carried out, then answered only after --timeout-hang-s.")
@click.option("--timeout-hang-s", type=float, default=30.0, show_default=True)
@click.option("--rate-limit", type=int, default=0, metavar="N", help="The next N API requests get 429.")
@click.option("--retry-after", "retry_after_s", type=int, default=1, show_default=True,
              help="Retry-After seconds on a 429.")
@click.option("--fail-5xx", type=int, default=0, metavar="N", help="The next N API requests get --status-5xx.")
@click.option("--status-5xx", type=int, default=503, show_default=True)
@click.option("--duplicate-webhooks", type=int, default=0, metavar="N", help="Deliver each webhook N extra times.")
@click.option("--reorder-webhooks", is_flag=True,
              help="Hold webhooks until POST /_admin/webhooks/flush, then send them newest first.")
@click.option("--drift", type=click.Choice(["status", "field", "missing", "extra"]),
              help="Schema drift: a status (ON_HOLD) or a field (gross_amount) the mapping never saw, "
                   "a field gone (currency), or fields added (net_amount, tax).")
def sandbox_payroll(host: str, port: int, api_key: str, read_only_key: str, webhook_url: str | None,
                    webhook_secret: str | None, **knobs: Any) -> None:
    """Run the payroll provider's sandbox until SIGTERM or ctrl+c."""
    from pydantic import ValidationError

    from adapters.payroll.sandbox import Chaos, SandboxConfig, bind, serve
    from adapters.payroll.signature import BadSecret, secret_key

    if not 0 <= port <= 65535:
        fail(f"--port {port}: a port is 0 to 65535", EXIT_USAGE)
    if not api_key:
        fail("--api-key: must not be empty", EXIT_USAGE)
    try:
        chaos = Chaos(webhook_url=webhook_url, **knobs)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "flags"
        fail(f"{flag.replace('--retry-after-s', '--retry-after')}: {first['msg']}", EXIT_USAGE)
    if webhook_secret is not None:
        try:
            secret_key(webhook_secret)
        except BadSecret as exc:
            fail(f"--webhook-secret: {exc}", EXIT_USAGE)
    elif webhook_url is not None:
        fail("--webhook-url needs --webhook-secret (whsec_ + base64) to sign with", EXIT_USAGE)
    try:
        sock = bind(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port or --host")
    bound_host, bound_port = sock.getsockname()[:2]
    click.echo(f"payroll sandbox listening on http://{bound_host}:{bound_port} "
               f"(ledger: /_admin/ledger, chaos: /_admin/chaos)")
    sys.stdout.flush()
    serve(SandboxConfig(api_key=api_key, read_only_key=read_only_key or None, webhook_secret=webhook_secret,
                        chaos=chaos), sock)


COMMANDS = (sandbox,)
