"""SQL for the identity context: plain functions over a Connection the calling service opened (one unit of work
per command); nothing here commits on its own. Only this module and `tables.py` import SQLAlchemy here.

API keys, web users and their sessions, and the idempotency keys of POST requests. Rows come back as
small named tuples; secrets only ever as their SHA-256 (bytes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, case, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from creditflow.identity.tables import (
    api_keys,
    idempotency_keys,
    notifications,
    sign_in_throttle,
    users,
    web_sessions,
)
from creditflow.kernel.engine import before_key

_IN_CHUNK = 900  # stays under SQLite's bound-parameter limit


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), _IN_CHUNK):
        yield values[i : i + _IN_CHUNK]


# --- API keys ----------------------------------------------------------------------------------------


class ApiKey(NamedTuple):
    key_id: str
    org_id: str
    secret_sha256: bytes
    revoked: bool
    user_id: str | None  # a personal token's user; None: organisation-wide
    label: str = ""
    created_ts_ms: int = 0
    expires_ts_ms: int | None = None  # None: a key from before keys expired (migration 0012)
    revoked_ts_ms: int | None = None
    last_used_ts_ms: int | None = None


def insert_api_key(
    conn: Connection,
    *,
    key_id: str,
    org_id: str,
    secret_sha256: bytes,
    label: str,
    created_ts_ms: int,
    user_id: str | None = None,
    expires_ts_ms: int | None = None,
) -> None:
    conn.execute(
        api_keys.insert().values(
            key_id=key_id,
            org_id=org_id,
            secret_sha256=secret_sha256,
            label=label,
            created_ts_ms=created_ts_ms,
            revoked=False,
            user_id=user_id,
            expires_ts_ms=expires_ts_ms,
        )
    )


def _api_key(row: Any) -> ApiKey:
    return ApiKey(
        row.key_id,
        row.org_id,
        bytes(row.secret_sha256),
        bool(row.revoked),
        row.user_id,
        row.label,
        row.created_ts_ms,
        row.expires_ts_ms,
        row.revoked_ts_ms,
        row.last_used_ts_ms,
    )


def api_key(conn: Connection, key_id: str, *, for_update: bool = False) -> ApiKey | None:
    query = select(api_keys).where(api_keys.c.key_id == key_id)
    row = conn.execute(query.with_for_update() if for_update else query).first()
    return None if row is None else _api_key(row)


def api_keys_of(conn: Connection, org_id: str, *, user_id: str | None = None) -> list[ApiKey]:
    """The organisation's keys (only ``user_id``'s personal tokens if given), newest first."""
    k = api_keys.c
    query = select(api_keys).where(k.org_id == org_id)
    if user_id is not None:
        query = query.where(k.user_id == user_id)
    return [_api_key(r) for r in conn.execute(query.order_by(k.created_ts_ms.desc(), k.key_id))]


def revoke_api_key(conn: Connection, key_id: str, now_ms: int | None = None) -> bool:
    """Revoke the key (once: the first revocation's time stays); False if it was already revoked."""
    k = api_keys.c
    done = conn.execute(
        update(api_keys).where(k.key_id == key_id, k.revoked.is_(False)).values(revoked=True, revoked_ts_ms=now_ms)
    ).rowcount
    return bool(done)


def revoke_personal_tokens(conn: Connection, user_id: str, now_ms: int) -> list[str]:
    """Revoke every live personal token of the user; the ids revoked."""
    k = api_keys.c
    ids = [r.key_id for r in conn.execute(select(k.key_id).where(k.user_id == user_id, k.revoked.is_(False)))]
    if ids:
        conn.execute(update(api_keys).where(k.key_id.in_(ids)).values(revoked=True, revoked_ts_ms=now_ms))
    return ids


def touch_api_key(conn: Connection, key_id: str, now_ms: int) -> None:
    conn.execute(update(api_keys).where(api_keys.c.key_id == key_id).values(last_used_ts_ms=now_ms))


# --- users -------------------------------------------------------------------------------------------


class User(NamedTuple):
    """A user of an organisation (who approves payables, who signs in to the pages)."""

    user_id: str
    org_id: str
    name: str
    roles: str = ""  # space-separated (creditflow.identity.roles.parse_roles)


class SignInState(NamedTuple):
    """What a sign-in reads of a user: the password hash (None: no password set) and the lock-out."""

    user_id: str
    org_id: str
    name: str
    password_hash: str | None
    failed_sign_ins: int
    locked_until_ms: int | None
    roles: str


def users_by_id(conn: Connection, user_ids: Iterable[str]) -> dict[str, User]:
    wanted = sorted(set(user_ids))
    out: dict[str, User] = {}
    for chunk in _chunks(wanted):
        rows = conn.execute(
            select(users.c.user_id, users.c.org_id, users.c.name, users.c.roles).where(users.c.user_id.in_(chunk))
        )
        out.update((r.user_id, User(r.user_id, r.org_id, r.name, r.roles)) for r in rows)
    return out


def user_exists(conn: Connection, user_id: str) -> bool:
    return conn.execute(select(users.c.user_id).where(users.c.user_id == user_id)).first() is not None


def user_org(conn: Connection, user_id: str) -> str | None:
    org = conn.execute(select(users.c.org_id).where(users.c.user_id == user_id)).scalar()
    return None if org is None else str(org)


def insert_user(conn: Connection, *, user_id: str, org_id: str, name: str, created_ts_ms: int, roles: str) -> None:
    conn.execute(
        insert(users).values(user_id=user_id, org_id=org_id, name=name, created_ts_ms=created_ts_ms, roles=roles)
    )


def set_user_roles(conn: Connection, user_id: str, roles: str) -> bool:
    """Replace the user's roles; False if there is no such user."""
    return bool(conn.execute(update(users).where(users.c.user_id == user_id).values(roles=roles)).rowcount)


def users_page(conn: Connection, org_id: str, *, limit: int, after: str | None) -> list[User]:
    """The organisation's users by user_id, after ``after`` (a keyset page)."""
    query = select(users.c.user_id, users.c.org_id, users.c.name, users.c.roles).where(users.c.org_id == org_id)
    if after is not None:
        query = query.where(users.c.user_id > after)
    rows = conn.execute(query.order_by(users.c.user_id).limit(limit))
    return [User(r.user_id, r.org_id, r.name, r.roles) for r in rows]


def users_of_org(conn: Connection, org_id: str, *, for_update: bool = False) -> list[User]:
    """The organisation's users by user_id. ``for_update`` locks their rows (PostgreSQL; SQLite's writers
    hold the database's write lock from BEGIN anyway), so that two admins changing roles at once cannot
    both take away the last admin."""
    query = (
        select(users.c.user_id, users.c.org_id, users.c.name, users.c.roles)
        .where(users.c.org_id == org_id)
        .order_by(users.c.user_id)
    )
    if for_update:
        query = query.with_for_update()
    return [User(r.user_id, r.org_id, r.name, r.roles) for r in conn.execute(query)]


def sign_in_state(conn: Connection, user_id: str) -> SignInState | None:
    row = conn.execute(select(users).where(users.c.user_id == user_id)).first()
    if row is None:
        return None
    return SignInState(
        row.user_id, row.org_id, row.name, row.password_hash, row.failed_sign_ins, row.locked_until_ms, row.roles
    )


def set_password_hash(conn: Connection, user_id: str, password_hash: str) -> bool:
    """Replace the user's password hash and clear its lock-out; False if there is no such user."""
    done = conn.execute(
        update(users)
        .where(users.c.user_id == user_id)
        .values(password_hash=password_hash, failed_sign_ins=0, locked_until_ms=None)
    ).rowcount
    return bool(done)


def clear_failures(conn: Connection, user_id: str, *, rehashed: str | None = None) -> None:
    """After a good password: no failures, no lock-out (and the password's new hash, if it was rehashed)."""
    values: dict[str, object] = {"failed_sign_ins": 0, "locked_until_ms": None}
    if rehashed is not None:
        values["password_hash"] = rehashed
    conn.execute(update(users).where(users.c.user_id == user_id).values(**values))


def set_reset(conn: Connection, user_id: str, *, reset_sha256: bytes, expires_ts_ms: int) -> None:
    """An admin's reset: the old password stops working now; the token's SHA-256 replaces any earlier one."""
    conn.execute(
        update(users)
        .where(users.c.user_id == user_id)
        .values(password_hash=None, reset_sha256=reset_sha256, reset_expires_ts_ms=expires_ts_ms)
    )


class ResetState(NamedTuple):
    user_id: str
    org_id: str
    reset_sha256: bytes | None
    reset_expires_ts_ms: int | None


def reset_state(conn: Connection, user_id: str, *, for_update: bool = False) -> ResetState | None:
    u = users.c
    query = select(u.user_id, u.org_id, u.reset_sha256, u.reset_expires_ts_ms).where(u.user_id == user_id)
    row = conn.execute(query.with_for_update() if for_update else query).first()
    if row is None:
        return None
    digest = bytes(row.reset_sha256) if row.reset_sha256 is not None else None
    return ResetState(row.user_id, row.org_id, digest, row.reset_expires_ts_ms)


def finish_reset(conn: Connection, user_id: str, password_hash: str) -> None:
    conn.execute(
        update(users)
        .where(users.c.user_id == user_id)
        .values(password_hash=password_hash, reset_sha256=None, reset_expires_ts_ms=None)
    )


# --- sign-in throttling ------------------------------------------------------------------------------


def count_failure(conn: Connection, scope: str, subject: str, *, now_ms: int, window_ms: int) -> int:
    """Count one failure for (scope, subject) and return the count, in ONE statement (INSERT .. ON CONFLICT
    DO UPDATE .. RETURNING): concurrent failures each get their own number, none is lost. A counter whose
    last failure is older than ``window_ms`` starts again at 1."""
    t = sign_in_throttle
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(t).values(
        scope=scope, subject=subject, failures=1, last_failure_ts_ms=now_ms, blocked_until_ts_ms=0
    )
    stale = t.c.last_failure_ts_ms < now_ms - window_ms
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.scope, t.c.subject],
        set_={
            "failures": case((stale, 1), else_=t.c.failures + 1),
            "blocked_until_ts_ms": case((stale, 0), else_=t.c.blocked_until_ts_ms),
            "last_failure_ts_ms": now_ms,
        },
    ).returning(t.c.failures)
    return int(conn.execute(stmt).scalar_one())


