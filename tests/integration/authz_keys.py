"""The authorization matrix's rows and abuse cases of keys and sessions (issue 13, H2): helpers that make,
on the matrix world, the objects those rows aim at (a fresh key, a fresh user, an admin's personal token),
so that no row revokes or resets anything another row relies on."""

from __future__ import annotations

import uuid
from typing import Any

from api_world import World
from sqlalchemy import select, update

from creditflow.bootstrap import build
from creditflow.http.app import create_app
from creditflow.http.ratelimit import RateLimiter
from creditflow.identity.access import key_id_of
from creditflow.identity.roles import UserRole
from creditflow.identity.tables import api_keys, users, web_sessions
from creditflow.kernel.clock import ManualClock

PASSWORD = "correct horse battery 9"
_ADMINS: dict[tuple[int, str], str] = {}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fresh_user(w: World, org: str, *roles: UserRole, password: str | None = None) -> str:
    user_id = f"u-{uuid.uuid4().hex[:10]}"
    w.app.people.add(org, user_id, "Matrix User", roles=roles or (UserRole.MAKER,))
    if password is not None:
        w.app.sessions.set_password(user_id, password)
    return user_id


def admin_token(w: World, org: str) -> str:
    """A personal token of an admin of ``org`` (made once per world)."""
    key = (id(w.app), org)
    if key not in _ADMINS:
        admin = fresh_user(w, org, UserRole.ADMIN)
        _ADMINS[key] = w.app.access.create_key(org, "matrix admin", user_id=admin)
    return _ADMINS[key]


def fresh_key(w: World, org: str) -> str:
    return key_id_of(w.app.access.create_key(org, "matrix target"))


def key_ids(side: Any) -> list[str]:
    return [key_id_of(t) for t in side.tokens.values()]


def as_admin(w: World, role: str) -> dict[str, str]:
    return bearer(admin_token(w, w.own.orgs[role]))


def change_password(w: World, role: str) -> dict[str, Any]:
    user_id = fresh_user(w, w.own.orgs[role], password=PASSWORD)
    token = w.app.access.create_key(w.own.orgs[role], "matrix person", user_id=user_id)
    body = {"current_password": PASSWORD, "new_password": "another horse 10 staple"}
    return {"path": "/v1/me/password", "json": body, "headers": bearer(token)}


# --- abuse cases -----------------------------------------------------------------------------------------


def live_keys(w: World, org: str) -> list[str]:
    """The organisation's usable keys: neither revoked nor expired."""
    k = api_keys.c
    with w.app.engine.connect() as conn:
        rows = conn.execute(
            select(k.key_id).where(k.org_id == org, k.revoked.is_(False), k.expires_ts_ms > w.app.clock.now_ms())
        )
        return sorted(r.key_id for r in rows)


def key_row(w: World, key_id: str) -> Any:
    with w.app.engine.connect() as conn:
        return tuple(conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).one())


def revoked_key_in_a_second_process(w: World, client: Any) -> Any:
    """Process 2 authenticates a key (and keeps it in memory); process 1 revokes it; once process 2's
    cache is older than auth_cache_ttl_s, process 2 refuses it."""
    clock = ManualClock(w.app.clock.now_ms())
    org = w.own.supplier
    with build(w.app.settings, clock=clock) as second:
        from fastapi.testclient import TestClient

        with TestClient(create_app(second, rate_limiter=RateLimiter(0, 1))) as other_process:
            token = w.app.access.create_key(org, "used in two processes")
            assert other_process.get("/v1/me", headers=bearer(token)).status_code == 200
            revoked = client.post(f"/v1/api-keys/{key_id_of(token)}/revoke", headers=w.own.headers("supplier"))
            assert revoked.status_code == 200, revoked.text
            clock.advance(second.settings.access.auth_cache_ttl_s * 1000)
            return other_process.post("/v1/api-keys", json={"label": "from a revoked key"}, headers=bearer(token))


_TARGETS: dict[str, str] = {}


def target_key(w: World, name: str, org: str) -> str:
    """A key made once for an abuse case (so that its state can be read before and after)."""
    if name not in _TARGETS:
        _TARGETS[name] = fresh_key(w, org)
    return _TARGETS[name]


def bank_revokes_anothers_key(w: World, client: Any) -> Any:
    key_id = target_key(w, "other-supplier", w.other.supplier)
    return client.post(f"/v1/api-keys/{key_id}/revoke", headers=w.own.headers("bank"))


def colleague_token(w: World) -> str:
    if "colleague" not in _TARGETS:
        colleague = fresh_user(w, w.own.core, UserRole.APPROVER)
        _TARGETS["colleague"] = key_id_of(w.app.access.create_key(w.own.core, "colleague's", user_id=colleague))
    return _TARGETS["colleague"]


def maker_revokes_a_colleagues_token(w: World, client: Any) -> Any:
    maker = fresh_user(w, w.own.core, UserRole.MAKER)
    token = w.app.access.create_key(w.own.core, "maker's", user_id=maker)
    return client.post(f"/v1/api-keys/{colleague_token(w)}/revoke", headers=bearer(token))


def expired_key(w: World, client: Any) -> Any:
    token = w.app.access.create_key(w.own.supplier, "short-lived", expires_in_s=60)
    with w.app.engine.begin() as conn:  # its lifetime is over (the world's clock is shared: not moved here)
        conn.execute(
            update(api_keys).where(api_keys.c.key_id == key_id_of(token)).values(expires_ts_ms=w.app.clock.now_ms())
        )
    return client.post("/v1/api-keys", json={"label": "from an expired key"}, headers=bearer(token))


def victim(w: World, org: str) -> str:
    name = f"victim-{org}"
    if name not in _TARGETS:
        _TARGETS[name] = fresh_user(w, org, UserRole.APPROVER, password=PASSWORD)
    return _TARGETS[name]


def account_of(w: World, user_id: str) -> Any:
    with w.app.engine.connect() as conn:
        row = conn.execute(select(users.c.password_hash, users.c.reset_sha256).where(users.c.user_id == user_id)).one()
        sessions = conn.execute(select(web_sessions.c.token_sha256).where(web_sessions.c.user_id == user_id)).all()
    return (tuple(row), len(sessions))


def org_key_resets_a_password(w: World, client: Any) -> Any:
    return client.post(f"/v1/users/{victim(w, w.own.core)}/password-reset", headers=w.own.headers("core_enterprise"))


def admin_resets_anothers_password(w: World, client: Any) -> Any:
    return client.post(f"/v1/users/{victim(w, w.other.core)}/password-reset", headers=as_admin(w, "core_enterprise"))
