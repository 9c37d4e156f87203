"""API keys: who is calling. Keys are random 256-bit secrets shown once; only their SHA-256 is stored
(a slow password hash buys nothing for secrets with this much entropy, and would cost every request).

Every key belongs to an organisation; a personal token also to one of its users (who uses it acts as that
person). Every key expires (``AccessSettings.api_key_ttl_default_s``, at most ``api_key_ttl_max_s``), can
be listed, revoked and rotated (docs/SECURITY.md ("Keys, sessions and sign-in") says by whom).

A process keeps the keys it verified in memory for at most ``auth_cache_ttl_s``; then it asks the database
again. That is the bound within which a revocation (or a role change, a user's deletion) made by another
process takes effect here; the process that revokes forgets the key at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from creditflow.identity import store
from creditflow.identity.reads import notify_admins
from creditflow.identity.roles import Auth, UserRole, parse_roles, require_person, require_user_role
from creditflow.identity.settings import AccessSettings
from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from creditflow.ledger import reads
from creditflow.ledger.model.parties import Role

TOKEN_PREFIX = "cf_"
_CACHE_MAX = 100_000
_LAST_USED_RESOLUTION_MS = 60_000  # last_used_ts_ms is written at most once a minute per key


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: always an organisation (``org_id``, its platform ``role``), and a person of it
    (``user_id``, ``user_roles``) when the caller signed in or used a personal token."""

    org_id: str
    role: Role
    key_id: str
    user_id: str | None = None
    user_roles: frozenset[UserRole] = frozenset()
    auth: Auth = Auth.API_KEY

    @property
    def is_person(self) -> bool:
        return self.user_id is not None


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """What may be shown about a key: never its secret."""

    key_id: str
    org_id: str
    label: str
    user_id: str | None  # None: organisation-wide
    created_ts_ms: int
    expires_ts_ms: int | None
    revoked: bool
    revoked_ts_ms: int | None
    last_used_ts_ms: int | None

    @classmethod
    def of(cls, row: store.ApiKey) -> ApiKeyInfo:
        return cls(
            row.key_id,
            row.org_id,
            row.label,
            row.user_id,
            row.created_ts_ms,
            row.expires_ts_ms,
            row.revoked,
            row.revoked_ts_ms,
            row.last_used_ts_ms,
        )

    def state(self, now_ms: int) -> str:
        if self.revoked:
            return "revoked"
        if self.expires_ts_ms is not None and self.expires_ts_ms <= now_ms:
            return "expired"
        return "active"

    def to_json(self, now_ms: int) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "org_id": self.org_id,
            "label": self.label,
            "owner": "personal" if self.user_id is not None else "organisation",
            "user_id": self.user_id,
            "created_ts_ms": self.created_ts_ms,
            "expires_ts_ms": self.expires_ts_ms,
            "revoked": self.revoked,
            "revoked_ts_ms": self.revoked_ts_ms,
            "last_used_ts_ms": self.last_used_ts_ms,
            "state": self.state(now_ms),
        }


@dataclass(frozen=True, slots=True)
class _Cached:
    digest: bytes
    principal: Principal
    expires_ts_ms: int | None
    fetched_ms: int


def key_id_of(token: str) -> str:
    return token[len(TOKEN_PREFIX) :].split("_", 1)[0]


def _split(token: str | None) -> tuple[str, str] | None:
    if not token or not token.startswith(TOKEN_PREFIX) or "_" not in token[len(TOKEN_PREFIX) :]:
        return None
    key_id, secret = token[len(TOKEN_PREFIX) :].split("_", 1)
    return key_id, secret


def may_manage_keys(principal: Principal) -> bool:
    """An organisation-wide key, or an admin of the organisation: sees and manages all its keys."""
    return not principal.is_person or UserRole.ADMIN in principal.user_roles


