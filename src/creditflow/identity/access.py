"""API keys: who is calling. Keys are random 256-bit secrets shown once; only their SHA-256 is stored
(a slow password hash buys nothing for secrets with this much entropy, and would cost every request)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from creditflow.identity import store
from creditflow.identity.roles import Auth, UserRole, parse_roles
from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Engine
from creditflow.kernel.errors import NotFound, Unauthenticated
from creditflow.ledger import reads
from creditflow.ledger.model.parties import Role

TOKEN_PREFIX = "cf_"


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


class Access:
    def __init__(self, engine: Engine, clock: Clock):
        self.engine = engine
        self.clock = clock
        self._cache: dict[str, tuple[bytes, Principal]] = {}

    def create_key(self, org_id: str, label: str = "default", *, user_id: str | None = None) -> str:
        """Create an API key for ``org_id`` and return the token (the only time it is seen). With
        ``user_id`` it is that user's personal token: who uses it acts as that person."""
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            if not reads.parties(conn, [org_id]):
                raise NotFound(f"organisation {org_id!r} is not registered", code="party_not_found", field="org_id")
            if user_id is not None and store.user_org(conn, user_id) != org_id:
                raise NotFound(f"user {user_id!r} does not exist", code="user_not_found", field="user_id")
            store.insert_api_key(
                conn,
                key_id=key_id,
                org_id=org_id,
                secret_sha256=hashlib.sha256(secret.encode()).digest(),
                label=label[:200],
                created_ts_ms=self.clock.now_ms(),
                user_id=user_id,
            )
        return f"{TOKEN_PREFIX}{key_id}_{secret}"

    def cached(self, token: str | None) -> Principal | None:
        """The principal for ``token`` if it was authenticated before (no I/O; None otherwise)."""
        if not token or not token.startswith(TOKEN_PREFIX) or "_" not in token[len(TOKEN_PREFIX) :]:
            return None
        key_id, secret = token[len(TOKEN_PREFIX) :].split("_", 1)
        cached = self._cache.get(key_id)
        if cached is not None and hmac.compare_digest(cached[0], hashlib.sha256(secret.encode()).digest()):
            return cached[1]
        return None

    def authenticate(self, token: str | None) -> Principal:
        if not token or not token.startswith(TOKEN_PREFIX) or "_" not in token[len(TOKEN_PREFIX) :]:
            raise Unauthenticated("send an API key: Authorization: Bearer cf_...", code="unauthenticated")
        key_id, secret = token[len(TOKEN_PREFIX) :].split("_", 1)
        digest = hashlib.sha256(secret.encode()).digest()
        cached = self._cache.get(key_id)
        if cached is not None and hmac.compare_digest(cached[0], digest):
            return cached[1]
        with self.engine.connect().execution_options(read_only=True) as conn:
            row = store.api_key(conn, key_id)
            party = reads.parties(conn, [row.org_id]) if row is not None else []
            user = store.users_by_id(conn, [row.user_id]).get(row.user_id) if row and row.user_id else None
        if row is None or row.revoked or not party or not hmac.compare_digest(row.secret_sha256, digest):
            raise Unauthenticated("the API key is not valid", code="unauthenticated")
        if row.user_id is None:
            principal = Principal(org_id=row.org_id, role=party[0].role, key_id=key_id)
        elif user is None or user.org_id != row.org_id:
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
        self._cache[key_id] = (digest, principal)
        return principal

    def revoke_key(self, key_id: str) -> None:
        with self.engine.begin() as conn:
            store.revoke_api_key(conn, key_id)
        self._cache.pop(key_id, None)
