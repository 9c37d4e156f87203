"""Identity's data as other contexts see it, inside their own unit of work.

Confirmation (trade) checks, in the transaction that records an approval, that the approver is one of the
debtor's users and holds the approver role as stored now, so these functions take the caller's Connection
(trade only reads users: `creditflow.identity.people` adds them). They are the only door into identity's store for other contexts
(an import-linter contract in pyproject keeps it so): the store's row layout stays identity's business.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from creditflow.identity import store
from creditflow.identity.roles import UserRole
from creditflow.identity.store import User
from creditflow.kernel.engine import Connection

__all__ = ["User", "UserRole", "notify_admins", "user_exists", "user_org", "users", "users_of"]


# --- for trade ---


def users_of(conn: Connection, org_id: str, user_ids: Iterable[str]) -> dict[str, User]:
    """The users of ``org_id`` among ``user_ids``, by user id (unknown ids and other organisations'
    users are simply absent)."""
    return {u.user_id: u for u in store.users_by_id(conn, user_ids).values() if u.org_id == org_id}


def users(conn: Connection, user_ids: Iterable[str]) -> dict[str, User]:
    """The users among ``user_ids``, whatever their organisation, by user id."""
    return store.users_by_id(conn, user_ids)


def user_exists(conn: Connection, user_id: str) -> bool:
    """Whether ``user_id`` is taken (user ids are unique across organisations)."""
    return store.user_exists(conn, user_id)


def user_org(conn: Connection, user_id: str) -> str | None:
    """The organisation of ``user_id``, or None if there is no such user."""
    return store.user_org(conn, user_id)


# --- for every context ---


def notify_admins(
    conn: Connection,
    *,
    org_id: str,
    kind: str,
    message: str,
    now_ms: int,
    data: Mapping[str, Any] | None = None,
) -> str:
    """Tell ``org_id``'s admins something (in the caller's transaction, so the notice exists exactly when
    what it reports happened). ``kind`` is a stable snake_case name (``account_changed``, ...); ``message``
    is for people. Returns the notification id."""
    notification_id = secrets.token_hex(16)
    store.insert_notification(
        conn,
        notification_id=notification_id,
        org_id=org_id,
        kind=kind,
        message=message[:2000],
        data_json=json.dumps(dict(data or {}), sort_keys=True, ensure_ascii=False),
        created_ts_ms=now_ms,
    )
    return notification_id
