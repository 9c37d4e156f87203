"""Who is calling: organisations' API keys, users with passwords and web sessions, and idempotency keys."""