class Access:
    def __init__(self, engine: Engine, clock: Clock, settings: AccessSettings | None = None):
        self.engine = engine
        self.clock = clock
        self.settings = settings or AccessSettings()
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    # -- creating ------------------------------------------------------------------------------------

    def _expiry(self, now: int, expires_in_s: int | None) -> int:
        ttl = self.settings.api_key_ttl_default_s if expires_in_s is None else expires_in_s
        if ttl < 60 or ttl > self.settings.api_key_ttl_max_s:
            raise InvalidInput(
                f"expires_in_s must be between 60 and {self.settings.api_key_ttl_max_s}",
                code="api_key_lifetime_invalid",
                field="expires_in_s",
            )
        return now + ttl * 1000

    def _insert(
        self, conn: Connection, org_id: str, label: str, user_id: str | None, expires_ts_ms: int, now: int
    ) -> tuple[str, str]:
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        store.insert_api_key(
            conn,
            key_id=key_id,
            org_id=org_id,
            secret_sha256=hashlib.sha256(secret.encode()).digest(),
            label=label[:200],
            created_ts_ms=now,
            user_id=user_id,
            expires_ts_ms=expires_ts_ms,
        )
        return key_id, f"{TOKEN_PREFIX}{key_id}_{secret}"

    def create_key(
        self, org_id: str, label: str = "default", *, user_id: str | None = None, expires_in_s: int | None = None
    ) -> str:
        """Create an API key for ``org_id`` and return the token (the only time it is seen). With
        ``user_id`` it is that user's personal token: who uses it acts as that person. It expires after
        ``expires_in_s`` (default ``api_key_ttl_default_s``)."""
        now = self.clock.now_ms()
        expires = self._expiry(now, expires_in_s)
        with self.engine.begin() as conn:
            if not reads.parties(conn, [org_id]):
                raise NotFound(f"organisation {org_id!r} is not registered", code="party_not_found", field="org_id")
            if user_id is not None and store.user_org(conn, user_id) != org_id:
                raise NotFound(f"user {user_id!r} does not exist", code="user_not_found", field="user_id")
            _key_id, token = self._insert(conn, org_id, label, user_id, expires, now)
        return token

    def issue_key(
        self, by: Principal, *, label: str = "default", personal: bool = False, expires_in_s: int | None = None
    ) -> tuple[str, ApiKeyInfo]:
        """A key asked for through the API: a person's own personal token (``personal``), or an
        organisation-wide key, which only the organisation-wide key or an admin may create (admins are told)."""
        if personal:
            user_id: str | None = require_person(by, what="have a personal token (it acts as a person)")
        else:
            user_id = None
            if by.is_person:
                require_user_role(by, UserRole.ADMIN, what="create an organisation-wide API key")
        now = self.clock.now_ms()
        expires = self._expiry(now, expires_in_s)
        with self.engine.begin() as conn:
            if user_id is not None and store.user_org(conn, user_id) != by.org_id:
                raise NotFound(f"user {user_id!r} does not exist", code="user_not_found", field="user_id")
            key_id, token = self._insert(conn, by.org_id, label, user_id, expires, now)
            if user_id is None:
                notify_admins(
                    conn,
                    org_id=by.org_id,
                    kind="api_key_created",
                    message=f"an organisation-wide API key {key_id} ({label[:200]}) was created by {_who(by)}",
                    now_ms=now,
                    data={"key_id": key_id, "label": label[:200], "by": _who(by)},
                )
            row = store.api_key(conn, key_id)
        assert row is not None
        return token, ApiKeyInfo.of(row)

    # -- listing, revoking, rotating -----------------------------------------------------------------

    def keys_visible_to(self, by: Principal) -> list[ApiKeyInfo]:
        """The organisation's keys for the org-wide key or an admin; a person's own personal tokens otherwise."""
        with self.engine.connect().execution_options(read_only=True) as conn:
            if may_manage_keys(by):
                rows = store.api_keys_of(conn, by.org_id)
            else:
                rows = store.api_keys_of(conn, by.org_id, user_id=by.user_id)
        return [ApiKeyInfo.of(r) for r in rows]

    def _managed(self, conn: Connection, by: Principal, key_id: str) -> store.ApiKey:
        """The key if ``by`` may manage it; 404 ``api_key_not_found`` otherwise (absent, another
        organisation's, or a colleague's token for a person who is not an admin: all answer the same)."""
        row = store.api_key(conn, key_id[:32], for_update=True)
        if row is None or row.org_id != by.org_id or not (may_manage_keys(by) or row.user_id == by.user_id):
            raise NotFound(f"API key {key_id!r} does not exist", code="api_key_not_found", field="key_id")
        return row

    def revoke(self, by: Principal, key_id: str) -> ApiKeyInfo:
        """Revoke a key (it stops at once in this process, within ``auth_cache_ttl_s`` in the others);
        the organisation's admins are told. Revoking a revoked key changes nothing and answers the same."""
        now = self.clock.now_ms()
        with self.engine.begin() as conn:
            row = self._managed(conn, by, key_id)
            if store.revoke_api_key(conn, row.key_id, now):
                notify_admins(
                    conn,
                    org_id=row.org_id,
                    kind="api_key_revoked",
                    message=f"API key {row.key_id} ({row.label}) was revoked by {_who(by)}",
                    now_ms=now,
                    data={"key_id": row.key_id, "label": row.label, "user_id": row.user_id, "by": _who(by)},
                )
            revoked = store.api_key(conn, row.key_id)
        self.forget([row.key_id])
        assert revoked is not None
        return ApiKeyInfo.of(revoked)

    def rotate(self, by: Principal, key_id: str, *, expires_in_s: int | None = None) -> tuple[str, ApiKeyInfo]:
        """A new key for the same owner and label; the old one is revoked in the same transaction. 409
        ``api_key_revoked`` for a key already revoked (create a new one instead)."""
        now = self.clock.now_ms()
        expires = self._expiry(now, expires_in_s)
        with self.engine.begin() as conn:
            row = self._managed(conn, by, key_id)
            if row.revoked:
                raise Conflict("the key is revoked: create a new one", code="api_key_revoked", field="key_id")
            if row.user_id is not None and store.user_org(conn, row.user_id) != row.org_id:
                raise NotFound(f"API key {key_id!r} does not exist", code="api_key_not_found", field="key_id")
            store.revoke_api_key(conn, row.key_id, now)
            new_id, token = self._insert(conn, row.org_id, row.label, row.user_id, expires, now)
            notify_admins(
                conn,
                org_id=row.org_id,
                kind="api_key_rotated",
                message=f"API key {row.key_id} ({row.label}) was rotated by {_who(by)}: {new_id} replaces it",
                now_ms=now,
                data={"key_id": row.key_id, "new_key_id": new_id, "label": row.label, "by": _who(by)},
            )
            new = store.api_key(conn, new_id)
        self.forget([row.key_id])
        assert new is not None
        return token, ApiKeyInfo.of(new)

    def revoke_key(self, key_id: str) -> None:
        """Revoke a key by id (the operator's tools, tests); no notification."""
        with self.engine.begin() as conn:
            store.revoke_api_key(conn, key_id, self.clock.now_ms())
        self.forget([key_id])

    def forget(self, key_ids: Iterable[str]) -> None:
        """Drop keys from this process's cache (after revoking them)."""
        with self._lock:
            for key_id in key_ids:
                self._cache.pop(key_id, None)

    # -- authenticating ------------------------------------------------------------------------------

    def _fresh(self, key_id: str, digest: bytes, now: int) -> Principal | None:
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is None or not hmac.compare_digest(cached.digest, digest):
            return None
        ttl_ms = self.settings.auth_cache_ttl_s * 1000
        if not (cached.fetched_ms <= now < cached.fetched_ms + ttl_ms):
            return None  # stale (or the clock went back): ask the database
        if cached.expires_ts_ms is not None and cached.expires_ts_ms <= now:
            return None
        return cached.principal

    def cached(self, token: str | None) -> Principal | None:
        """The principal for ``token`` if it was authenticated within ``auth_cache_ttl_s`` (no I/O;
        None otherwise)."""
        parts = _split(token)
        if parts is None:
            return None
        return self._fresh(parts[0], hashlib.sha256(parts[1].encode()).digest(), self.clock.now_ms())

    def authenticate(self, token: str | None) -> Principal:
        """401 ``unauthenticated`` (no key, unknown, wrong secret), ``api_key_revoked``, ``api_key_expired``."""
        parts = _split(token)
        if parts is None:
            raise Unauthenticated("send an API key: Authorization: Bearer cf_...", code="unauthenticated")
        key_id, secret = parts
        digest = hashlib.sha256(secret.encode()).digest()
        now = self.clock.now_ms()
        principal = self._fresh(key_id, digest, now)
        if principal is not None:
            return principal
        with self.engine.connect().execution_options(read_only=True) as conn:
            row = store.api_key(conn, key_id)
            party = reads.parties(conn, [row.org_id]) if row is not None else []
            user = store.users_by_id(conn, [row.user_id]).get(row.user_id) if row and row.user_id else None
        if row is None or not party or not hmac.compare_digest(row.secret_sha256, digest):
            self.forget([key_id])
            raise Unauthenticated("the API key is not valid", code="unauthenticated")
        if row.revoked:
            self.forget([key_id])
            raise Unauthenticated("the API key was revoked", code="api_key_revoked")
        if row.expires_ts_ms is not None and row.expires_ts_ms <= now:
            self.forget([key_id])
            raise Unauthenticated("the API key has expired: rotate it or create a new one", code="api_key_expired")
        if row.user_id is None:
            principal = Principal(org_id=row.org_id, role=party[0].role, key_id=key_id)
        elif user is None or user.org_id != row.org_id:
            self.forget([key_id])
            raise Unauthenticated("the API key is not valid", code="unauthenticated")
        else:
            principal = Principal(
                org_id=row.org_id,
                role=party[0].role,
                key_id=key_id,
                user_id=user.user_id,
                user_roles=parse_roles(user.roles),
                auth=Auth.PERSONAL_TOKEN,
            )
        if row.last_used_ts_ms is None or now - row.last_used_ts_ms >= _LAST_USED_RESOLUTION_MS:
            with self.engine.begin() as conn:
                store.touch_api_key(conn, key_id, now)
        with self._lock:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key_id] = _Cached(digest, principal, row.expires_ts_ms, now)
        return principal


def _who(principal: Principal) -> str:
    return f"user {principal.user_id}" if principal.user_id is not None else f"organisation key {principal.key_id}"
