"""Payroll: a provider deliberately unlike Stripe (no event IDs, no idempotency keys, offset
pagination, Standard Webhooks signatures), and its chaos sandbox (`sandbox/`)."""

from .adapter import PayrollAdapter

__all__ = ["PayrollAdapter"]
