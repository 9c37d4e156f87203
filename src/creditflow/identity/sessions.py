"""Users signing in to the web pages: Argon2id passwords, sessions, lock-out.

A session token is a random 256-bit secret handed to the browser in an HttpOnly cookie; only its
SHA-256 is stored (like API keys, a slow hash buys nothing for a secret with this much entropy). Each
session carries its own CSRF token, which every state-changing request from a page must echo (a form
field or the ``X-CSRF-Token`` header), so another site cannot act with the user's cookie.

A signed-in user acts as its organisation: the `Principal` it yields is the one an API key of that
organisation would yield, so the pages go through the very same visibility rules and services as the
JSON API, and the platform signs with the organisation's key held in custody.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from creditflow.identity import store
from creditflow.identity.access import Principal
from creditflow.identity.roles import Auth, UserRole, parse_roles
from creditflow.identity.settings import WebSettings
from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Engine
from creditflow.kernel.errors import InvalidInput, NotFound, Unauthenticated
from creditflow.ledger import reads
from creditflow.ledger.model.parties import Role

SESSION_PREFIX = "cfs_"
_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class WebUser:
    """A signed-in user: who, of which organisation, and the session's CSRF token."""

    user_id: str
    name: str
    org_id: str
    org_name: str
    role: Role
    csrf_token: str
    expires_ts_ms: int
    roles: frozenset[UserRole] = frozenset()

    @property
    def principal(self) -> Principal:
        return Principal(
            org_id=self.org_id,
            role=self.role,
            key_id=f"user:{self.user_id}",
            user_id=self.user_id,
            user_roles=self.roles,
            auth=Auth.SESSION,
        )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class WebSessions:
    """Passwords and sessions. Every method is one unit of work."""

    def __init__(self, engine: Engine, settings: WebSettings, clock: Clock):
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.hasher = PasswordHasher(
            time_cost=settings.password_time_cost,
            memory_cost=settings.password_memory_kib,
            parallelism=settings.password_parallelism,
        )
        # A hash of nothing, verified against when the user does not exist, so that "no such user" and
        # "wrong password" take the same time and cannot be told apart.
        self._decoy = self.hasher.hash(secrets.token_urlsafe(16))
        self._cache: dict[bytes, WebUser] = {}
        self._lock = threading.Lock()

    # -- passwords -----------------------------------------------------------------------------------

    def check_password_policy(self, password: str) -> None:
        if len(password) < self.settings.password_min_length:
            raise InvalidInput(
                f"the password must have at least {self.settings.password_min_length} characters",
                code="password_too_short",
                field="password",
            )
        if len(password) > 1024:
            raise InvalidInput(
                "the password must have at most 1024 characters", code="password_too_long", field="password"
            )
        if not re.search(r"\D", password) or len(set(password)) < 4:
            raise InvalidInput("the password is too easy to guess", code="password_too_weak", field="password")

    def set_password(self, user_id: str, password: str) -> None:
        """Set (or replace) the user's password; the user's open sessions end."""
        self.check_password_policy(password)
        hashed = self.hasher.hash(password)
        with self.engine.begin() as conn:
            if not store.set_password_hash(conn, user_id, hashed):
                raise NotFound(f"user {user_id!r} does not exist", code="user_not_found", field="user_id")
            store.delete_sessions_of(conn, user_id)
        self._forget_user(user_id)

    # -- sessions ------------------------------------------------------------------------------------

    def sign_in(self, user_id: str, password: str) -> tuple[str, WebUser]:
        """A new session for the user, or 401 ``sign_in_failed`` (which never says whether the user
        exists) or 401 ``sign_in_locked`` after too many wrong passwords in a row."""
        now = self.clock.now_ms()
        with self.engine.connect().execution_options(read_only=True) as conn:
            row = store.sign_in_state(conn, user_id)
        if row is None or row.password_hash is None:
            self._verify(self._decoy, password)
            raise Unauthenticated("the user name or the password is wrong", code="sign_in_failed")
        if row.locked_until_ms is not None and row.locked_until_ms > now:
            wait_s = (row.locked_until_ms - now + 999) // 1000
            raise Unauthenticated(
                f"too many wrong passwords: try again in {wait_s} s", code="sign_in_locked", retry_after_s=wait_s
            )
        if not self._verify(row.password_hash, password):
            self._record_failure(user_id, now)
            raise Unauthenticated("the user name or the password is wrong", code="sign_in_failed")
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        expires = now + self.settings.session_ttl_s * 1000
        with self.engine.begin() as conn:
            parties = reads.parties(conn, [row.org_id])
            if not parties:
                raise Unauthenticated("the user's organisation is not registered", code="sign_in_failed")
            rehashed = self.hasher.hash(password) if self.hasher.check_needs_rehash(row.password_hash) else None
            store.clear_failures(conn, user_id, rehashed=rehashed)
            store.delete_expired_sessions(conn, now)
            store.insert_session(
                conn,
                token_sha256=_digest(token),
                user_id=user_id,
                org_id=row.org_id,
                csrf_token=csrf,
                created_ts_ms=now,
                expires_ts_ms=expires,
            )
        party = parties[0]
        user = WebUser(user_id, row.name, row.org_id, party.name, party.role, csrf, expires, parse_roles(row.roles))
        return token, user

    def resolve(self, token: str | None) -> WebUser | None:
        """The signed-in user of a session token, or None (missing, unknown, expired)."""
        if not token or not token.startswith(SESSION_PREFIX) or len(token) > 200:
            return None
        digest = _digest(token)
        now = self.clock.now_ms()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None:
            if cached.expires_ts_ms > now:
                return cached
            with self._lock:
                self._cache.pop(digest, None)
            return None
        with self.engine.connect().execution_options(read_only=True) as conn:
            session = store.session(conn, digest)
            if session is None or session.expires_ts_ms <= now:
                return None
            found = store.users_by_id(conn, [session.user_id]).get(session.user_id)
            parties = reads.parties(conn, [session.org_id])
        if found is None or not parties:
            return None
        user = WebUser(
            session.user_id,
            found.name,
            session.org_id,
            parties[0].name,
            parties[0].role,
            session.csrf_token,
            session.expires_ts_ms,
            parse_roles(found.roles),
        )
        with self._lock:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = user
        return user

    def sign_out(self, token: str | None) -> None:
        if not token:
            return
        digest = _digest(token)
        with self.engine.begin() as conn:
            store.delete_session(conn, digest)
        with self._lock:
            self._cache.pop(digest, None)

    # -- internals -----------------------------------------------------------------------------------

    def _verify(self, hashed: str, password: str) -> bool:
        try:
            return self.hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    def _record_failure(self, user_id: str, now: int) -> None:
        with self.engine.begin() as conn:
            failures = store.failed_sign_ins(conn, user_id) + 1
            if failures >= self.settings.sign_in_max_failures:
                store.lock_user(conn, user_id, now + self.settings.sign_in_lockout_s * 1000)
            else:
                store.set_failed_sign_ins(conn, user_id, failures)

    def _forget_user(self, user_id: str) -> None:
        with self._lock:
            for digest in [d for d, u in self._cache.items() if u.user_id == user_id]:
                del self._cache[digest]
