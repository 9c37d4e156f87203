"""Identity's data as other contexts see it, inside their own unit of work.

A command of another context (a confirmation checking which organisation a user belongs to) reads or
adds users in the same transaction it writes its own rows in, so these functions take the caller's
Connection. They are the only door into identity's store for other contexts (an import-linter contract in
pyproject keeps it so).
"""

from __future__ import annotations

from collections.abc import Iterable

from creditflow.identity import store
from creditflow.kernel.engine import Connection

# --- for trade ---


def users_of(conn: Connection, user_ids: Iterable[str]) -> dict[str, str]:
    """user_id -> org_id of the existing users among ``user_ids`` (unknown ids are simply absent)."""
    return store.users_of(conn, user_ids)


def add_user(conn: Connection, user_id: str, org_id: str, name: str, created_ts_ms: int) -> None:
    """A new user of ``org_id`` (without a password: it cannot sign in to the web pages yet)."""
    store.add_user(conn, user_id, org_id, name, created_ts_ms)
