"""Alembic migrations; schema.py registers every context's tables for them."""
