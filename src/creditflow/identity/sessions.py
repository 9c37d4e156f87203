"""Users signing in to the web pages: Argon2id passwords, sessions, lock-out.

A session token is a random 256-bit secret handed to the browser in an HttpOnly cookie; only its
SHA-256 is stored (like API keys, a slow hash buys nothing for a secret with this much entropy). Each
session carries its own CSRF token, which every state-changing request from a page must echo (a form
field or the ``X-CSRF-Token`` header), so another site cannot act with the user's cookie.

A signed-in user acts as its organisation: the `Principal` it yields is the one an API key of that
organisation would yield, so the pages go through the very same visibility rules and services as the
JSON API, and the platform signs with the organisation's key held in custody.

Sign-in is throttled (`creditflow.identity.throttle`: growing delays per user and client address, never a
lock-out an attacker can impose on a victim). A process answers a known session from memory for at most
``auth_cache_ttl_s``, then asks the database again: a sign-out, a password reset or a role change made by
another process takes effect here within that bound.

Passwords: an admin resets a user's password (`reset_password`: the old password, the user's sessions and
personal tokens stop at once; the user sets a new password with the one-time token the admin hands over);
a signed-in user changes its own (`change_password`: the current password is required; every session of
the user ends). The organisation's admins are told of both.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from creditflow.identity import store
from creditflow.identity.access import Principal
from creditflow.identity.reads import notify_admins
from creditflow.identity.roles import Auth, UserRole, parse_roles, require_person, require_user_role
from creditflow.identity.settings import WebSettings
from creditflow.identity.throttle import SignInThrottle
from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import InvalidInput, NotFound, Unauthenticated
from creditflow.ledger import reads
from creditflow.ledger.model.parties import Role

SESSION_PREFIX = "cfs_"
RESET_PREFIX = "cfr_"
UNKNOWN_ADDRESS = "unknown"
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

    def __init__(
        self,
        engine: Engine,
        settings: WebSettings,
        clock: Clock,
        *,
        cache_ttl_s: int = 5,
        forget_keys: Callable[[Iterable[str]], None] | None = None,
    ):
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.cache_ttl_ms = cache_ttl_s * 1000
        self.throttle = SignInThrottle(settings)
        # `Access.forget`: personal tokens revoked here stop at once in this process too
        self._forget_keys = forget_keys or (lambda _ids: None)
        self.hasher = PasswordHasher(
            time_cost=settings.password_time_cost,
            memory_cost=settings.password_memory_kib,
            parallelism=settings.password_parallelism,
        )
        # A hash of nothing, verified against when the user does not exist, so that "no such user" and
        # "wrong password" take the same time and cannot be told apart.
        self._decoy = self.hasher.hash(secrets.token_urlsafe(16))
        self._cache: dict[bytes, tuple[WebUser, int]] = {}  # digest -> (user, when it was read)
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

    def _admin_target(self, conn: Connection, by: Principal, user_id: str, what: str) -> str:
        """The user's organisation if ``by`` is an admin of it (403 for anyone else who is not an admin;
        404 ``user_not_found`` for a user of another organisation, as for none)."""
        require_user_role(by, UserRole.ADMIN, what=what)
        org = store.user_org(conn, user_id)
        if org is None or org != by.org_id:
            raise NotFound(f"user {user_id!r} does not exist", code="user_not_found", field="user_id")
        return org

    def reset_password(self, by: Principal, user_id: str) -> tuple[str, int]:
        """An admin resets a user's password: the old password, every session and every personal token of
        the user stop now, its sign-in counters are cleared, and a one-time reset token (valid
        ``password_reset_ttl_s``) is returned for the admin to hand to the user, who sets a new password
        with it (`redeem_reset`). Returns (token, expiry)."""
        now = self.clock.now_ms()
        token = RESET_PREFIX + secrets.token_urlsafe(32)
        expires = now + self.settings.password_reset_ttl_s * 1000
        with self.engine.begin() as conn:
            org = self._admin_target(conn, by, user_id, "reset a user's password")
            store.set_reset(conn, user_id, reset_sha256=_digest(token), expires_ts_ms=expires)
            store.delete_sessions_of(conn, user_id)
            revoked = store.revoke_personal_tokens(conn, user_id, now)
            self.throttle.unlock(conn, user_id)
            notify_admins(
                conn,
                org_id=org,
                kind="password_reset",
                message=f"the password of {user_id} was reset by {by.user_id}; its sessions ended and "
                f"{len(revoked)} personal token(s) were revoked",
                now_ms=now,
                data={"user_id": user_id, "by": by.user_id, "revoked_key_ids": revoked},
            )
        self._forget_user(user_id)
        self._forget_keys(revoked)
        return token, expires

    def redeem_reset(self, user_id: str, token: str, new_password: str, *, address: str = UNKNOWN_ADDRESS) -> None:
        """The user sets a new password with the admin's one-time reset token. 401 ``reset_token_invalid``
        for a wrong, used or expired token (throttled like a sign-in)."""
        self.check_password_policy(new_password)
        now = self.clock.now_ms()
        with self.engine.connect().execution_options(read_only=True) as conn:
            self._refuse_if_waiting(conn, user_id, address, now)
        hashed = self.hasher.hash(new_password)
        with self.engine.begin() as conn:
            state = store.reset_state(conn, user_id, for_update=True)
            good = (
                state is not None
                and state.reset_sha256 is not None
                and state.reset_expires_ts_ms is not None
                and state.reset_expires_ts_ms > now
                and secrets.compare_digest(state.reset_sha256, _digest(token))
            )
            if good and state is not None:
                store.finish_reset(conn, user_id, hashed)
                store.delete_sessions_of(conn, user_id)
                self.throttle.unlock(conn, user_id)
        if not good:
            with self.engine.begin() as conn:
                self.throttle.record_failure(
                    conn, user_id, address, now, org_id=state.org_id if state is not None else None
                )
            raise Unauthenticated(
                "the reset token is not valid (wrong, used or expired): ask an admin for a new one",
                code="reset_token_invalid",
            )
        self._forget_user(user_id)

    def change_password(
        self, by: Principal, current_password: str, new_password: str, *, address: str = UNKNOWN_ADDRESS
    ) -> None:
        """A signed-in person changes its own password (the current one is required: a stolen session
        alone cannot take the account over). Every session of the user ends (sign in again); personal
        tokens stay (revoke them on the same page if they leaked). The organisation's admins are told."""
        user_id = require_person(by, what="change a password (it is a person's)")
        self.check_password_policy(new_password)
        now = self.clock.now_ms()
        with self.engine.connect().execution_options(read_only=True) as conn:
            self._refuse_if_waiting(conn, user_id, address, now)
            row = store.sign_in_state(conn, user_id)
        if row is None or row.password_hash is None or not self._verify(row.password_hash, current_password):
            if row is None:
                self._verify(self._decoy, current_password)
            with self.engine.begin() as conn:
                self.throttle.record_failure(conn, user_id, address, now, org_id=row.org_id if row else None)
            raise InvalidInput("the current password is wrong", code="current_password_wrong", field="current_password")
        hashed = self.hasher.hash(new_password)
        with self.engine.begin() as conn:
            store.set_password_hash(conn, user_id, hashed)
            store.delete_sessions_of(conn, user_id)
            notify_admins(
                conn,
                org_id=row.org_id,
                kind="password_changed",
                message=f"{user_id} changed its password; its sessions ended",
                now_ms=now,
                data={"user_id": user_id},
            )
        self._forget_user(user_id)

    def unlock(self, by: Principal, user_id: str) -> int:
        """An admin clears the user's sign-in delays (from every address); how many counters there were."""
        now = self.clock.now_ms()
        with self.engine.begin() as conn:
            org = self._admin_target(conn, by, user_id, "unlock a user's sign-in")
            cleared = self.throttle.unlock(conn, user_id)
            notify_admins(
                conn,
                org_id=org,
                kind="sign_in_unlocked",
                message=f"{by.user_id} cleared the sign-in delays of {user_id}",
                now_ms=now,
                data={"user_id": user_id, "by": by.user_id, "counters": cleared},
            )
        return cleared

    # -- sessions ------------------------------------------------------------------------------------

    def _refuse_if_waiting(self, conn: Connection, user_id: str, address: str, now: int) -> None:
        wait = self.throttle.wait(conn, user_id, address, now)
        if wait is not None:
            wait_s = wait.seconds(now)
            raise Unauthenticated(
                f"too many wrong passwords: try again in {wait_s} s",
                code="sign_in_locked",
                retry_after_s=wait_s,
            )

    def sign_in(self, user_id: str, password: str, *, address: str = UNKNOWN_ADDRESS) -> tuple[str, WebUser]:
        """A new session for the user, or 401 ``sign_in_failed`` (which never says whether the user
        exists) or 401 ``sign_in_locked`` while a throttle covering (user, ``address``) waits: then the
        password is not even checked, and ``retry_after_s`` says how long."""
        now = self.clock.now_ms()
        user_id = user_id[:64]
        address = address[:200] or UNKNOWN_ADDRESS
        with self.engine.connect().execution_options(read_only=True) as conn:
            self._refuse_if_waiting(conn, user_id, address, now)
            row = store.sign_in_state(conn, user_id)
        if row is None or row.password_hash is None:
            self._verify(self._decoy, password)
            with self.engine.begin() as conn:
                self.throttle.record_failure(conn, user_id, address, now, org_id=row.org_id if row else None)
            raise Unauthenticated("the user name or the password is wrong", code="sign_in_failed")
        if not self._verify(row.password_hash, password):
            with self.engine.begin() as conn:
                self.throttle.record_failure(conn, user_id, address, now, org_id=row.org_id)
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
            self.throttle.clear_after_success(conn, user_id, address)
            store.delete_expired_sessions(conn, now)
            store.delete_stale_throttle(conn, now - self.settings.sign_in_failure_window_s * 1000)
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
            entry = self._cache.get(digest)
        if entry is not None:
            cached, fetched = entry
            if cached.expires_ts_ms <= now:
                with self._lock:
                    self._cache.pop(digest, None)
                return None
            if fetched <= now < fetched + self.cache_ttl_ms:
                return cached
            # older than auth_cache_ttl_s: ask the database again (another process may have ended it)
        with self.engine.connect().execution_options(read_only=True) as conn:
            session = store.session(conn, digest)
            found = store.users_by_id(conn, [session.user_id]).get(session.user_id) if session else None
            parties = reads.parties(conn, [session.org_id]) if session else []
        if session is None or session.expires_ts_ms <= now or found is None or not parties:
            with self._lock:
                self._cache.pop(digest, None)
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
            self._cache[digest] = (user, now)
        return user

    def sign_out(self, token: str | None) -> None:
        if not token:
            return
        digest = _digest(token)
        with self.engine.begin() as conn:
            store.delete_session(conn, digest)
        with self._lock:
            self._cache.pop(digest, None)

    def user_names(self, org_id: str) -> dict[str, str]:
        """The organisation's users by id (their names), for pages that list keys and their owners."""
        with self.engine.connect().execution_options(read_only=True) as conn:
            return {u.user_id: u.name for u in store.users_of_org(conn, org_id)}

    # -- internals -----------------------------------------------------------------------------------

    def _verify(self, hashed: str, password: str) -> bool:
        try:
            return self.hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    def _forget_user(self, user_id: str) -> None:
        with self._lock:
            for digest in [d for d, (u, _at) in self._cache.items() if u.user_id == user_id]:
                del self._cache[digest]
