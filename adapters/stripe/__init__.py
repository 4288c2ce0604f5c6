"""Stripe: payment_intent events (offline half: parsing, mapping, error classification)."""

from .adapter import StripeAdapter

__all__ = ["StripeAdapter"]
