"""SQL for the identity context: plain functions over a Connection the calling service opened (one unit of work
per command); nothing here commits on its own. Only this module and `tables.py` import SQLAlchemy here."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import insert, select

from creditflow.identity.tables import users
from creditflow.kernel.engine import Connection

_IN_CHUNK = 900  # stays under SQLite's bound-parameter limit

# --- for trade ---


def users_of(conn: Connection, user_ids: Iterable[str]) -> dict[str, str]:
    """user_id -> org_id of the existing users among ``user_ids``."""
    wanted = sorted(set(user_ids))
    out: dict[str, str] = {}
    for i in range(0, len(wanted), _IN_CHUNK):
        rows = conn.execute(
            select(users.c.user_id, users.c.org_id).where(users.c.user_id.in_(wanted[i : i + _IN_CHUNK]))
        )
        out.update((r.user_id, r.org_id) for r in rows)
    return out


def add_user(conn: Connection, user_id: str, org_id: str, name: str, created_ts_ms: int) -> None:
    conn.execute(insert(users).values(user_id=user_id, org_id=org_id, name=name, created_ts_ms=created_ts_ms))