def block_until(conn: Connection, scope: str, subject: str, until_ms: int) -> None:
    """Make (scope, subject) wait until at least ``until_ms`` (never shortens a wait already set)."""
    t = sign_in_throttle.c
    conn.execute(
        update(sign_in_throttle)
        .where(t.scope == scope, t.subject == subject, t.blocked_until_ts_ms < until_ms)
        .values(blocked_until_ts_ms=until_ms)
    )


def blocked_until(conn: Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The wait of each (scope, subject) that has a counter."""
    t = sign_in_throttle.c
    wanted = list(keys)
    if not wanted:
        return {}
    condition = or_(*[(t.scope == scope) & (t.subject == subject) for scope, subject in wanted])
    rows = conn.execute(select(t.scope, t.subject, t.blocked_until_ts_ms).where(condition))
    return {(r.scope, r.subject): int(r.blocked_until_ts_ms) for r in rows}


def clear_throttle(conn: Connection, keys: Iterable[tuple[str, str]]) -> None:
    t = sign_in_throttle.c
    for scope, subject in keys:
        conn.execute(delete(sign_in_throttle).where(t.scope == scope, t.subject == subject))


def clear_user_throttle(conn: Connection, user_id: str, user_address_prefix: str) -> int:
    """Forget every counter of the user (its own and those of each (user, address)); how many there were."""
    t = sign_in_throttle.c
    done = conn.execute(
        delete(sign_in_throttle).where(
            or_(
                (t.scope == "user") & (t.subject == user_id),
                (t.scope == "user_address") & t.subject.startswith(user_address_prefix, autoescape=True),
            )
        )
    ).rowcount
    return int(done or 0)


# --- web sessions ------------------------------------------------------------------------------------


class Session(NamedTuple):
    user_id: str
    org_id: str
    csrf_token: str
    expires_ts_ms: int


def insert_session(
    conn: Connection,
    *,
    token_sha256: bytes,
    user_id: str,
    org_id: str,
    csrf_token: str,
    created_ts_ms: int,
    expires_ts_ms: int,
) -> None:
    conn.execute(
        insert(web_sessions).values(
            token_sha256=token_sha256,
            user_id=user_id,
            org_id=org_id,
            csrf_token=csrf_token,
            created_ts_ms=created_ts_ms,
            expires_ts_ms=expires_ts_ms,
        )
    )


def session(conn: Connection, token_sha256: bytes) -> Session | None:
    row = conn.execute(select(web_sessions).where(web_sessions.c.token_sha256 == token_sha256)).first()
    return None if row is None else Session(row.user_id, row.org_id, row.csrf_token, row.expires_ts_ms)


def delete_session(conn: Connection, token_sha256: bytes) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.token_sha256 == token_sha256))


def delete_sessions_of(conn: Connection, user_id: str) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.user_id == user_id))


def delete_expired_sessions(conn: Connection, now_ms: int) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.expires_ts_ms <= now_ms))


# --- idempotency keys --------------------------------------------------------------------------------


class IdempotencyRow(NamedTuple):
    request_sha256: bytes
    status_code: int
    response: str
    created_ts_ms: int
    secret_withheld: bool = False


def insert_idempotency_key(
    conn: Connection, *, org_id: str, key: str, request_sha256: bytes, status_code: int, created_ts_ms: int
) -> bool:
    """Insert the key's row unless (org_id, key) has one: True if this call inserted it (the caller holds the key).

    INSERT .. ON CONFLICT DO NOTHING RETURNING: a row back means this request holds the key (rowcount is
    not reliable for it across drivers; RETURNING is, on PostgreSQL and SQLite >= 3.35)."""
    values = {
        "org_id": org_id,
        "key": key,
        "request_sha256": request_sha256,
        "status_code": status_code,
        "response": "",
        "created_ts_ms": created_ts_ms,
    }
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(idempotency_keys).values(**values).on_conflict_do_nothing().returning(idempotency_keys.c.key)
    return conn.execute(stmt).first() is not None


def idempotency_key(conn: Connection, org_id: str, key: str) -> IdempotencyRow | None:
    k = idempotency_keys.c
    row = conn.execute(select(idempotency_keys).where(k.org_id == org_id, k.key == key)).first()
    if row is None:
        return None
    return IdempotencyRow(
        bytes(row.request_sha256), row.status_code, row.response, row.created_ts_ms, bool(row.secret_withheld)
    )


def delete_idempotency_key_created(conn: Connection, org_id: str, key: str, created_ts_ms: int) -> None:
    """Delete the key's row if it is still the one created at ``created_ts_ms`` (an expired one)."""
    k = idempotency_keys.c
    conn.execute(delete(idempotency_keys).where(k.org_id == org_id, k.key == key, k.created_ts_ms == created_ts_ms))


def store_idempotent_response(
    conn: Connection, org_id: str, key: str, status_code: int, response: str, *, secret_withheld: bool = False
) -> None:
    k = idempotency_keys.c
    conn.execute(
        update(idempotency_keys)
        .where(k.org_id == org_id, k.key == key)
        .values(status_code=status_code, response=response, secret_withheld=secret_withheld)
    )


def delete_idempotency_key_with_status(conn: Connection, org_id: str, key: str, status_code: int) -> None:
    """Delete the key's row if it still has ``status_code`` (a reservation whose request did not complete)."""
    k = idempotency_keys.c
    conn.execute(delete(idempotency_keys).where(k.org_id == org_id, k.key == key, k.status_code == status_code))


# --- notifications -----------------------------------------------------------------------------------


class Notification(NamedTuple):
    notification_id: str
    org_id: str
    kind: str
    message: str
    data_json: str
    created_ts_ms: int


def insert_notification(
    conn: Connection, *, notification_id: str, org_id: str, kind: str, message: str, data_json: str, created_ts_ms: int
) -> None:
    conn.execute(
        insert(notifications).values(
            notification_id=notification_id,
            org_id=org_id,
            kind=kind,
            message=message,
            data_json=data_json,
            created_ts_ms=created_ts_ms,
        )
    )


def notifications_of(
    conn: Connection, org_id: str, *, limit: int, before: tuple[int, str] | None = None
) -> list[Notification]:
    """The organisation's newest notifications first (after the keyset ``before``, if given)."""
    n = notifications.c
    query = select(notifications).where(n.org_id == org_id)
    if before is not None:
        query = query.where(before_key([n.created_ts_ms, n.notification_id], before))
    rows = conn.execute(query.order_by(n.created_ts_ms.desc(), n.notification_id.desc()).limit(limit))
    return [Notification(r.notification_id, r.org_id, r.kind, r.message, r.data_json, r.created_ts_ms) for r in rows]


def delete_stale_throttle(conn: Connection, before_ms: int) -> None:
    """Forget counters whose last failure is older than ``before_ms`` (they would start again anyway)."""
    t = sign_in_throttle.c
    conn.execute(delete(sign_in_throttle).where(t.last_failure_ts_ms < before_ms, t.blocked_until_ts_ms < before_ms))
